"""The `exporter` command: run, worker, cron, create-admin, create-token, profiles, files, purge.

Over 400 lines: one thin command a subcommand each, whose work lives in the parts; what is
long here is help text and the first-start messages."""
import functools
import gc
import getpass
import json
import os
import secrets
import shutil
import signal
import sys

import click
from flask import current_app
from flask.cli import ScriptInfo, with_appcontext

from . import create_app
from .config import PRIVATE_UMASK


class ExporterGroup(click.Group):
    """Exporter's own commands and help: not Flask's (no --app, --debug, --env-file, db or limiter).
    A command loads the app when it runs (with_appcontext reads the ScriptInfo put here)."""

    def make_context(self, info_name, args, parent=None, **extra):
        extra.setdefault("obj", ScriptInfo(create_app=create_app, set_debug_flag=False))
        return super().make_context(info_name, args, parent=parent, **extra)


def serves_no_pages(command):
    """The command builds the app without the web (create_app(web=False)): it loads only what it
    uses. Above @with_appcontext; an app already loaded (a test's runner) is used as it is."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        info = click.get_current_context().ensure_object(ScriptInfo)
        if info.create_app is create_app:
            info.create_app = functools.partial(create_app, web=False)
        return command(*args, **kwargs)

    return wrapper


def _version():
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("exporter")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown"


@click.group(cls=ExporterGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Each command has its own --help. Docs: README.md and docs/ in the project.")
@click.version_option(_version(), "--version", prog_name="Exporter", message="%(prog)s %(version)s")
def main():
    """Exporter: export CRM order events to third parties.

    `exporter run` starts everything on one machine (web UI, worker, cron); in production run
    the web server, `exporter worker` and `exporter cron` apart. Settings come from
    EXPORTER_* variables and instance/config.py."""
    os.umask(PRIVATE_UMASK)  # every command's files are its user's alone (create_app sets it too)


def init_app(app):
    """Put the commands on app.cli too, so `flask --app exporter ...` and app.test_cli_runner() see them."""
    for name, command in main.commands.items():
        app.cli.add_command(command, name)


# --- processes -----------------------------------------------------------------------------

def _upgrade_db():
    """Migrate when the database is behind; an up-to-date one is not touched (and Alembic says nothing).
    One process at a time: web units on several machines run `exporter migrate` as they start
    together after a release; the others wait, then find the database up to date."""
    from flask_migrate import upgrade

    from .extensions import exclusive

    if not _pending_migrations():
        return
    with exclusive("migrate", wait=True):
        if _pending_migrations():
            upgrade(directory=current_app.extensions["migrate"].directory)


def _pending_migrations():
    """True when the database is behind the code's migrations (a fresh database is)."""
    heads = _code_heads()
    if heads and heads == _database_heads():
        return False  # up to date, seen without loading Alembic (some 120 modules, 10 MB)
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from .extensions import db

    script = ScriptDirectory.from_config(current_app.extensions["migrate"].migrate.get_config())
    with db.engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    return current != set(script.get_heads())


_SETTING = r"^{}\s*(?::[^=\n]*)?=\s*(.+)$"


def _code_heads():
    """The code's migration heads, read from each file's `revision` and `down_revision` lines (the
    revisions no other one follows), or None when a file says them otherwise: then Alembic decides."""
    import ast
    import re

    versions = os.path.join(os.path.dirname(__file__), "migrations", "versions")
    revisions, followed = set(), set()
    for name in os.listdir(versions):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(versions, name), encoding="utf-8") as f:
            text = f.read()
        found = [re.search(_SETTING.format(key), text, re.M) for key in ("revision", "down_revision")]
        try:
            revision, down = (ast.literal_eval(m.group(1).strip()) for m in found)
        except (AttributeError, ValueError, SyntaxError):
            return None
        revisions.add(revision)
        followed.update((down,) if isinstance(down, str) else down or ())
    return revisions - followed


def _database_heads():
    """The revisions alembic_version holds, or None when it cannot be read (no table yet)."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from .extensions import db

    try:
        with db.engine.connect() as connection:
            return set(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())
    except DBAPIError:
        return None


def command_name():
    """How to call this command again: `exporter` when it is on PATH, else the path it was run by
    (`.venv/bin/exporter` after `make run`)."""
    ran = sys.argv[0]
    if os.path.basename(ran) != "exporter" or shutil.which("exporter") == os.path.abspath(ran):
        return "exporter"
    relative = os.path.relpath(ran)
    return os.path.abspath(ran) if relative.startswith("..") else relative


def migrated(only_check=False):
    """A command that needs the schema: it migrates first (a one-off admin command), or, when
    only_check (long-running processes, which `exporter run` starts after migrating), says to."""
    def decorate(command):
        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            if _pending_migrations():
                if only_check:
                    raise click.ClickException(f"the database is not migrated yet: run `{command_name()} migrate` "
                                               "first (`exporter run` migrates on start)")
                click.echo("migrating the database first", err=True)
                _upgrade_db()
            return command(*args, **kwargs)
        return wrapper
    return decorate


def cli_user():
    """Who runs the command, as the audit log names them: cli:<login name>."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name (a container's bare uid)
        return f"cli:uid-{os.getuid()}"


def audited(command):
    """A command that changes things: its audit entries name the login that ran it, via cli."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from . import audit

        with audit.acting_as(cli_user(), "cli"):
            return command(*args, **kwargs)
    return wrapper


SAMPLE_EVENT = json.dumps({"id": "evt-1001", "type": "partial", "order": {
    "orderId": 104233, "customerId": 55821, "campaignId": 259, "campaignName": "Test Lander",
    "firstName": "Jane", "emailAddress": "jane@example.com", "orderDate": "2026-11-27 14:03:22"}})


def _first_start_help(host, port):
    """On first start make an admin and an intake token, and say how to use them."""
    from . import audit
    from .intake import tokens
    from .extensions import db
    from .models import IntakeToken, User

    lines = [f"Exporter is running at http://{host}:{port}/"]
    if not db.session.scalar(db.select(User.id).limit(1)):
        password = secrets.token_urlsafe(12)
        email = "admin@example.com"
        user = User(email=email)
        user.set_password(password)
        db.session.add(user)
        db.session.flush()
        audit.record("admin.create", "admin", user.id, email, summary="First start: the first admin",
                     after={"email": email})
        db.session.commit()
        lines.append(f"First start: log in as {email} with password {password}")
        lines.append(f"  (make your own admin with: {command_name()} create-admin YOU@EXAMPLE.COM)")
    if not db.session.scalar(db.select(IntakeToken.id).limit(1)):
        token = tokens.create("default")
        lines.append("Intake token for the CRM (shown once, keep it):")
        lines.append(f"  TOKEN={token}")
        lines.append("  curl -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' "
                     f"-d '{SAMPLE_EVENT}' http://{host}:{port}/intake/events")
    click.echo("\n".join(lines))


@main.command("run")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True)
@click.option("--verbose", is_flag=True, help="Show the worker's and cron's RQ lines (each job, each sweep).")
@with_appcontext
def run_command(host, port, verbose):
    """Web UI, worker, scheduler and cron in one command (embedded Redis if none is configured).

    The worker and cron are restarted when they die; Ctrl-C or SIGTERM stops everything."""
    from .delivery.queue import EmbeddedRedis, mask_url
    from .web.security import use_redis_for_limits

    for sig in (signal.SIGTERM, signal.SIGHUP):  # a service manager, a closed terminal: as Ctrl-C
        signal.signal(sig, lambda *_: sys.exit(0))
    embedded, supervisor = None, None
    env = dict(os.environ)
    env["EXPORTER_LOG_LEVEL"] = "INFO" if verbose else env.get("EXPORTER_LOG_LEVEL", "WARNING")
    redis_url = current_app.config.get("REDIS_URL")
    try:
        if not redis_url:
            embedded = EmbeddedRedis().start()
            redis_url = current_app.config["REDIS_URL"] = env["EXPORTER_REDIS_URL"] = embedded.url
            use_redis_for_limits(current_app, redis_url)
            click.echo(f"EXPORTER_REDIS_URL is not set: started an embedded Redis at {mask_url(redis_url)}")
        _upgrade_db()
        supervisor = _supervisor(env).start()
        server = web_server(current_app._get_current_object(), host, port)
        _first_start_help(host, port)  # printed once the port is open, so the URL answers
        server.run()
    except KeyboardInterrupt:  # Ctrl-C before the server ran
        pass
    finally:
        _stop_all(supervisor, embedded)


def _supervisor(env):
    from .ops.supervisor import Child, Supervisor

    children = [Child(name, [sys.executable, "-m", "exporter", name], env) for name in ("worker", "cron")]
    return Supervisor(children, echo=lambda line: click.echo(line, err=True))


def _stop_all(supervisor, embedded):
    """Stop the children (a second Ctrl-C kills them), then the embedded Redis they used."""
    if supervisor:
        click.echo("Stopping worker and cron...", err=True)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda *_: supervisor.kill())
        supervisor.stop(timeout=float(current_app.config["SEND_TIMEOUT_SECONDS"]) + 10)
    if embedded:
        embedded.stop()


def web_server(app, host, port):
    """The waitress server of exporter run: a body larger than the intake's limit is refused
    (413) from its Content-Length, before it is read."""
    from waitress import create_server

    from .intake import accept as intake  # noqa: F401 - loaded now, with the app, before the freeze

    # What is loaded by now lives as long as the process: kept out of the garbage collector's
    # full passes, which otherwise walk it again and again while a 1,000-event body is read.
    gc.freeze()
    return create_server(app, host=host, port=port, threads=8, max_request_body_size=app.config["INTAKE_MAX_BYTES"])


def _redis_url():
    url = current_app.config.get("REDIS_URL")
    if not url:
        raise click.ClickException("EXPORTER_REDIS_URL is not set (exporter run starts an embedded Redis)")
    return url


@main.command("worker")
@click.option("--burst", is_flag=True, help="Quit when the queue is empty.")
@with_appcontext
@migrated(only_check=True)
def worker_command(burst):
    """An RQ worker with the scheduler: sends deliveries when they are due."""
    from .delivery import drain, queue, schedule
    from . import jobs

    app = current_app._get_current_object()
    jobs.set_app(app)
    drain.engine_for(app)  # its heartbeat says from now on that this worker is alive
    # A drain at start, whatever the wake-up key says: a worker stopped right after taking a
    # drain job from Redis loses it (RQ), and the key would hold back new wake-ups for a while.
    schedule.ack_wake()
    schedule.wake()
    gc.freeze()  # the app, loaded once, stays: the collector's full passes need not walk it again
    url, name = _redis_url(), app.config["QUEUE_NAME"]
    try:
        level = app.config["LOG_LEVEL"]
        queue.keep_running(lambda: queue.run_worker(url, name, burst=burst, on_stop=drain.stopping.set,
                                                    logging_level=level),
                           "the worker", stopped=drain.stopping.is_set, once=burst)
    finally:  # the sends in hand finish and are recorded; a claim not started was given back
        drain.stopping.set()
        drain.stop_engine(timeout=float(app.config["SEND_TIMEOUT_SECONDS"]) + 5)


@main.command("cron")
@with_appcontext
@migrated(only_check=True)
def cron_command():
    """The cron scheduler: the sweeper, the daily-file tick and the alerts; the retention purge daily."""
    from . import jobs
    from .delivery import queue

    url, name, level = _redis_url(), current_app.config["QUEUE_NAME"], current_app.config["LOG_LEVEL"]
    interval = int(current_app.config["SWEEP_INTERVAL_SECONDS"])
    queue.keep_running(lambda: queue.run_cron(url, [jobs.sweep, jobs.daily_files_tick, jobs.alerts_tick], name, interval=interval,
                                              logging_level=level, daily=[jobs.purge]),
                       "cron", once=True)


@main.command("migrate")
@with_appcontext
def migrate_command():
    """Apply the database migrations (exporter run does this on start)."""
    _upgrade_db()
    click.echo("database is up to date")


# --- users and tokens -------------------------------------------------------------------------

@main.command("create-admin")
@click.argument("email")
@click.password_option(help="Asked for when not given.")
@with_appcontext
@migrated()
@audited
def create_admin(email, password):
    """Create an admin, or make an existing user an enabled admin with this password."""
    from .ops import admins

    if len(password) < 8:
        raise click.BadParameter("use at least 8 characters", param_hint="--password")
    try:
        user = admins.create_admin(email, password)
    except admins.AdminError:
        raise click.BadParameter("not an email address", param_hint="EMAIL") from None
    click.echo(f"admin {user.email} can log in")


@main.command("create-token")
@click.argument("name")
@with_appcontext
@migrated()
@audited
def create_token(name):
    """Create an intake token; the token is printed once, alone on the last line."""
    from .intake import tokens

    token = tokens.create(name)
    click.echo(f"Intake token {name!r} created. It is shown only now:")
    click.echo(token)


# --- profiles as code -----------------------------------------------------------------------

@main.group("profiles")
def profiles_group():
    """Profiles as code: export and import the profiles JSON; send a profile past events."""


@profiles_group.command("export")
@click.option("-o", "--output", type=click.File("w"), default="-", help="Write to this file instead of printing.")
@with_appcontext
@migrated()
def profiles_export(output):
    """Print every profile as the profiles JSON (mappings, routes, settings; secrets as ****),
    or write it to a file with -o."""
    from .profiles import as_code as profiles_io

    json.dump(profiles_io.export_all(), output, indent=2)
    output.write("\n")


@profiles_group.command("import")
@click.argument("file", type=click.File("r"))
@with_appcontext
@migrated()
@audited
def profiles_import(file):
    """Create or update profiles by name from a profiles JSON FILE (as `profiles export` writes it).

    The whole file is checked first: one bad profile imports nothing. A secret given as ****
    keeps the one stored."""
    from .profiles import as_code as profiles_io

    try:
        data = json.load(file)
    except ValueError as exc:
        raise click.ClickException(f"{file.name} is not JSON: {exc}")
    try:
        created, updated = profiles_io.import_all(data)
    except profiles_io.ImportProblem as exc:
        raise click.ClickException(str(exc))
    click.echo(f"imported: {created} created, {updated} updated")


REPLAY_HINTS = {"profile": "NAME", "since": "--since", "until": "--until", "customer_types": "--customer-type"}


@profiles_group.command("replay")
@click.argument("name")
@click.option("--since", required=True, help="From date, YYYY-MM-DD (the profile's time zone for a daily file, else UTC).")
@click.option("--until", required=True, help="To date, YYYY-MM-DD, included.")
@click.option("--customer-type", "types", multiple=True,
              help="Only this customer type of the profile's routes (repeat it); all of them when not given.")
@click.option("--dry-run", is_flag=True, help="Only count what would be sent; create nothing.")
@with_appcontext
@migrated()
def profiles_replay(name, since, until, types, dry_run):
    """Send past events: a delivery for each event of the range that the profile's routes match and
    that it has not exported yet (never twice), sent after its Export Delay like a live event."""
    from . import audit
    from .flows import replay
    from .extensions import db
    from .models import Profile

    profile = db.session.scalar(db.select(Profile).where(Profile.name == name))
    if profile is None:
        raise click.BadParameter(f"no profile named {name!r}", param_hint="NAME")
    try:
        with audit.acting_as(cli_user(), "cli"):
            result = replay.replay(profile, since, until, types, dry_run=dry_run)
    except replay.ReplayError as exc:
        raise click.BadParameter(str(exc), param_hint=REPLAY_HINTS[exc.field])
    click.echo(("Dry run, nothing created: " if dry_run else "") + result.summary())


# --- daily files ------------------------------------------------------------------------------

@main.group("files")
def files_group():
    """Daily files: rebuild and resend a past day's file."""


@files_group.command("send")
@click.option("--profile", "profile_name", required=True, help="The Profile Name of a daily-file profile.")
@click.option("--date", "day", required=True, help="The day whose file to send, YYYY-MM-DD.")
@click.option("--now", "send_here", is_flag=True,
              help="Send here and wait, instead of queueing for the workers: only when no worker runs "
                   "(no job timeout applies; see docs/operations.md).")
@serves_no_pages
@with_appcontext
@migrated()
@audited
def files_send(profile_name, day, send_here):
    """Rebuild a past day's file for every route of a profile and queue it for the workers."""
    from .files import daily_files
    from .extensions import db
    from .models import Profile

    profile = db.session.scalar(db.select(Profile).where(Profile.name == profile_name))
    if profile is None:
        raise click.BadParameter(f"no profile named {profile_name!r}", param_hint="--profile")
    try:
        queued, busy = daily_files.rerun(profile, daily_files.parse_day(day), enqueue=False)
    except daily_files.RerunError as exc:
        raise click.BadParameter(str(exc), param_hint=f"--{exc.field}")
    for delivery in busy:
        click.echo(f"{_file(delivery)}: being sent by a worker right now; left alone")
    if not send_here:
        for delivery in queued:
            _queue(delivery)
    elif not all([_send_here(delivery) for delivery in queued]):  # every file is tried, then the exit status
        sys.exit(1)


def _queue(delivery):
    from .delivery import schedule

    if not schedule.enqueue(delivery):
        click.echo(f"{_file(delivery)}: due now (delivery {delivery.id}), but no worker queue was "
                   f"reached: the sweeper of `exporter run` or `exporter cron` will queue it")
    else:
        click.echo(f"{_file(delivery)}: queued for the workers (delivery {delivery.id})")


def _send_here(delivery):
    from .delivery import drain
    from .extensions import db

    drain.send_one(delivery.id)
    db.session.refresh(delivery)
    if delivery.status == "delivered":
        click.echo(f"{_file(delivery)}: {_file_summary(delivery)}")
        return True
    if delivery.status in delivery.WAITING and delivery.waiting_reason:  # the send window is closed
        reason = delivery.waiting_reason.removeprefix("Waiting for the send window: ")
        click.echo(f"{_file(delivery)}: not sent: waits for the send window: {reason} "
                   f"(delivery {delivery.id}, sent by the workers then)", err=True)
        return False
    attempt = delivery.attempts[-1] if delivery.attempts else None
    error = attempt.error if attempt else "not sent"
    click.echo(f"{_file(delivery)}: failed: {error} (retried by the workers)", err=True)
    return False


def _file(delivery):
    from .files import daily_files

    words = daily_files.file_words(delivery)
    return words[0].upper() + words[1:]


def _file_summary(delivery):
    details = delivery.details or {}
    if details.get("uploaded") is False:
        return f"{details.get('file_name')}: no rows, not uploaded (Send Empty Files is off)"
    rows = details.get("rows")
    return (f"{details.get('file_name')} uploaded: {rows} {'row' if rows == 1 else 'rows'}, {details.get('bytes')} bytes, "
            f"sha256 {details.get('sha256')} (delivery {delivery.id})")


# --- retention ---------------------------------------------------------------------------------

@main.command("purge")
@click.option("--dry-run", is_flag=True, help="Count what would be purged; change nothing.")
@click.option("--days", type=int, default=None,
              help="Keep this many days of personal data (default: RETENTION_DAYS; 0 keeps it forever).")
@click.option("--batch-size", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Rows per transaction: smaller holds the database for less time.")
@with_appcontext
@migrated()
def purge_command(dry_run, days, batch_size):
    """Purge personal data older than RETENTION_DAYS (the daily cron job does the same)."""
    from . import audit
    from .flows import retention
    from .models import utcnow

    try:
        retention.check_days(current_app.config["RETENTION_DAYS"] if days is None else days)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="RETENTION_DAYS" if days is None else "--days")
    days = current_app.config["RETENTION_DAYS"] if days is None else days
    if days == 0:
        click.echo("retention is 0 days: personal data is kept forever, nothing to purge")
        return
    with audit.acting_as(cli_user(), "cli"):
        counts = retention.purge(utcnow(), days, batch_size=batch_size, dry_run=dry_run)
    verb = "would purge" if dry_run else "purged"
    click.echo(f"{verb} personal data older than {days} days: {counts.words()}")
