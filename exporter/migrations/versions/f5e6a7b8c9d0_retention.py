"""Retention and "Forget this customer": purged_at on events and attempts, forgotten_at/by on customers

Revision ID: f5e6a7b8c9d0
Revises: 9a1b2c3d4e50
Create Date: 2026-12-02 10:00:00

"""
from alembic import op
import sqlalchemy as sa

revision = "f5e6a7b8c9d0"
down_revision = "9a1b2c3d4e50"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("forgotten_at", sa.DateTime(timezone=False), nullable=True))
        batch_op.add_column(sa.Column("forgotten_by", sa.String(length=255), nullable=False, server_default=""))
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("purged_at", sa.DateTime(timezone=False), nullable=True))
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("purged_at", sa.DateTime(timezone=False), nullable=True))


def downgrade():
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.drop_column("purged_at")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("purged_at")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_column("forgotten_by")
        batch_op.drop_column("forgotten_at")
