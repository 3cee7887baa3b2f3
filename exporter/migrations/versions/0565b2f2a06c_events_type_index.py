"""An index on events' customer type: the Deliveries list's Customer Type filter counts its
matches through it (the type's events, then their deliveries by ix_deliveries_event) instead of
reading every event; built CONCURRENTLY on PostgreSQL, so a live database keeps taking events

Revision ID: 0565b2f2a06c
Revises: 7f3a9e2b6c18
Create Date: 2026-12-07 09:50:00

On the big bench database (1.25 M deliveries, 1.02 M events), the capped count of "Refund"
deliveries was a parallel sequential scan of events: 165-330 ms, 612 ms once events had grown to
2.5 M; through this index, 26-43 ms (bench/README.md).
"""
from alembic import op

revision = "0565b2f2a06c"
down_revision = "7f3a9e2b6c18"
branch_labels = None
depends_on = None


def _run(steps):
    """The step outside the migration's transaction on PostgreSQL (CONCURRENTLY needs that)."""
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            steps({"postgresql_concurrently": True})
    else:
        steps({})


def upgrade():
    _run(lambda options: op.create_index("ix_events_type", "events", ["type"], **options))


def downgrade():
    _run(lambda options: op.drop_index("ix_events_type", table_name="events", **options))
