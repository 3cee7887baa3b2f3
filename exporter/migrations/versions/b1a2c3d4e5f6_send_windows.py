"""Send windows and daily caps per profile: the profile's window and cap, the
per-day send counts, and why a delivery waits

Revision ID: b1a2c3d4e5f6
Revises: f5e6a7b8c9d0
Create Date: 2026-11-30 09:00:00

"""
from alembic import op
import sqlalchemy as sa

revision = "b1a2c3d4e5f6"
down_revision = "f5e6a7b8c9d0"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("profiles", schema=None) as batch_op:
        batch_op.add_column(sa.Column("window_days", sa.String(length=30), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("window_start", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("window_end", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("window_time_zone", sa.String(length=64), nullable=False, server_default="UTC"))
        batch_op.add_column(sa.Column("daily_cap", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("over_cap", sa.String(length=10), nullable=False, server_default="wait"))
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("waiting_reason", sa.String(length=255), nullable=False, server_default=""))
    op.create_table(
        "send_counts",
        sa.Column("profile_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_grant", sa.Integer(), nullable=False, server_default="0"),
        sa.ForeignKeyConstraint(["profile_id"], ["profiles.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("profile_id", "day"),
    )


def downgrade():
    op.drop_table("send_counts")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("waiting_reason")
    with op.batch_alter_table("profiles", schema=None) as batch_op:
        for column in ("over_cap", "daily_cap", "window_time_zone", "window_end", "window_start", "window_days"):
            batch_op.drop_column(column)
