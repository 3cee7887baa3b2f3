"""Event ids scoped per intake token: events.intake_token_id, and the unique
event_key becomes unique (event_key, intake_token_id)

Revision ID: c7d8e9f0a1b2
Revises: b8c9d0e1f2a3
Create Date: 2026-12-07 02:00:00

Events stored before have no token (NULL): the intake counts an id among them as a duplicate for
every token, as before. Downgrade refuses when two tokens share an event id (the old unique
constraint could not hold).
"""
from alembic import op
import sqlalchemy as sa

revision = "c7d8e9f0a1b2"
down_revision = "b8c9d0e1f2a3"
branch_labels = None
depends_on = None

# SQLite's unique constraint of the initial schema has no name: batch mode names it by this.
NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _old_unique():
    return "uq_events_event_key" if op.get_bind().dialect.name == "sqlite" else "events_event_key_key"


def upgrade():
    with op.batch_alter_table("events", schema=None, naming_convention=NAMING) as batch_op:
        batch_op.add_column(sa.Column("intake_token_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_events_intake_token_id", "intake_tokens", ["intake_token_id"], ["id"])
        batch_op.drop_constraint(_old_unique(), type_="unique")
        batch_op.create_unique_constraint("uq_event_key_token", ["event_key", "intake_token_id"])


def downgrade():
    shared = op.get_bind().execute(sa.text(
        "SELECT event_key FROM events GROUP BY event_key HAVING COUNT(*) > 1")).first()
    if shared:
        raise RuntimeError(f"two intake tokens share the event id {shared[0]!r}: the old schema cannot hold both")
    with op.batch_alter_table("events", schema=None, naming_convention=NAMING) as batch_op:
        batch_op.drop_constraint("uq_event_key_token", type_="unique")
        batch_op.drop_constraint("fk_events_intake_token_id", type_="foreignkey")
        batch_op.drop_column("intake_token_id")
        batch_op.create_unique_constraint(_old_unique(), ["event_key"])
