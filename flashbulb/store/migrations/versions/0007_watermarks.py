"""Provenance: the watermark payload each call's images carry, indexed so `flashbulb verify` finds
the call an image came from.

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("watermark", sa.BigInteger(), nullable=True))
        batch.create_index("ix_usage_records_watermark", ["watermark"])


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_index("ix_usage_records_watermark")
        batch.drop_column("watermark")
