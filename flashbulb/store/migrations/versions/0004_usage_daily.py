"""Daily usage totals: where `flashbulb usage rollup` moves old usage records.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_daily",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("account_id", sa.Integer(), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("calls", sa.BigInteger(), nullable=False),
        sa.Column("input_images", sa.BigInteger(), nullable=False),
        sa.Column("input_pixels", sa.BigInteger(), nullable=False),
        sa.Column("output_images", sa.BigInteger(), nullable=False),
        sa.Column("output_pixels", sa.BigInteger(), nullable=False),
        sa.Column("latency_ms", sa.BigInteger(), nullable=False),
        sa.Column("charge_micros", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("account_id", "key_id", "model", "day", "status", name="uq_usage_daily"),
    )
    op.create_index("ix_usage_daily_account_id", "usage_daily", ["account_id"])
    op.create_index("ix_usage_daily_day", "usage_daily", ["day"])


def downgrade() -> None:
    op.drop_index("ix_usage_daily_day", table_name="usage_daily")
    op.drop_index("ix_usage_daily_account_id", table_name="usage_daily")
    op.drop_table("usage_daily")
