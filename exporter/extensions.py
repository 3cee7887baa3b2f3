"""Flask extensions, created here and bound to the app in create_app."""
import contextlib
import threading

import click
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
import sqlite3

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


class Migrate:
    """Flask-Migrate, bound on first use (a migration, `exporter db ...`), not when the app is made:
    importing it loads Alembic, some 10 MB that a worker sending a day's file never uses."""

    def init_app(self, app, db, **kwargs):
        app.extensions["migrate"] = _Unbound(app, db, kwargs)
        app.cli.add_command(_LazyGroup("db", help="Flask-Migrate's database migration commands."))


class _Unbound:
    def __init__(self, app, db, kwargs):
        self._args = app, db, kwargs

    def __getattr__(self, name):  # the first use: the real Flask-Migrate replaces this
        from flask_migrate import Migrate as FlaskMigrate

        app, db, kwargs = self._args
        FlaskMigrate(app, db, **kwargs)
        return getattr(app.extensions["migrate"], name)


class _LazyGroup(click.Group):
    """Flask-Migrate's `db` commands, imported when one runs: the real group makes the context."""

    def make_context(self, info_name, args, parent=None, **extra):
        from flask_migrate.cli import db as group

        return group.make_context(info_name, args, parent=parent, **extra)


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
csrf = CSRFProtect()
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message_category = "info"
# Login throttling; its storage is the app's Redis (RATELIMIT_STORAGE_URI, set from REDIS_URL).
limiter = Limiter(key_func=get_remote_address, key_prefix="exporter")


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record):
    """SQLite: WAL lets the web, worker and cron processes read while one writes; wait, don't fail, on a lock."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


# SQLite has one writer, and a writer that finds the lock taken sleeps in steps of up to 100 ms:
# one process's writers (the intake's threads, a worker's claimer, recorder and heartbeat) take
# turns on a lock of their own instead. PostgreSQL locks rows: nothing to hold there.
_sqlite_writer = threading.Lock()


def writing():
    """Hold this around a write transaction (its statements and its commit)."""
    return _sqlite_writer if db.engine.dialect.name == "sqlite" else contextlib.nullcontext()
