"""The migrations make exactly the schema the models describe, so a model change without its
migration (or the other way round) fails here, not on an admin's upgrade."""
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from exporter.extensions import db


def test_migrated_database_matches_the_models(app):
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        diff = compare_metadata(context, db.metadata)
    assert diff == []
