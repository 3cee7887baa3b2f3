"""Host limits: each host's sends in flight and rate, shared by every worker; a worker's note of
limiting hosts on its own (Redis away)

Revision ID: 8e1c4d7a2f90
Revises: c6e4ab788062
Create Date: 2026-12-07 05:10:00

"""
from alembic import op
import sqlalchemy as sa

revision = "8e1c4d7a2f90"
down_revision = "c6e4ab788062"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("hosts") as batch_op:
        batch_op.add_column(sa.Column("max_in_flight", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("rate_limit", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("rate_per", sa.Integer(), nullable=False, server_default="1"))
    with op.batch_alter_table("workers") as batch_op:
        batch_op.add_column(sa.Column("limits_own_since", sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table("workers") as batch_op:
        batch_op.drop_column("limits_own_since")
    with op.batch_alter_table("hosts") as batch_op:
        batch_op.drop_column("rate_per")
        batch_op.drop_column("rate_limit")
        batch_op.drop_column("max_in_flight")
