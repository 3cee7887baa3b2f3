"""Workers: each worker process's heartbeat, so a dead worker's claims are released at once

Revision ID: 8d4e0f2a3b51
Revises: 7c3d9e1f2a40
Create Date: 2026-11-30 04:50:00

"""
from alembic import op
import sqlalchemy as sa

revision = "8d4e0f2a3b51"
down_revision = "7c3d9e1f2a40"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "workers",
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=False), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade():
    op.drop_table("workers")
