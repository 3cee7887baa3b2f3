"""Hosts: a circuit per target host (down since, last error, next probe)

Revision ID: 7c3d9e1f2a40
Revises: 5b1e2c7d9a10
Create Date: 2026-11-30 04:40:00

"""
from alembic import op
import sqlalchemy as sa

revision = "7c3d9e1f2a40"
down_revision = "5b1e2c7d9a10"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "hosts",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("down_since", sa.DateTime(timezone=False), nullable=True),
        sa.Column("probe_at", sa.DateTime(timezone=False), nullable=True),
        sa.Column("probes", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text(), nullable=False, server_default=""),
        sa.Column("updated_at", sa.DateTime(timezone=False), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade():
    op.drop_table("hosts")
