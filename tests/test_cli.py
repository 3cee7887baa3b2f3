"""The `exporter` commands, through click's runner on the test app."""
import json
import os
import subprocess
import sys

import pytest

from exporter.intake import tokens
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
    from exporter.ops import admins
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
    assert (entry.action, entry.before["role"], entry.after["role"]) == ("admin.password", "viewer", "admin")


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
    assert data["version"] == 2 and data["profiles"][0]["name"] == "Call center partials"
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
    (dict(time_zone="a" * 300), "profile 'Broken': time_zone: Time Zone is at most 64 characters"),
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


# --- profiles replay ----------------------------------------------------------------------------

def _replay(app, *args):
    return app.test_cli_runner().invoke(args=["profiles", "replay", *args])


def test_profiles_replay_dry_run_counts_then_replay_sends_once(app, post_events):
    import getpass
    from datetime import datetime, timedelta, timezone

    from exporter.models import AuditEntry, Delivery

    from .factories import event

    today = datetime.now(timezone.utc).date()  # UTC's day, whatever the machine's zone
    yesterday = (today - timedelta(days=1)).isoformat()
    post_events({"events": [event(f"e{i}", customerId=i + 1, orderId=i + 1, occurred_at=f"{yesterday}T10:00:00Z")
                            for i in range(3)]})
    make_profile(url="http://127.0.0.1:9/p")
    rng = ["--since", yesterday, "--until", today.isoformat()]
    result = _replay(app, "Call center partials", *rng, "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Dry run, nothing created: 3 events match; 3 will be sent.")
    assert "3 will be sent." in result.output
    assert db.session.scalar(db.select(db.func.count()).select_from(Delivery)) == 0
    result = _replay(app, "Call center partials", *rng, "--customer-type", "partial")
    assert result.exit_code == 0, result.output
    assert "3 deliveries created." in result.output
    assert "0 deliveries created." in _replay(app, "Call center partials", *rng).output  # never twice
    entry = db.session.scalars(db.select(AuditEntry).where(AuditEntry.action == "profile.replay")).first()
    assert (entry.actor, entry.via) == (f"cli:{getpass.getuser()}", "cli")


@pytest.mark.parametrize("args,message", [
    (["Nobody", "--since", "2026-01-01", "--until", "2026-01-02"], "Invalid value for NAME: no profile named 'Nobody'"),
    (["Call center partials", "--since", "2026-01-05", "--until", "2026-01-02"],
     "Invalid value for --until: To date 2026-01-02 is before From date 2026-01-05"),
    (["Call center partials", "--since", "5 Jan", "--until", "2026-01-02"],
     "Invalid value for --since: '5 Jan' is not a date as YYYY-MM-DD"),
    (["Call center partials", "--since", "2020-01-01", "--until", "2026-01-02"],
     "Invalid value for --until: at most 366 days at a time"),
    (["Call center partials", "--since", "2026-01-01", "--until", "2026-01-02", "--customer-type", "sale"],
     "Invalid value for --customer-type: 'sale' is not a customer type"),
    (["Call center partials", "--since", "9999-12-31", "--until", "9999-12-31"],
     "Invalid value for --since: 9999-12-31 is not in the years 1970 to 2100"),
    (["Call center partials", "--since", "2026-01-01", "--until", "9999-12-31"],
     "Invalid value for --until: 9999-12-31 is not in the years 1970 to 2100"),
])
def test_profiles_replay_refuses_bad_input_with_exit_code_2(app, args, message):
    from exporter.models import Delivery

    make_profile(url="http://127.0.0.1:9/p")
    result = _replay(app, *args)
    assert result.exit_code == 2
    assert message in result.output
    assert db.session.scalar(db.select(db.func.count()).select_from(Delivery)) == 0
def _old_delivered_event(post_events, key="evt-old", days=100):
    """An event `days` old whose delivery was delivered: due for the retention purge."""
    from datetime import timedelta

    from exporter.models import Delivery, Event, utcnow

    from .factories import event

    occurred = (utcnow() - timedelta(days=days)).isoformat() + "Z"
    assert post_events(event(key, occurred_at=occurred)).status_code == 202
    delivery = db.session.scalars(db.select(Delivery).join(Event).where(Event.event_key == key)).one()
    delivery.status, delivery.attempt_count = "delivered", 1
    db.session.commit()
    return db.session.scalars(db.select(Event).where(Event.event_key == key)).one()


def test_purge_dry_run_prints_counts_and_changes_nothing(app, post_events):
    make_profile()
    old = _old_delivered_event(post_events)
    _old_delivered_event(post_events, "evt-new", days=10)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["purge", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert result.output == "would purge personal data older than 90 days: 1 event, 0 attempts, 1 customer, 0 kept file copies\n"
    db.session.refresh(old)
    assert old.purged_at is None and old.order["firstName"] == "Jane"

    result = runner.invoke(args=["purge", "--days", "5"])  # both go when 5 days are kept
    assert result.exit_code == 0, result.output
    assert result.output == "purged personal data older than 5 days: 2 events, 0 attempts, 1 customer, 0 kept file copies\n"
    db.session.refresh(old)
    assert old.purged_at is not None and "firstName" not in old.order


def test_purge_with_zero_days_keeps_everything(app, post_events):
    make_profile()
    old = _old_delivered_event(post_events)
    result = app.test_cli_runner().invoke(args=["purge", "--days", "0"])
    assert result.exit_code == 0 and "kept forever, nothing to purge" in result.output
    db.session.refresh(old)
    assert old.purged_at is None


@pytest.mark.parametrize("days", ["-1", "ninety", "36501", "999999999"])
def test_purge_refuses_bad_days(app, days):
    result = app.test_cli_runner().invoke(args=["purge", "--days", days])
    assert result.exit_code == 2 and "--days" in result.output and "Traceback" not in result.output


def test_purge_refuses_a_bad_retention_setting(app):
    app.config["RETENTION_DAYS"] = -3
    result = app.test_cli_runner().invoke(args=["purge"])
    assert result.exit_code == 2 and "RETENTION_DAYS" in result.output and "0 or more" in result.output


def test_purge_refuses_a_huge_retention_setting(app):
    app.config["RETENTION_DAYS"] = 999_999_999
    result = app.test_cli_runner().invoke(args=["purge"])
    assert result.exit_code == 2 and "RETENTION_DAYS" in result.output and "at most 36500" in result.output


def _installed_exporter(*args, instance=None):
    """The `exporter` script the virtualenv installed, as a user runs it."""
    env = {**os.environ, "EXPORTER_INSTANCE_PATH": str(instance)} if instance else None
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), "exporter"), *args], capture_output=True,
                          text=True, env=env, timeout=60)


def test_help_is_exporters_own_with_its_version():
    from importlib.metadata import version

    result = _installed_exporter("--help")
    assert result.returncode == 0 and result.stdout.startswith("Usage: exporter [OPTIONS] COMMAND")
    for flask_own in ("--env-file", "--app", "--debug", "python-dotenv", "Flask", " db ", " limiter "):
        assert flask_own not in result.stdout
    for command in ("run", "worker", "cron", "migrate", "create-admin", "create-token", "profiles", "files", "purge"):
        assert f"\n  {command} " in result.stdout
    assert _installed_exporter("--version").stdout == f"Exporter {version('exporter')}\n"
    for sub in ("export", "import"):
        text = _installed_exporter("profiles", sub, "--help").stdout
        assert "profiles JSON" in text


def test_migrate_says_nothing_from_alembic_on_a_migrated_database(tmp_path):
    first = _installed_exporter("migrate", instance=tmp_path)
    assert first.returncode == 0 and "Running upgrade" in first.stderr
    assert "(issue" not in first.stderr  # migrations are named for users, not for our tracker
    again = _installed_exporter("migrate", instance=tmp_path)
    assert (again.returncode, again.stdout, again.stderr) == (0, "database is up to date\n", "")


@pytest.fixture
def fresh_database_url(tmp_path):
    """An empty database of the kind the suite runs on: a SQLite file, or a PostgreSQL database
    made beside EXPORTER_TEST_DATABASE_URL's and dropped after."""
    url = os.environ.get("EXPORTER_TEST_DATABASE_URL", "")
    if not url.startswith("postgresql"):
        yield f"sqlite:///{tmp_path / 'fresh.sqlite'}"
        return
    import uuid

    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    name = f"{make_url(url).database}_fresh_{uuid.uuid4().hex[:8]}"
    server = create_engine(make_url(url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield str(make_url(url).set(database=name))
    finally:
        with server.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        server.dispose()


def test_web_units_starting_together_migrate_once_and_share_one_secret_key(tmp_path, fresh_database_url):
    """Issue 23: after a release every web unit runs `exporter migrate` as it starts; three at once
    on a new install all succeed (one migrates, the others wait and find it done), and all read
    the one secret key that was made."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTER_")}
    env.update(EXPORTER_INSTANCE_PATH=str(tmp_path), EXPORTER_DATABASE_URL=fresh_database_url)
    script = "from exporter import create_app; print(create_app(web=False).config['SECRET_KEY'])"
    units = [subprocess.Popen([sys.executable, "-m", "exporter", "migrate"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    keys = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
            for _ in range(3)]
    results = [unit.communicate(timeout=120) + (unit.returncode,) for unit in units]
    assert [code for _, _, code in results] == [0, 0, 0], [err for _, err, _ in results]
    assert sum("Running upgrade" in err for _, err, _ in results) == 1
    made = {key.communicate(timeout=60)[0].strip() for key in keys}
    assert made == {(tmp_path / "secret_key").read_text().strip()} and "" not in made
    assert sorted(p.name for p in tmp_path.iterdir() if "secret_key" in p.name) == ["secret_key"]


# Run `exporter files send` in a process of its own and print, at its exit, the modules it loaded of these.
_LOADED_AT_EXIT = """import atexit, sys
atexit.register(lambda: print("loaded:", sorted({m.split('.')[0] if not m.startswith('exporter.') else m
    for m in sys.modules if m.startswith(('exporter.web', 'flask_limiter', 'limits', 'alembic', 'redis', 'rq'))})))
from exporter.cli import main
main(sys.argv[1:], prog_name="exporter")
"""


def test_files_send_loads_only_what_it_uses(tmp_path):
    """A command that sends one file loads only what it uses (issue 26): the app without its blueprints
    nor the login limiter, no Alembic for a migrated database, no Redis client for a file sent here."""
    assert _exporter(tmp_path, "migrate").returncode == 0
    env = {**os.environ, "EXPORTER_INSTANCE_PATH": str(tmp_path),
           "EXPORTER_DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.sqlite'}"}
    env.pop("EXPORTER_REDIS_URL", None)
    result = subprocess.run([sys.executable, "-c", _LOADED_AT_EXIT, "files", "send", "--profile", "Nobody",
                             "--date", "2020-01-01", "--now"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "no profile named 'Nobody'" in result.stderr  # the app was loaded
    assert result.stdout.strip().splitlines()[-1] == "loaded: []"
    # The same hook on a command that serves pages sees them: the check above can fail.
    pages = subprocess.run([sys.executable, "-c", _LOADED_AT_EXIT.replace("main(sys.argv[1:], prog_name=\"exporter\")",
                            "from exporter import create_app; create_app()")], env=env, capture_output=True,
                           text=True, timeout=120)
    assert "exporter.web.profiles" in pages.stdout and "flask_limiter" in pages.stdout


def test_the_migration_check_without_alembic_reads_the_heads_alembic_reads(app):
    """`exporter files send` and the other commands see an up-to-date database without loading Alembic:
    the heads read from the migration files are Alembic's own."""
    from alembic.script import ScriptDirectory

    from exporter import cli

    script = ScriptDirectory.from_config(app.extensions["migrate"].migrate.get_config())
    assert cli._code_heads() == set(script.get_heads())
    with app.app_context():
        assert cli._database_heads() == set(script.get_heads())  # the test database is migrated
        assert not cli._pending_migrations()
