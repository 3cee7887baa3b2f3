"""Flask extensions, created here and bound to the app in create_app."""
import contextlib
import os
import threading
import time

try:
    import fcntl
except ImportError:  # not on Windows: there one process's threads take turns, the processes wait on SQLite
    fcntl = None

import click
from flask_login import LoginManager
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
import sqlite3

from sqlalchemy import event, exc
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool
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


def __getattr__(name):
    """`limiter`, made on first use: login throttling, for the web only. Flask-Limiter (and its
    `limits`, some 60 modules) is not loaded by a command that serves no page."""
    if name != "limiter":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from flask_limiter import Limiter
    from flask_limiter.util import get_remote_address

    global limiter
    # Login throttling; its storage is the app's Redis (RATELIMIT_STORAGE_URI, set from REDIS_URL).
    limiter = Limiter(key_func=get_remote_address, key_prefix="exporter")
    return limiter


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record):
    """SQLite: WAL lets the web, worker and cron processes read while one writes; wait, don't fail, on a lock.
    secure_delete: what a Forget or a purge erases is overwritten with zeros, not left in free space."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


# A server's connections may be cut (a restart, pg_terminate_backend). SQLAlchemy's pool_pre_ping
# tests every connection taken from the pool, a round trip each time: on a busy intake a fifth of
# a group's statements. A connection given back within IDLE_PING_SECONDS was alive then (its
# reset on return reached the server), so only one idle longer is tested. One cut in that second
# fails its first statement, the pool is made again (SQLAlchemy's disconnect handling), and the
# intake tries the body again; a page would answer 500 once.
IDLE_PING_SECONDS = 1.0


@event.listens_for(Pool, "connect")
@event.listens_for(Pool, "checkin")
def _note_alive(_dbapi_connection, record):
    if record is not None:
        record.info["alive_at"] = time.monotonic()


@event.listens_for(Pool, "checkout")
def _ping_if_idle(dbapi_connection, record, _proxy):
    if isinstance(dbapi_connection, sqlite3.Connection):  # a file: no connection to lose
        return
    if time.monotonic() - record.info.get("alive_at", 0) < IDLE_PING_SECONDS:
        return
    try:
        cursor = dbapi_connection.cursor()
        cursor.execute("SELECT 1")
        cursor.close()
        dbapi_connection.rollback()  # the ping's transaction: the connection goes out idle, as it came
    except Exception as err:  # the pool drops this connection and takes another (three tries)
        raise exc.DisconnectionError(str(err)) from err


# SQLite has one writer, and a writer that finds the lock taken sleeps in steps of up to 100 ms
# (its busy handler). So writers take turns instead: this process's threads (the intake's, a
# worker's claimer, recorder and heartbeat) on a lock of their own, and the processes (web,
# workers, cron) on an flock of a file beside the database, which the kernel hands to the next
# writer the moment it is free. PostgreSQL locks rows: nothing to hold there.
_sqlite_writer = threading.Lock()
_lock_files = {}  # (pid, path): an open lock file; a forked child opens its own (flock is per open file)


def writing():
    """Hold this around a write transaction (its statements and its commit)."""
    engine = db.engine
    if engine.dialect.name != "sqlite":
        return contextlib.nullcontext()
    path = engine.url.database
    if not path or path == ":memory:" or fcntl is None:
        return _sqlite_writer
    return _sqlite_turn(path)


def among(column, values):
    """column IN values; on PostgreSQL `column = ANY(array)`, one parameter: a list of a thousand
    ids as IN costs SQLAlchemy's expansion and psycopg's parsing of the statement (placeholders
    by the thousand) at each execution."""
    from sqlalchemy import any_, bindparam
    from sqlalchemy.dialects.postgresql import ARRAY

    if db.session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(values)


def truncate_wal():
    """SQLite: copy the WAL into the database and empty the WAL file, so that data just erased
    (a Forget, a purge) does not stay there in clear until the next automatic checkpoint. It waits
    for readers to move to the latest snapshot (busy_timeout). PostgreSQL: nothing to do here; its
    old row versions stay until VACUUM (docs/security.md)."""
    if db.engine.dialect.name != "sqlite":
        return
    with writing(), db.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def _open_lock_file(path):
    """The writer lock, 0600: flock needs only an open file, even read-only, so a file that
    another local user can open is a lock they can hold, stalling every write."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    with contextlib.suppress(OSError):  # a file an older version made 0644; not ours: leave it
        os.fchmod(fd, 0o600)
    return os.fdopen(fd, "a")


@contextlib.contextmanager
def _sqlite_turn(path):
    with _sqlite_writer:
        key = (os.getpid(), path)
        lock_file = _lock_files.get(key)
        if lock_file is None:
            lock_file = _lock_files[key] = _open_lock_file(path + ".writer")
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


# One process at a time for a job that must not run twice at once on any machine (the daily
# purge, a migration): a lock the database server or the kernel drops when its holder dies, so
# a SIGKILLed holder never leaves it taken and there is no expiry to tune. PostgreSQL: a
# session-level advisory lock on a connection of its own. SQLite: an flock of a file beside the
# database (the processes that share a SQLite file share its folder).
_held = {}  # (pid, name): this process holds it (an in-memory database: the threads' only lock)


@contextlib.contextmanager
def exclusive(name, wait=False):
    """Yields True when this process holds the lock `name` until the block ends, False when
    another holds it (wait=False) - then do nothing. wait=True blocks until it is free."""
    engine = db.engine
    if engine.dialect.name == "postgresql":
        with _advisory_lock(engine, name, wait) as held:
            yield held
        return
    path = engine.url.database
    if engine.dialect.name != "sqlite" or not path or path == ":memory:" or fcntl is None:
        lock = _held.setdefault((os.getpid(), name), threading.Lock())
        held = lock.acquire(blocking=wait)
        try:
            yield held
        finally:
            if held:
                lock.release()
        return
    with _open_lock_file(f"{path}.{name}.lock") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


@contextlib.contextmanager
def _advisory_lock(engine, name, wait):
    import zlib

    key = zlib.crc32(f"exporter:{name}".encode())  # one bigint per name, the same in every process
    with engine.connect() as connection:
        while True:
            held = bool(connection.exec_driver_sql(f"SELECT pg_try_advisory_lock({key})").scalar())
            connection.commit()  # the lock outlives transactions; no snapshot is kept open meanwhile
            if held or not wait:
                break
            # Tried again rather than waited for in pg_advisory_lock(): a waiting statement holds a
            # snapshot, and the holder's CREATE INDEX CONCURRENTLY (a migration) waits for it.
            time.sleep(0.2)
        try:
            yield held
        finally:
            if held:
                try:
                    connection.exec_driver_sql(f"SELECT pg_advisory_unlock({key})")
                    connection.commit()
                except Exception:  # the connection was cut (the lock went with it)
                    connection.invalidate()
