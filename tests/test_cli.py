"""The `exporter` commands, through click's runner on the test app."""
import json
import os
import subprocess
import sys

import pytest

from exporter import tokens
from exporter.extensions import db
from exporter.models import IntakeToken, Profile, User

from .factories import make_profile, profile_data


def test_create_admin_takes_or_asks_for_a_password(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["create-admin", "Boss@Example.com", "--password", "s3cret-pass"])
    assert result.exit_code == 0, result.output
    user = db.session.scalars(db.select(User)).one()
    assert user.email == "boss@example.com" and user.check_password("s3cret-pass")
    assert "s3cret-pass" not in user.password_hash
    result = runner.invoke(args=["create-admin", "boss@example.com"], input="new-pass-123\nnew-pass-123\n")
    assert result.exit_code == 0, result.output
    db.session.refresh(user)
    assert user.check_password("new-pass-123") and db.session.query(User).count() == 1


def test_create_admin_refuses_a_bad_email_or_short_password(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["create-admin", "nobody", "--password", "long-enough"])
    assert result.exit_code == 2 and "not an email address" in result.output
    result = runner.invoke(args=["create-admin", "a@b.c", "--password", "short"])
    assert result.exit_code == 2 and "at least 8 characters" in result.output
    assert db.session.query(User).count() == 0


def test_create_admin_makes_a_disabled_viewer_an_enabled_admin_and_kills_their_link(app):
    from exporter import admins
    from exporter.models import AuditEntry

    user, token = admins.invite("viewer@example.com", "viewer")
    user.disabled_at = user.created_at
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["create-admin", "viewer@example.com", "--password", "back in 123"])
    assert result.exit_code == 0, result.output
    db.session.refresh(user)
    assert (user.role, user.status, user.password_link_hash) == ("admin", "active", None)
    assert user.check_password("back in 123")
    with pytest.raises(admins.LinkDead):
        admins.user_for_link(token)
    entry = db.session.scalars(db.select(AuditEntry).order_by(AuditEntry.id.desc())).first()
    assert (entry.action, entry.before["role"], entry.after["role"]) == ("admin.reset", "viewer", "admin")


def test_create_token_prints_the_token_alone_on_the_last_line(app):
    result = app.test_cli_runner().invoke(args=["create-token", "konnektive"])
    assert result.exit_code == 0
    token = result.output.strip().splitlines()[-1]
    assert token.startswith("exp_") and " " not in token
    row = tokens.authenticate(token)
    assert row.name == "konnektive"
    assert token not in json.dumps([r.token_hash for r in db.session.scalars(db.select(IntakeToken))])


def test_profiles_export_then_import_round_trips(app, tmp_path):
    make_profile()
    runner = app.test_cli_runner()
    exported = runner.invoke(args=["profiles", "export"])
    assert exported.exit_code == 0
    data = json.loads(exported.output)
    assert data["version"] == 1 and data["profiles"][0]["name"] == "Call center partials"
    assert data["profiles"][0]["mappings"][2] == {"export_name": "list_id", "field": "static", "static_value": "400"}
    assert data["profiles"][0]["routes"] == [{"customer_types": ["partial"], "campaigns": [259], "products": []}]
    data["profiles"][0]["delay_minutes"] = 7
    data["profiles"].append(profile_data(name="Second"))
    path = tmp_path / "profiles.json"
    path.write_text(json.dumps(data))
    result = runner.invoke(args=["profiles", "import", str(path)])
    assert result.exit_code == 0 and "1 created, 1 updated" in result.output
    assert db.session.scalar(db.select(Profile.delay_minutes).where(Profile.name == "Call center partials")) == 7


def test_profiles_import_refuses_a_bad_file_naming_profile_and_field(app, tmp_path):
    runner = app.test_cli_runner()
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    result = runner.invoke(args=["profiles", "import", str(path)])
    assert result.exit_code == 1 and "is not JSON" in result.output
    bad = profile_data(name="Broken")
    bad["mappings"][1]["field"] = "shoeSize"
    path.write_text(json.dumps({"version": 1, "profiles": [profile_data(name="Fine"), bad]}))
    result = runner.invoke(args=["profiles", "import", str(path)])
    assert result.exit_code == 1
    assert "profile 'Broken': mappings[1].field: 'shoeSize' is not in the field catalog" in result.output
    assert db.session.query(Profile).count() == 0  # the valid profile before it was not imported either


@pytest.mark.parametrize("change, error", [
    (dict(settings="x"), "profile 'Broken': settings: must be an object"),
    (dict(mappings="x"), "profile 'Broken': mappings: must be a list"),
    (dict(mappings=["first_name"]), "profile 'Broken': mappings[0]: must be an object"),
    (dict(mappings=[{"export_name": 5, "field": "firstName"}]),
     "profile 'Broken': mappings[0].export_name: must be a string, not 5"),
    (dict(routes=[1]), "profile 'Broken': routes[0]: must be an object"),
    (dict(active="false"), "profile 'Broken': active: must be true or false, not 'false'"),
    (dict(delay_minutes=10**9), "profile 'Broken': delay_minutes: Export Delay is a whole number of minutes, "
                                "0 or more (at most 525,600, a year)"),
])
def test_profiles_import_of_a_value_of_the_wrong_type_says_which_in_one_line(app, tmp_path, change, error):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"version": 1, "profiles": [profile_data(name="Broken", **change)]}))
    result = app.test_cli_runner().invoke(args=["profiles", "import", str(path)])
    assert isinstance(result.exception, SystemExit), result.exception  # a ClickException, not a crash
    assert result.exit_code == 1
    assert result.output == f"Error: {error}\n"
    assert db.session.query(Profile).count() == 0


def _exporter(tmp_path, *args, input=None):
    env = {**os.environ, "EXPORTER_INSTANCE_PATH": str(tmp_path),
           "EXPORTER_DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.sqlite'}"}
    env.pop("EXPORTER_REDIS_URL", None)
    return subprocess.run([sys.executable, "-m", "exporter", *args], env=env, input=input, capture_output=True,
                          text=True, timeout=120)


def test_create_admin_on_a_fresh_database_migrates_first(tmp_path):
    result = _exporter(tmp_path, "create-admin", "boss@example.com", "--password", "s3cret-pass")
    assert result.returncode == 0, result.stderr
    assert "migrating the database first" in result.stderr
    assert result.stdout.strip() == "admin boss@example.com can log in"
    again = _exporter(tmp_path, "create-token", "crm")
    assert again.returncode == 0 and "migrating" not in again.stderr
    assert again.stdout.strip().splitlines()[-1].startswith("exp_")


def test_a_worker_on_a_fresh_database_says_to_migrate(tmp_path):
    result = _exporter(tmp_path, "worker", "--burst")
    assert result.returncode == 1
    assert "the database is not migrated yet: run `exporter migrate` first" in result.stderr
    assert "Traceback" not in result.stderr
