"""Billing: quoted unit prices and refunds on holds, key scopes/expiry/caps, redemption codes, referrals.

Revision ID: 0003
Revises: 0002
"""
import secrets

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs (no table rebuild: other tables' foreign keys point at accounts).
    op.add_column("accounts", sa.Column("referral_code", sa.String(32), nullable=True))
    op.add_column("accounts", sa.Column("referrer_id", sa.Integer(), nullable=True))
    op.add_column("accounts", sa.Column("commission_percent", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("accounts", sa.Column("commission_until", sa.DateTime(), nullable=True))
    accounts = sa.table("accounts", sa.column("id", sa.Integer()), sa.column("referral_code", sa.String()))
    conn = op.get_bind()
    for (account_id,) in conn.execute(sa.select(accounts.c.id)).all():
        conn.execute(
            accounts.update().where(accounts.c.id == account_id).values(referral_code="ref-" + secrets.token_hex(6))
        )
    op.create_index("ix_accounts_referral_code", "accounts", ["referral_code"], unique=True)
    op.add_column("api_keys", sa.Column("expires_at", sa.DateTime(), nullable=True))
    op.add_column("api_keys", sa.Column("models", sa.JSON(), nullable=True))
    op.add_column("api_keys", sa.Column("cap_micros", sa.BigInteger(), nullable=True))
    op.add_column("api_keys", sa.Column("spent_micros", sa.BigInteger(), nullable=False, server_default="0"))
    op.add_column("api_keys", sa.Column("held_micros", sa.BigInteger(), nullable=False, server_default="0"))
    for name in ("unit_small_micros", "unit_standard_micros", "unit_large_micros", "unit_input_micros"):
        op.add_column("holds", sa.Column(name, sa.BigInteger(), nullable=True))
    op.add_column("holds", sa.Column("input_images", sa.Integer(), nullable=True))
    op.add_column("holds", sa.Column("refunded_micros", sa.BigInteger(), nullable=False, server_default="0"))
    op.create_table(
        "credit_codes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("code_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.Column("redeemed_at", sa.DateTime(), nullable=True),
        sa.Column("redeemed_by", sa.Integer(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("credit_codes")
    with op.batch_alter_table("holds") as batch:
        for name in ("refunded_micros", "input_images", "unit_input_micros", "unit_large_micros", "unit_standard_micros", "unit_small_micros"):
            batch.drop_column(name)
    with op.batch_alter_table("api_keys") as batch:
        for name in ("held_micros", "spent_micros", "cap_micros", "models", "expires_at"):
            batch.drop_column(name)
    op.drop_index("ix_accounts_referral_code", "accounts")
    with op.batch_alter_table("accounts") as batch:
        for name in ("commission_until", "commission_percent", "referrer_id", "referral_code"):
            batch.drop_column(name)
