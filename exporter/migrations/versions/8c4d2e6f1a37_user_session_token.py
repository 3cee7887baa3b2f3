"""Users carry a session token: logout and a password change end every session

Revision ID: 8c4d2e6f1a37
Revises: 8d4e0f2a3b51
Create Date: 2026-11-30 04:40:00

"""
import secrets

from alembic import op
import sqlalchemy as sa

revision = "8c4d2e6f1a37"
down_revision = "8d4e0f2a3b51"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("session_token", sa.String(length=64), nullable=False, server_default=""))
    # Each existing user gets a token of its own: sessions from before this version end.
    users = sa.table("users", sa.column("id", sa.Integer), sa.column("session_token", sa.String))
    connection = op.get_bind()
    for (user_id,) in connection.execute(sa.select(users.c.id)).all():
        connection.execute(users.update().where(users.c.id == user_id)
                           .values(session_token=secrets.token_urlsafe(32)))


def downgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("session_token")
