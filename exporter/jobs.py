"""RQ job functions: an app context pushed, the flow called. Nothing else."""
from contextlib import contextmanager

from flask import current_app, has_app_context

_app = None


def set_app(app):
    """The worker's app, loaded once: jobs run in the worker's own process."""
    global _app
    _app = app


@contextmanager
def app_context():
    global _app
    if has_app_context():  # in-process workers (tests) run inside the caller's app
        yield current_app
        return
    if _app is None:
        from . import create_app

        _app = create_app()
    with _app.app_context():
        yield _app


def drain():
    with app_context():
        from .delivery import drain as drain_

        return drain_.drain()


def deliver(delivery_id):
    """A job queued by an older version: the drain sends whatever is due, that delivery too."""
    return drain()


def sweep():
    with app_context():
        from .delivery import dispatch

        return dispatch.sweep()


def daily_files_tick():
    with app_context():
        from .files import daily_files

        return daily_files.tick()


def alerts_tick():
    """Tell the admins who opt in of what needs them (a host down, a daily file failed, no worker)."""
    with app_context() as app:
        from .ops import alerts

        return alerts.tick(app.config)


def purge():
    """The daily retention purge: RETENTION_DAYS of personal data kept, older erased (0: kept
    forever); once a day however many crons queue it (None: another did it, or does it now)."""
    with app_context() as app:
        from . import audit
        from .flows import retention
        from .models import utcnow

        with audit.acting_as("system", "cron"):
            counts = retention.daily_purge(utcnow(), app.config["RETENTION_DAYS"])
            return None if counts is None else vars(counts)
