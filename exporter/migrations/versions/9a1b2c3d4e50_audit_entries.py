"""The audit log

Revision ID: 9a1b2c3d4e50
Revises: 8c4d2e6f1a37
Create Date: 2026-11-30 07:40:00

"""
from alembic import op
import sqlalchemy as sa

revision = "9a1b2c3d4e50"
down_revision = "8c4d2e6f1a37"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "audit_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("via", sa.String(length=20), nullable=False),
        sa.Column("action", sa.String(length=60), nullable=False),
        sa.Column("target_type", sa.String(length=40), nullable=False),
        sa.Column("target_id", sa.BigInteger(), nullable=True),
        sa.Column("target_name", sa.String(length=255), nullable=False),
        sa.Column("profile_id", sa.Integer(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_entries_at", "audit_entries", ["at"])
    op.create_index("ix_audit_entries_action", "audit_entries", ["action"])
    op.create_index("ix_audit_entries_profile_id", "audit_entries", ["profile_id"])
    op.create_index("ix_audit_target", "audit_entries", ["target_type", "target_id"])


def downgrade():
    op.drop_table("audit_entries")
