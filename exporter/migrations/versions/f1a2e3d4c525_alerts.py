"""Alerts: the SMTP and webhook settings, the admins who opt in, and the incidents told

Revision ID: f1a2e3d4c525
Revises: c9d0e1f2a3b4
Create Date: 2026-12-06 09:00:00

"""
from alembic import op
import sqlalchemy as sa

revision = "f1a2e3d4c525"
down_revision = "c9d0e1f2a3b4"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "alert_settings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("smtp_host", sa.String(length=255), nullable=False, server_default=""),
        sa.Column("smtp_port", sa.Integer(), nullable=False, server_default="587"),
        sa.Column("smtp_security", sa.String(length=10), nullable=False, server_default="starttls"),
        sa.Column("smtp_username", sa.String(length=255), nullable=False, server_default=""),
        sa.Column("smtp_password", sa.Text(), nullable=False, server_default=""),
        sa.Column("mail_from", sa.String(length=255), nullable=False, server_default=""),
        sa.Column("webhook_url", sa.Text(), nullable=False, server_default=""),
        sa.Column("host_down_minutes", sa.Integer(), nullable=False, server_default="15"),
        sa.Column("no_worker_minutes", sa.Integer(), nullable=False, server_default="5"),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "alert_recipients",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("since", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id"),
    )
    op.create_table(
        "alert_incidents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("open_key", sa.String(length=255), nullable=True),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("told_at", sa.DateTime(), nullable=True),
        sa.Column("told_end_at", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("open_key"),
    )
    op.create_index("ix_alert_incidents_key", "alert_incidents", ["key"])


def downgrade():
    op.drop_index("ix_alert_incidents_key", table_name="alert_incidents")
    op.drop_table("alert_incidents")
    op.drop_table("alert_recipients")
    op.drop_table("alert_settings")
