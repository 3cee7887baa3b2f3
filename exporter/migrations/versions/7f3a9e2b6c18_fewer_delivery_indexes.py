"""Fewer delivery indexes written per insert: ix_deliveries_profile_id and ix_deliveries_status_due
dropped, each covered by another index, and ix_deliveries_profile_dedupe only over the deliveries
that have a dedupe key; each delivery the intake inserts writes 9 indexes, not 12

Revision ID: 7f3a9e2b6c18
Revises: 8e1c4d7a2f90
Create Date: 2026-12-07 06:00:00

- ix_deliveries_profile_id (profile_id) leads ix_deliveries_profile_id_id (profile_id, id) and
  uq_delivery_profile_event: a profile's deliveries (its pages, its cascade delete, Retry all)
  are found through those.
- ix_deliveries_status_due (status, due_at) served the claim before ix_deliveries_waiting
  (4a1e7c2b9d31). Every query that still asks for a status and a due time asks for waiting or
  unfinished rows, which the partial indexes ix_deliveries_waiting and
  ix_deliveries_unfinished_event hold; a status alone goes through ix_deliveries_status_id.
- ix_deliveries_profile_dedupe: the key is set only when a send of a profile with duplicate
  suppression starts, and the one query (suppression.earlier) asks for a key by equality, which
  implies it is not null. A new delivery has none, so the intake no longer writes this index.
Checked by EXPLAIN on the 1.68 M-delivery bench database (bench/README.md). On PostgreSQL the
indexes are dropped and built CONCURRENTLY, so a live database keeps taking events.
"""
import sqlalchemy as sa
from alembic import op

revision = "7f3a9e2b6c18"
down_revision = "8e1c4d7a2f90"
branch_labels = None
depends_on = None

DROPPED = {"ix_deliveries_profile_id": ["profile_id"], "ix_deliveries_status_due": ["status", "due_at"]}
DEDUPE = ("ix_deliveries_profile_dedupe", ["profile_id", "dedupe_key"])
HAS_KEY = "dedupe_key IS NOT NULL"


def _run(steps):
    """The steps outside the migration's transaction on PostgreSQL (CONCURRENTLY needs that)."""
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            steps({"postgresql_concurrently": True})
    else:
        steps({})


def upgrade():
    def steps(options):
        for name in (*DROPPED, DEDUPE[0]):
            op.drop_index(name, table_name="deliveries", **options)
        op.create_index(DEDUPE[0], "deliveries", DEDUPE[1], postgresql_where=sa.text(HAS_KEY),
                        sqlite_where=sa.text(HAS_KEY), **options)
    _run(steps)


def downgrade():
    def steps(options):
        op.drop_index(DEDUPE[0], table_name="deliveries", **options)
        for name, columns in (*DROPPED.items(), DEDUPE):
            op.create_index(name, "deliveries", columns, **options)
    _run(steps)
