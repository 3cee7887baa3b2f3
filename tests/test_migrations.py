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


def test_event_ids_per_token_and_forgotten_customers_migrate_down_and_up(app, post_events):
    """Issue 21's migrations, down to e4d5f6a7b8c9 and up again, with an event stored: the event
    keeps its id (unique alone again below), and the schema is the models' once more."""
    from flask_migrate import downgrade, upgrade
    from sqlalchemy import inspect

    from exporter.models import Event

    assert post_events({"id": "evt-1", "type": "partial", "order": {"customerId": 1}}).status_code == 202
    db.session.remove()
    directory = app.extensions["migrate"].directory
    downgrade(directory=directory, revision="e4d5f6a7b8c9")
    inspector = inspect(db.engine)
    assert "forgotten_customers" not in inspector.get_table_names()
    assert "intake_token_id" not in {c["name"] for c in inspector.get_columns("events")}
    upgrade(directory=directory)
    assert db.session.scalars(db.select(Event.event_key)).all() == ["evt-1"]
    test_migrated_database_matches_the_models(app)
