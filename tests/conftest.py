"""Shared fixtures: a real database (SQLite, or PostgreSQL when EXPORTER_TEST_DATABASE_URL is
set), a real Redis (EXPORTER_TEST_REDIS_URL, else an embedded server), real RQ workers and
a real HTTP receiver on loopback."""
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from exporter import create_app
from exporter.extensions import db
from exporter.models import User

from . import chromium, clock
from .receiver import Receiver

PASSWORD = "correct horse battery"


def pytest_addoption(parser):
    parser.addoption("--clock", default=os.environ.get("EXPORTER_TEST_CLOCK", ""),
                     help="run under another clock, this process and the ones it starts: +400d, -3h, an ISO "
                          "instant, midnight, ny-spring, ny-fall (tests/clock.py; env EXPORTER_TEST_CLOCK)")


def pytest_report_header(config):
    instant = getattr(config, "moved_clock", None)
    if instant:
        return f"clock moved to {instant:%Y-%m-%d %H:%M:%S} UTC ({config.getoption('clock')}), ticking"
    if clock.moved():
        return "clock moved by the test run that started this one"
    return None


def pytest_configure(config):
    """Move the clock first when asked (tests/clock.py): the test modules read it as they load.
    Then install the third-party sample type (tests/plugins/jsonlines) for this run only, before the
    tests are collected: a real offline pip build, found through its entry point like any plugin,
    and never in the virtualenv that `make run` uses."""
    try:
        config.moved_clock = clock.start(config.getoption("clock"))
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None
    target = tempfile.mkdtemp(prefix="exporter-test-plugins-")
    # pip builds in the source folder: sessions run side by side (CI's moved clocks) each build a copy
    source = shutil.copytree(Path(__file__).parent / "plugins" / "jsonlines", Path(target + "-source"),
                             ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps", "--no-index",
                    "--target", target, str(source)], check=True, capture_output=True)
    shutil.rmtree(source, ignore_errors=True)
    sys.path.insert(0, target)
    config.sample_plugin_dir = target


def _is_screen_test(item):
    return item.get_closest_marker("browser") is not None or "browser" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(config, items):
    """No Chromium here: skip the screen tests and say so at the end (CI fails instead)."""
    found, path = chromium.executable()
    screen_tests = [item for item in items if _is_screen_test(item)]
    if found or not screen_tests:
        return
    if chromium.required():
        raise pytest.UsageError(f"EXPORTER_REQUIRE_BROWSER is set but no Chromium was found "
                                f"({len(screen_tests)} screen tests need one): {chromium.how_to_enable()}")
    skip = pytest.mark.skip(reason="no Chromium for the screen tests")
    for item in screen_tests:
        item.add_marker(skip)
    config.screen_tests_skipped = len(screen_tests)


def pytest_unconfigure(config):
    skipped = getattr(config, "screen_tests_skipped", 0)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if skipped and reporter:  # after pytest's own last line, so it is the run's last word
        reporter.write_line(
            f"{skipped} screen tests did not run (no Chromium found). To run them: {chromium.how_to_enable()}",
            yellow=True, bold=True)
    target = getattr(config, "sample_plugin_dir", None)
    if target:
        sys.path.remove(target)
        shutil.rmtree(target, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url():
    url = os.environ.get("EXPORTER_TEST_REDIS_URL")
    if url:
        yield url
        return
    from exporter.delivery.queue import EmbeddedRedis

    server = EmbeddedRedis().start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def database_template(tmp_path_factory):
    """Migrate once per session: a template SQLite file, or the PostgreSQL database itself."""
    url = os.environ.get("EXPORTER_TEST_DATABASE_URL")
    if not url:
        url = "sqlite:///" + str(tmp_path_factory.mktemp("db") / "template.sqlite")
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "test", "TESTING": True})
    with app.app_context():
        from flask_migrate import downgrade, upgrade

        if url.startswith("postgres"):
            downgrade(directory=app.extensions["migrate"].directory, revision="base")
        upgrade(directory=app.extensions["migrate"].directory)
        db.engine.dispose()
    return url


def _database_for_test(template, tmp_path):
    if template.startswith("sqlite:///"):
        path = tmp_path / "exporter.sqlite"
        shutil.copy(template[len("sqlite:///"):], path)
        return f"sqlite:///{path}"
    return template


def _empty_tables():
    tables = [t.name for t in reversed(db.metadata.sorted_tables)]
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    db.session.commit()


@pytest.fixture
def app_config(database_template, redis_url, tmp_path):
    return {
        "TESTING": True,
        "DATABASE_URL": _database_for_test(database_template, tmp_path),
        "REDIS_URL": redis_url,
        "SECRET_KEY": "test-secret",
        "WTF_CSRF_ENABLED": False,
        "ALLOW_PRIVATE_TARGETS": True,
        "MINUTE_SECONDS": 1,  # an Export Delay minute is a second in tests
        "RETRY_BASE_SECONDS": 0.2,
        "RETRY_MAX_SECONDS": 1,
        "SWEEP_GRACE_SECONDS": 0,
        "FILES_DIR": str(tmp_path / "files"),
    }


@pytest.fixture
def app(app_config):
    from exporter.delivery.queue import connect

    app = create_app(app_config)
    connect(app_config["REDIS_URL"]).flushdb()
    with app.app_context():
        _empty_tables()
        yield app
        from exporter.delivery import drain

        drain.stop_engine(timeout=10)
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def admin(app):
    user = User(email="admin@example.com")
    user.set_password(PASSWORD)
    db.session.add(user)
    db.session.commit()
    return user


@pytest.fixture
def logged_in(client, admin):
    response = client.post("/login", data={"email": admin.email, "password": PASSWORD})
    assert response.status_code == 302
    return client


@pytest.fixture
def intake_token(app):
    from exporter.intake import tokens

    return tokens.create("crm")


@pytest.fixture
def post_events(client, intake_token):
    """POST a body to the intake with a valid token; returns the response."""

    def post(body, token=intake_token, **kwargs):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return client.post("/intake/events", json=body, headers=headers, **kwargs)

    return post


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def run_jobs(app):
    """Run a real RQ SimpleWorker in burst mode in this process, with the scheduler."""
    from rq import SimpleWorker

    from exporter.delivery import drain, queue

    def run(until=None, timeout=10.0):
        q = queue.get_queue(app.config["REDIS_URL"], app.config["QUEUE_NAME"])
        deadline = time.monotonic() + timeout
        while True:
            SimpleWorker([q], connection=q.connection).work(burst=True, with_scheduler=True,
                                                            logging_level="WARNING")
            drain.wait_idle(max(deadline - time.monotonic(), 0.1))  # the sends it started are recorded
            db.session.expire_all()
            if until is None or until():
                return
            if time.monotonic() > deadline:
                raise AssertionError("jobs did not reach the expected state in time")
            time.sleep(0.05)

    return run
