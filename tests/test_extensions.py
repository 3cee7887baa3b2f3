"""SQLite has one writer: the processes of one install (web, workers, cron) take turns on a lock
that hands the next one its turn at once, instead of SQLite's busy handler sleeping in steps."""
import multiprocessing
import time

from exporter import create_app
from exporter.extensions import db, writing


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
