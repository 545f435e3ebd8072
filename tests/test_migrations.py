"""The Alembic migrations build exactly the schema the ORM tables describe, on both databases."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from flashbulb.store import db as store
from flashbulb.store.tables import Base


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migrations_match_the_tables_and_rerun_as_a_no_op(backend, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'm.db'}" if backend == "sqlite" else request.getfixturevalue("new_postgres_database")()
    database = store.connect(url)
    store.migrate(database)
    store.migrate(database)  # every start migrates; the second time changes nothing
    with database.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    database.dispose()
    assert diff == []
