"""Customers search at a million rows: pg_trgm trigram indexes for the contains-searches
on name, email and phone, on PostgreSQL when the extension is available (else the search scans,
as on SQLite)

Revision ID: c9d0e1f2a3b4
Revises: 5b2f8d3c0e42
Create Date: 2026-12-07 12:00:00

The indexes are optional, so the models do not declare them (tests/test_migrations.py leaves
indexes named *_trgm out of its comparison). Built CONCURRENTLY: a live database keeps working.
"""
from alembic import op
import sqlalchemy as sa

revision = "c9d0e1f2a3b4"
down_revision = "5b2f8d3c0e42"
branch_labels = None
depends_on = None

# The expressions exactly as customers.search_query writes them, or the planner cannot match them.
TRIGRAM_INDEXES = {"ix_customers_name_trgm": "lower(first_name || ' ' || last_name)",
                   "ix_customers_email_trgm": "lower(email)",
                   "ix_customers_phone_trgm": "lower(phone)"}


def _trigrams_available(bind):
    """pg_trgm installed, or installable by this user (CREATE EXTENSION may need a superuser)."""
    if bind.exec_driver_sql("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'").scalar():
        return True
    if not bind.exec_driver_sql("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'").scalar():
        return False
    return bool(bind.exec_driver_sql("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").scalar())


def upgrade():
    bind = op.get_bind()
    if bind.dialect.name != "postgresql" or not _trigrams_available(bind):
        return
    with op.get_context().autocommit_block():
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for name, expression in TRIGRAM_INDEXES.items():
            op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON customers "
                       f"USING gin ({expression} gin_trgm_ops)")


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in TRIGRAM_INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
