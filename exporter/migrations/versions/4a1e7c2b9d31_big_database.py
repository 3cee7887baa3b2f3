"""A big database: the claim's partial index on waiting deliveries, deliveries by
event for the conversion check, and autovacuum settings that re-analyze deliveries for a backlog

Revision ID: 4a1e7c2b9d31
Revises: 2f6b1c9d4e70
Create Date: 2026-12-07 10:00:00

On PostgreSQL the indexes are built CONCURRENTLY (outside the migration's transaction), so a
live database keeps taking events and sending while a million-row table is indexed.
"""
from alembic import op
import sqlalchemy as sa

revision = "4a1e7c2b9d31"
down_revision = "2f6b1c9d4e70"
branch_labels = None
depends_on = None

WAITING = "status IN ('scheduled', 'retrying')"
# Autovacuum's defaults (analyze after 10 % of the rows changed) never re-analyze a table of a
# million deliveries for a backlog of 20,000: the planner would go on believing nothing waits.
DELIVERIES_AUTOVACUUM = {"autovacuum_analyze_scale_factor": "0.005", "autovacuum_vacuum_scale_factor": "0.01"}


def _create_indexes(postgresql):
    options = {"postgresql_concurrently": True} if postgresql else {}
    op.create_index("ix_deliveries_waiting", "deliveries", ["due_at", "id"], sqlite_where=sa.text(WAITING),
                    postgresql_where=sa.text(WAITING), **options)
    op.create_index("ix_deliveries_event", "deliveries", ["event_id"], **options)


def upgrade():
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        with op.get_context().autocommit_block():
            _create_indexes(True)
        settings = ", ".join(f"{k} = {v}" for k, v in DELIVERIES_AUTOVACUUM.items())
        op.execute(f"ALTER TABLE deliveries SET ({settings})")
    else:
        _create_indexes(False)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE deliveries RESET ({', '.join(DELIVERIES_AUTOVACUUM)})")
    op.drop_index("ix_deliveries_event", table_name="deliveries")
    op.drop_index("ix_deliveries_waiting", table_name="deliveries")
