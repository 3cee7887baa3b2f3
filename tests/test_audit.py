"""The audit log's one writer: who, via, what, before and after, secrets masked; what the
profiles JSON import and the commands record (the screens: tests/web/test_audit.py)."""
import getpass
import json

from exporter import audit, security
from exporter.profiles import rules as profiles, as_code as profiles_io
from exporter.intake import tokens
from exporter.extensions import db
from exporter.models import AuditEntry, Profile, User

from .factories import profile_data


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


# --- who acts and what each door records ---------------------------------------------------------

FTP_SETTINGS = {"host": "ftp.example.org", "port": 21, "username": "partner", "directory": "/in"}


def entries(**where):
    db.session.expire_all()
    return db.session.scalars(db.select(AuditEntry).filter_by(**where).order_by(AuditEntry.id)).all()


def import_file(*profiles_):
    return {"version": 1, "profiles": list(profiles_)}


def test_the_cli_import_names_the_login_and_records_before_and_after(app, tmp_path):
    profiles_io.import_all(import_file(profile_data(delay_minutes=1)))
    path = tmp_path / "profiles.json"
    path.write_text(json.dumps(import_file(profile_data(delay_minutes=9), profile_data(name="New one"))))
    result = app.test_cli_runner().invoke(args=["profiles", "import", str(path)])
    assert result.exit_code == 0, result.output
    changed, created = entries(via="cli")
    assert (changed.actor, changed.action, changed.target_name) == (f"cli:{getpass.getuser()}", "profile.import",
                                                                    "Call center partials")
    assert audit.changes(changed.before, changed.after) == {"delay_minutes": (1, 9)}
    assert changed.summary == "Updated by the profiles JSON"
    assert (created.target_name, created.before, created.after["name"]) == ("New one", None, "New one")
    assert created.profile_id == db.session.scalar(db.select(Profile.id).where(Profile.name == "New one"))


def test_an_import_that_changes_nothing_records_nothing(app):
    profiles_io.import_all(import_file(profile_data()))
    profiles_io.import_all(import_file(profile_data()))
    assert [e.action for e in entries()] == ["profile.import"]


def test_a_snapshot_has_mappings_in_order_and_routes_but_no_secret(app):
    profiles_io.import_all(import_file(profile_data(name="Nightly", export_type="ftp",
                                                    settings={**FTP_SETTINGS, "password": "hunter22"})))
    profile = db.session.scalar(db.select(Profile))
    snap = profiles.snapshot(profile)
    stored = profile.settings["password"]
    assert snap["settings"]["password"] == security.MASK and snap["settings"]["host"] == "ftp.example.org"
    assert [m["export_name"] for m in snap["mappings"]][:3] == ["first_name", "order_date", "list_id"]
    assert snap["routes"] == [{"customer_types": ["partial"], "campaigns": [259], "products": []}]
    [entry] = entries()
    logged = json.dumps([entry.before, entry.after, entry.summary])
    assert "hunter22" not in logged and stored not in logged and security.ENCRYPTED_PREFIX not in logged


def test_a_new_secret_is_named_in_the_summary_never_shown(app):
    data = profile_data(name="Nightly", export_type="ftp", settings={**FTP_SETTINGS, "password": "first-pass"})
    profiles_io.import_all(import_file(data))
    data["settings"]["password"] = "second-pass"
    profiles_io.import_all(import_file(data))
    entry = entries()[-1]
    assert entry.summary == "Updated by the profiles JSON; new secret: password"
    assert entry.before["settings"]["password"] == entry.after["settings"]["password"] == security.MASK
    assert "second-pass" not in json.dumps([entry.before, entry.after])


def test_a_deleted_profile_keeps_its_name_and_last_state_in_the_log(app):
    profiles_io.import_all(import_file(profile_data()))
    profile = db.session.scalar(db.select(Profile))
    profile_id = profile.id
    profiles.delete(profile)
    entry = entries(action="profile.delete")[0]
    assert (entry.profile_id, entry.target_name, entry.after) == (profile_id, "Call center partials", None)
    assert entry.before["delay_minutes"] == 0 and len(entry.before["mappings"]) == 5
    assert db.session.get(Profile, profile_id) is None


def test_cli_create_admin_and_create_token_are_recorded_without_secrets(app):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["create-admin", "ops@example.com", "--password", "long enough pass"]).exit_code == 0
    assert runner.invoke(args=["create-admin", "ops@example.com", "--password", "another long pass"]).exit_code == 0
    result = runner.invoke(args=["create-token", "konnektive"])
    token = result.output.strip().splitlines()[-1]
    created, password, made = entries()
    who = f"cli:{getpass.getuser()}"
    assert (created.action, created.actor, created.via, created.after) == ("admin.create", who, "cli", {
        "email": "ops@example.com", "role": "admin", "status": "active"})
    assert (password.action, password.target_name) == ("admin.password", "ops@example.com")
    assert (made.action, made.target_name, made.actor) == ("token.create", "konnektive", who)
    logged = json.dumps([[e.before, e.after, e.summary] for e in entries()])
    assert "long enough pass" not in logged and token not in logged and security.hash_token(token) not in logged
    assert db.session.scalar(db.select(User.email)) == "ops@example.com"


def test_revoking_a_token_is_recorded_once(app):
    tokens.create("old CRM")
    row = db.session.scalar(db.select(tokens.IntakeToken))
    tokens.revoke(row)
    tokens.revoke(row)
    assert [(e.action, e.target_name) for e in entries()] == [("token.create", "old CRM"), ("token.revoke", "old CRM")]
