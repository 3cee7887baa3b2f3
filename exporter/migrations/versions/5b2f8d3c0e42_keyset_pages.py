"""Pages at a million rows: indexes for the Deliveries list's keyset pages under a
status, profile or host filter, and attempts by start time for the dashboard's last day

Revision ID: 5b2f8d3c0e42
Revises: 4a1e7c2b9d31
Create Date: 2026-12-07 11:00:00

On PostgreSQL the indexes are built CONCURRENTLY (outside the migration's transaction), so a
live database keeps taking events and sending while they are built.
"""
from alembic import op

revision = "5b2f8d3c0e42"
down_revision = "4a1e7c2b9d31"
branch_labels = None
depends_on = None

INDEXES = [("ix_deliveries_status_id", "deliveries", ["status", "id"]),
           ("ix_deliveries_profile_id_id", "deliveries", ["profile_id", "id"]),
           ("ix_deliveries_target_id", "deliveries", ["target", "id"]),
           ("ix_attempts_started_at", "attempts", ["started_at"])]


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            for name, table, columns in INDEXES:
                op.create_index(name, table, columns, postgresql_concurrently=True)
    else:
        for name, table, columns in INDEXES:
            op.create_index(name, table, columns)


def downgrade():
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
