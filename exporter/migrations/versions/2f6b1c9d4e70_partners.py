"""Partners beyond the GET postback: rejected deliveries, captured ids, reversals, duplicate
suppression

Revision ID: 2f6b1c9d4e70
Revises: d8e9f0a1b2c3
Create Date: 2026-12-01 09:00:00

"""
from alembic import op
import sqlalchemy as sa

revision = "2f6b1c9d4e70"
down_revision = "d8e9f0a1b2c3"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("profiles", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reversal_of_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("reversal_types", sa.String(length=100), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("dedupe_days", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("dedupe_by", sa.String(length=60), nullable=False, server_default="email"))
        batch_op.create_foreign_key("fk_profiles_reversal_of_id_profiles", "profiles", ["reversal_of_id"], ["id"],
                                    ondelete="SET NULL")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("captured_id", sa.String(length=255), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("dedupe_key", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_deliveries_profile_dedupe", ["profile_id", "dedupe_key"], unique=False)


def downgrade():
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_profile_dedupe")
        batch_op.drop_column("dedupe_key")
        batch_op.drop_column("captured_id")
    with op.batch_alter_table("profiles", schema=None) as batch_op:
        batch_op.drop_constraint("fk_profiles_reversal_of_id_profiles", type_="foreignkey")
        for column in ("dedupe_by", "dedupe_days", "reversal_types", "reversal_of_id"):
            batch_op.drop_column(column)
