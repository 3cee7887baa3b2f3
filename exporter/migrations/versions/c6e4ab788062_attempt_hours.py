"""Attempt hours: /metrics' roll-up of the attempts of each closed hour; the retention purge's
indexes: unfinished deliveries by event, file rows by event

Revision ID: c6e4ab788062
Revises: f1a2e3d4c525
Create Date: 2026-12-07 03:40:00

"""
from alembic import op
import sqlalchemy as sa

revision = "c6e4ab788062"
down_revision = "f1a2e3d4c525"
branch_labels = None
depends_on = None

UNFINISHED_SQL = "status NOT IN ('delivered', 'rejected', 'cancelled')"
BUCKETS_MS = (25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)


def upgrade():
    op.create_table(
        "attempt_hours",
        sa.Column("hour", sa.DateTime(), nullable=False),
        sa.Column("export_type", sa.String(length=40), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.BigInteger(), nullable=False),
        sa.Column("timed", sa.BigInteger(), nullable=False),
        sa.Column("sum_ms", sa.BigInteger(), nullable=False),
        *[sa.Column(f"le_{bound}", sa.BigInteger(), nullable=False) for bound in BUCKETS_MS],
        sa.PrimaryKeyConstraint("hour", "export_type", "ok"),
    )
    op.create_index("ix_deliveries_unfinished_event", "deliveries", ["event_id"],
                    sqlite_where=sa.text(UNFINISHED_SQL), postgresql_where=sa.text(UNFINISHED_SQL))
    op.create_index("ix_file_rows_event", "file_rows", ["event_id"])


def downgrade():
    op.drop_index("ix_file_rows_event", table_name="file_rows")
    op.drop_index("ix_deliveries_unfinished_event", table_name="deliveries")
    op.drop_table("attempt_hours")
