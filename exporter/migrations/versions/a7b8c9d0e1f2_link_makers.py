"""Set-password links name the admin who made them: disabling or demoting that admin ends them

Revision ID: a7b8c9d0e1f2
Revises: e4d5f6a7b8c9
Create Date: 2026-12-07 09:00:00

"""
from alembic import op
import sqlalchemy as sa

revision = "a7b8c9d0e1f2"
down_revision = "e4d5f6a7b8c9"
branch_labels = None
depends_on = None


def upgrade():
    # A link made before names nobody: it stays, listed on the Admins page to revoke.
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("password_link_by_id", sa.Integer(), nullable=True))
        batch_op.create_index("ix_users_password_link_by_id", ["password_link_by_id"], unique=False)
        batch_op.create_foreign_key("fk_users_password_link_by_id_users", "users", ["password_link_by_id"], ["id"],
                                    ondelete="SET NULL")


def downgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_constraint("fk_users_password_link_by_id_users", type_="foreignkey")
        batch_op.drop_index("ix_users_password_link_by_id")
        batch_op.drop_column("password_link_by_id")
