"""SQLite has one writer: the processes of one install (web, workers, cron) take turns on a lock
that hands the next one its turn at once, instead of SQLite's busy handler sleeping in steps.
PostgreSQL's connections may be cut: one that sat unused is tested before use, one in steady use
is not, and the intake tries a body again when its connection was cut."""
import multiprocessing
import time

import pytest

from exporter import create_app
from exporter.extensions import db, writing
from exporter.models import Event


def _hold_a_turn(config, seconds, holding):
    app = create_app(config)
    with app.app_context(), writing():
        holding.set()
        time.sleep(seconds)


def test_a_second_process_waits_for_the_first_ones_turn_to_write_on_sqlite_only(app, app_config):
    spawn = multiprocessing.get_context("spawn")
    holding = spawn.Event()
    other = spawn.Process(target=_hold_a_turn, args=(dict(app_config), 1.0, holding))
    other.start()
    try:
        assert holding.wait(60), "the other process never wrote"
        started = time.monotonic()
        with writing():
            waited = time.monotonic() - started
    finally:
        other.join(30)
    if db.engine.dialect.name == "sqlite":
        assert 0.5 < waited < 5, f"waited {waited:.2f} s for a turn the other held for 1 s"
    else:  # PostgreSQL locks rows: writers never wait for a turn
        assert waited < 0.2
    assert other.exitcode == 0


def _cut(pids=None):
    """The server's side of this database's connections (or of those pids) ended, from a connection
    of its own, as a failover or pg_terminate_backend does."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    own = create_engine(db.engine.url, poolclass=NullPool)
    with own.connect() as connection:
        cut = connection.execute(text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()" + (" AND pid = ANY(:pids)" if pids else "")), {"pids": pids}).all()
        connection.commit()
    own.dispose()
    return len(cut)


def _server_pid():
    from sqlalchemy import text

    pid = db.session.scalar(text("SELECT pg_backend_pid()"))
    db.session.commit()  # the connection goes back to the pool
    return pid


def test_a_connection_idle_past_the_ping_interval_is_tested_and_replaced_when_cut(app, monkeypatch):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite: a file has no connection to cut")
    from exporter import extensions

    before = _server_pid()
    assert _cut([before]) == 1
    monkeypatch.setattr(extensions, "IDLE_PING_SECONDS", 0.0)  # as if it sat unused for a while
    after = _server_pid()  # no error: the ping found it cut, the pool opened another
    assert after != before


def test_the_intake_stores_a_body_sent_just_after_its_connections_were_cut(app, post_events):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite: a file has no connection to cut")
    from .factories import event

    assert post_events(event("before-the-cut")).status_code == 202
    db.session.commit()
    assert _cut() >= 1  # given back a moment ago: not tested again before use
    response = post_events(event("after-the-cut", customerId=2))
    assert response.status_code == 202, response.get_json()  # its first try failed, the second stored it
    assert response.get_json()["accepted"] == 1
    db.session.rollback()
    assert db.session.scalar(db.select(db.func.count()).select_from(Event)) == 2
