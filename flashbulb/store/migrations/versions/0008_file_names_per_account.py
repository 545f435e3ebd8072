"""File names are per account: a caller may name its upload (`files/<name>`), and another account
naming its file the same is no longer refused (a 409 there told a stranger the name existed, and let
anyone squat names). The row keeps a server-made `id` that names the blob; existing files keep
their id as their name.

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("files") as batch:
        batch.add_column(sa.Column("name", sa.String(40), nullable=True))
    op.execute("UPDATE files SET name = id")
    with op.batch_alter_table("files") as batch:
        batch.alter_column("name", existing_type=sa.String(40), nullable=False)
        batch.create_unique_constraint("uq_files_account_name", ["account_id", "name"])


def downgrade() -> None:
    with op.batch_alter_table("files") as batch:
        batch.drop_constraint("uq_files_account_name", type_="unique")
        batch.drop_column("name")
