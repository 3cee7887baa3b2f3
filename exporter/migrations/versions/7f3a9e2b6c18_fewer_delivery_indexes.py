"""Fewer delivery indexes: ix_deliveries_profile_id and ix_deliveries_status_due dropped, each
covered by another index, so each delivery the intake inserts writes 10 indexes, not 12

Revision ID: 7f3a9e2b6c18
Revises: 8e1c4d7a2f90
Create Date: 2026-12-07 06:00:00

- ix_deliveries_profile_id (profile_id) leads ix_deliveries_profile_id_id (profile_id, id),
  ix_deliveries_profile_dedupe and uq_delivery_profile_event: a profile's deliveries (its pages,
  its cascade delete, Retry all) are found through those.
- ix_deliveries_status_due (status, due_at) served the claim before ix_deliveries_waiting
  (4a1e7c2b9d31). Every query that still asks for a status and a due time asks for waiting or
  unfinished rows, which the partial indexes ix_deliveries_waiting and
  ix_deliveries_unfinished_event hold; a status alone goes through ix_deliveries_status_id.
Checked by EXPLAIN on the 1.58 M-delivery bench database (bench/README.md). On PostgreSQL the
indexes are dropped and rebuilt CONCURRENTLY, so a live database keeps taking events.
"""
from alembic import op

revision = "7f3a9e2b6c18"
down_revision = "8e1c4d7a2f90"
branch_labels = None
depends_on = None

INDEXES = {"ix_deliveries_profile_id": ["profile_id"], "ix_deliveries_status_due": ["status", "due_at"]}


def _postgresql():
    return op.get_bind().dialect.name == "postgresql"


def upgrade():
    if _postgresql():
        with op.get_context().autocommit_block():
            for name in INDEXES:
                op.drop_index(name, table_name="deliveries", postgresql_concurrently=True)
    else:
        for name in INDEXES:
            op.drop_index(name, table_name="deliveries")


def downgrade():
    if _postgresql():
        with op.get_context().autocommit_block():
            for name, columns in INDEXES.items():
                op.create_index(name, "deliveries", columns, postgresql_concurrently=True)
    else:
        for name, columns in INDEXES.items():
            op.create_index(name, "deliveries", columns)
