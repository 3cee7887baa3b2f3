"""The audit log's one writer: who, via, what, before and after, secrets masked."""
from exporter import audit
from exporter.extensions import db
from exporter.models import AuditEntry


def test_an_entry_names_who_acted_and_masks_secrets(app):
    with app.app_context():
        with audit.acting_as("ann@example.com", "web"):
            audit.record("profile.update", "profile", 7, "Dialer", profile_id=7,
                         before={"settings": {"url": "https://a.example", "password": "enc:xyz"}},
                         after={"settings": {"url": "https://b.example", "api_token": "plain-secret"}})
        audit.record("purge.run", "retention", summary="nothing to purge")
        db.session.commit()
        first, second = db.session.scalars(db.select(AuditEntry).order_by(AuditEntry.id)).all()
    assert (first.actor, first.via, first.action, first.profile_id) == ("ann@example.com", "web", "profile.update", 7)
    assert first.before["settings"] == {"url": "https://a.example", "password": "****"}
    assert first.after["settings"] == {"url": "https://b.example", "api_token": "****"}
    assert (second.actor, second.via) == ("system", "")  # outside acting_as: the system's own act


def test_changes_lists_only_what_differs():
    assert audit.changes({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4}) == {"b": (2, 3), "c": (None, 4)}
