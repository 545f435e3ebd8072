"""The databases a bench measures on: SQLite in a temporary folder always, and PostgreSQL when given
a server's URL (--postgres, or FLASHBULB_TEST_POSTGRES_URL): a fresh database, dropped at the end."""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa


@contextlib.contextmanager
def scratch_databases(postgres_url: str) -> Iterator[list[tuple[str, str]]]:
    """[(label, url)]: "sqlite", then "postgresql" when `postgres_url` is set."""
    with tempfile.TemporaryDirectory() as folder:
        targets = [("sqlite", f"sqlite:///{Path(folder) / 'bench.db'}")]
        admin = None
        name = f"flashbulb_bench_{uuid.uuid4().hex[:8]}"
        if postgres_url:
            admin = sa.create_engine(
                postgres_url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
            )
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            targets.append(("postgresql", postgres_url.rsplit("/", 1)[0] + "/" + name))
        try:
            yield targets
        finally:
            if admin is not None:
                with admin.connect() as conn:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                admin.dispose()
