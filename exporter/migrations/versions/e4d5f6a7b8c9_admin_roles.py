"""Several admins: roles (admin, viewer), disabled users, one-time set-password links

Revision ID: e4d5f6a7b8c9
Revises: b1a2c3d4e5f6
Create Date: 2026-11-30 09:00:00

"""
from alembic import op
import sqlalchemy as sa

revision = "e4d5f6a7b8c9"
down_revision = "b1a2c3d4e5f6"
branch_labels = None
depends_on = None


def upgrade():
    # Every existing user was an admin: they stay admins (the server default fills the column).
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("role", sa.String(length=20), nullable=False, server_default="admin"))
        batch_op.add_column(sa.Column("disabled_at", sa.DateTime(timezone=False), nullable=True))
        batch_op.add_column(sa.Column("last_login_at", sa.DateTime(timezone=False), nullable=True))
        batch_op.add_column(sa.Column("password_link_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("password_link_expires_at", sa.DateTime(timezone=False), nullable=True))
        batch_op.create_index("ix_users_password_link_hash", ["password_link_hash"], unique=True)


def downgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index("ix_users_password_link_hash")
        for column in ("password_link_expires_at", "password_link_hash", "last_login_at", "disabled_at", "role"):
            batch_op.drop_column(column)
