"""Usage record ids are never reused on SQLite (AUTOINCREMENT): /metrics keeps the sums of the records
up to an id (billing.usage.RunningTotals), and SQLite gave a deleted largest id again, so after a
rollup that moved every record the next calls took ids that were already counted. PostgreSQL's
sequence never reuses one: nothing changes there.

Revision ID: 0010
Revises: 0009
"""
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":  # the table is copied into one made with AUTOINCREMENT
        with op.batch_alter_table("usage_records", recreate="always", table_kwargs={"sqlite_autoincrement": True}):
            pass


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("usage_records", recreate="always", table_kwargs={"sqlite_autoincrement": False}):
            pass
