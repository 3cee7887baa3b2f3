"""Deliveries name the worker that claims them (claimed_by), for the drain engine

Revision ID: 5b1e2c7d9a10
Revises: 3aefc741cc31
Create Date: 2026-11-30 04:30:00

"""
from alembic import op
import sqlalchemy as sa

revision = "5b1e2c7d9a10"
down_revision = "3aefc741cc31"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=120), nullable=False, server_default=""))


def downgrade():
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("claimed_by")
