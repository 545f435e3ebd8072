"""Scale-out: batch items are leased by the server running them; usage names the replica that ran a call;
blobs (uploads, result files, url outputs) can live in the database, shared by every server.

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batch_items") as batch:
        batch.add_column(sa.Column("owner", sa.String(64), nullable=True))
        batch.add_column(sa.Column("lease_until", sa.DateTime(), nullable=True))
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("replica", sa.JSON(), nullable=True))
    op.create_table(
        "blob_chunks",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("blob_chunks")
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("replica")
    with op.batch_alter_table("batch_items") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("owner")
