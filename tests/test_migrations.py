"""The migrations make exactly the schema the models describe, so a model change without its
migration (or the other way round) fails here, not on an admin's upgrade."""
import json

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


def test_the_secrets_migration_encrypts_credentials_up_and_opens_them_down(app):
    """Issue 21, point 5: rows stored in clear by an older version are encrypted by the upgrade."""
    from flask_migrate import downgrade, upgrade
    from sqlalchemy import JSON, bindparam, text

    from exporter import security
    from exporter.profiles import rules as profiles
    from exporter.models import FieldMapping, Profile

    directory = app.extensions["migrate"].directory
    url = "https://user:pw-1234@partner.example/p.php?list=4&apikey=KEY-5678"
    downgrade(directory=directory, revision="a7b8c9d0e1f2")
    db.session.execute(text("INSERT INTO profiles (id, name, export_type, settings, delay_minutes, pci_documented, "
                            "active, skip_converted_partials, created_at, updated_at) VALUES (1, 'P', 'postback', "
                            ":settings, 0, false, true, true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)")
                       .bindparams(bindparam("settings", type_=JSON)), {"settings": {"url": url, "method": "GET"}})
    for i, (name, value) in enumerate((("header:X-Api-Key", "KEY-5678"), ("password", "pw-9999"), ("list_id", "400"))):
        db.session.execute(text("INSERT INTO field_mappings (profile_id, position, export_name, field, static_value, "
                                "format, format_arg, default_value) VALUES (1, :i, :n, 'static', :v, '', '', '')"),
                           {"i": i, "n": name, "v": value})
    db.session.commit()
    try:
        upgrade(directory=directory)
        db.session.expire_all()
        values = {m.export_name: m.static_value for m in db.session.scalars(db.select(FieldMapping))}
        assert values["list_id"] == "400"
        assert all(values[n].startswith(security.ENCRYPTED_PREFIX) for n in ("header:X-Api-Key", "password"))
        profile = db.session.get(Profile, 1)
        assert profile.settings["url"] == "https://****@partner.example/p.php?list=4&apikey=****"
        assert profiles.stored_url(profile.settings, "url", app.config["SECRET_KEY"]) == url
        db.session.commit()
        downgrade(directory=directory, revision="a7b8c9d0e1f2")
        db.session.expire_all()
        rows = dict(db.session.execute(text("SELECT export_name, static_value FROM field_mappings")).all())
        assert rows == {"header:X-Api-Key": "KEY-5678", "password": "pw-9999", "list_id": "400"}
        settings = db.session.execute(text("SELECT settings FROM profiles")).scalar()
        assert (settings if isinstance(settings, dict) else json.loads(settings)) == {"url": url, "method": "GET"}
        db.session.commit()
    finally:
        upgrade(directory=directory)


def test_event_ids_per_token_and_forgotten_customers_migrate_down_and_up(app, post_events):
    """Issue 21's intake migrations, down to the one before them (b8c9d0e1f2a3) and up again, with an event stored: the event
    keeps its id (unique alone again below), and the schema is the models' once more."""
    from flask_migrate import downgrade, upgrade
    from sqlalchemy import inspect

    from exporter.models import Event

    assert post_events({"id": "evt-1", "type": "partial", "order": {"customerId": 1}}).status_code == 202
    db.session.remove()
    directory = app.extensions["migrate"].directory
    downgrade(directory=directory, revision="b8c9d0e1f2a3")
    inspector = inspect(db.engine)
    assert "forgotten_customers" not in inspector.get_table_names()
    assert "intake_token_id" not in {c["name"] for c in inspector.get_columns("events")}
    upgrade(directory=directory)
    assert db.session.scalars(db.select(Event.event_key)).all() == ["evt-1"]
    test_migrated_database_matches_the_models(app)
