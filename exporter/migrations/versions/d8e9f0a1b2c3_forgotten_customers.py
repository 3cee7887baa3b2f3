"""A forgotten customer's CRM id remembered without personal data

Revision ID: d8e9f0a1b2c3
Revises: c7d8e9f0a1b2
Create Date: 2026-12-07 02:30:00

Customers forgotten before this version had their CRM id cleared: it cannot be remembered now.
"""
from alembic import op
import sqlalchemy as sa

revision = "d8e9f0a1b2c3"
down_revision = "c7d8e9f0a1b2"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "forgotten_customers",
        sa.Column("crm_customer_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("forgotten_at", sa.DateTime(timezone=False), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"]),
        sa.PrimaryKeyConstraint("crm_customer_id"),
    )


def downgrade():
    op.drop_table("forgotten_customers")
