"""RQ job functions: ids in, an app context pushed, the flow called. Nothing else."""
from contextlib import contextmanager

from flask import current_app, has_app_context

_app = None


def set_app(app):
    """Preload the app in a worker before it forks, so each job does not build it again."""
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


def deliver(delivery_id):
    with app_context():
        from . import dispatch

        return dispatch.deliver(delivery_id)


def sweep():
    with app_context():
        from . import dispatch

        return dispatch.sweep()


def daily_files_tick():
    with app_context():
        from . import daily_files

        return daily_files.tick()
