"""Requests that killed model workers, shared by every API server on the database (each server kept
its own count: with N servers a poison request could kill 2N workers).

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "poison_requests",
        sa.Column("fingerprint", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("crashes", sa.Integer(), nullable=False),
        sa.Column("last_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_poison_requests_last_at", "poison_requests", ["last_at"])


def downgrade() -> None:
    op.drop_index("ix_poison_requests_last_at", table_name="poison_requests")
    op.drop_table("poison_requests")
