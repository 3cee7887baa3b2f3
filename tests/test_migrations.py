"""The migrations make exactly the schema the models describe, so a model change without its
migration (or the other way round) fails here, not on an admin's upgrade."""
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from exporter.extensions import db


def _not_optional(obj, name, type_, reflected, compare_to):
    """The trigram indexes (migration c9d0e1f2a3b4) exist only where pg_trgm is available: the
    models cannot declare them, so the comparison leaves them out."""
    return not (type_ == "index" and (name or "").endswith("_trgm"))


def test_migrated_database_matches_the_models(app):
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": False,
                                                               "include_object": _not_optional})
        diff = compare_metadata(context, db.metadata)
    assert diff == []
