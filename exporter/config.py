"""Configuration: these defaults, then instance/config.py, then EXPORTER_* environment variables.

`EXPORTER_DATABASE_URL=postgresql://...` sets DATABASE_URL; values that parse as JSON
(numbers, true/false) are taken as such, anything else as a string. SECRET_KEY, DATABASE_URL
and REDIS_URL are always strings, whatever they look like.
"""
import contextlib
import json
import os
import secrets
import tempfile

DEFAULT_INTAKE_MAX_BYTES = 1024 * 1024
DEFAULT_INTAKE_MAX_EVENTS = 1000
# Never JSON-decoded: a key or a token may be all digits.
STRINGS = frozenset({"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "METRICS_TOKEN"})


class Defaults:
    DATABASE_URL = None  # None: SQLite in the instance folder
    REDIS_URL = None  # None: `exporter run` starts an embedded server
    SECRET_KEY = None  # None: generated once and kept in instance/secret_key
    QUEUE_NAME = "exporter"
    ALLOW_PRIVATE_TARGETS = False
    # Export Names and URL parameters whose Static or URL values are secrets (security.is_credential_name)
    SECRET_NAMES = ["password", "pass", "key", "token", "secret", "apikey"]
    INTAKE_MAX_BYTES = DEFAULT_INTAKE_MAX_BYTES
    INTAKE_MAX_EVENTS = DEFAULT_INTAKE_MAX_EVENTS
    # Seconds in an "Export Delay" minute. Tests shorten it; nobody else should.
    MINUTE_SECONDS = 60
    RETRY_BASE_SECONDS = 30
    RETRY_MAX_SECONDS = 3600
    SEND_TIMEOUT_SECONDS = 15
    # A claim older than this belongs to a dead worker and is released by the sweeper.
    CLAIM_TIMEOUT_SECONDS = 300
    # A worker beats every HEARTBEAT_SECONDS; one silent for WORKER_STALE_SECONDS is dead and
    # its claims are released at once.
    HEARTBEAT_SECONDS = 5
    WORKER_STALE_SECONDS = 20
    # A due delivery this long without being sent is re-enqueued by the sweeper.
    SWEEP_GRACE_SECONDS = 30
    SWEEP_INTERVAL_SECONDS = 60
    TEST_CARD_NUMBERS = ["4111111111111111", "4242424242424242", "1444444444444440"]
    # Sends in flight to one host from one worker (N workers: up to N times this per host); 0: no limit.
    # A host's own limits (the dashboard's Host limits) hold across all workers instead.
    HOST_CONCURRENCY = 4
    # Sends in flight to one host across all workers while it is slowed down (a 429) and has no
    # limit of its own set: halved from this; 0: unlimited hosts are not slowed.
    HOST_MAX_IN_FLIGHT = 4
    # A host whose sends fail this many times in a row is down: one probe per backoff step
    # (CIRCUIT_PROBE_SECONDS doubling, capped at RETRY_MAX_SECONDS) until one succeeds.
    CIRCUIT_FAILURES = 5
    CIRCUIT_PROBE_SECONDS = 30
    # Sender threads of one worker, and how long one drain job claims before a fresh one carries on.
    SEND_THREADS = 64
    DRAIN_SECONDS = 30
    FILES_DIR = None  # None: instance/files
    # Personal data of events (the order, the card number) and attempts (bodies, headers, the
    # target's query string) older than this many days is purged by a daily cron job (and by
    # `exporter purge`); deliveries keep status, times and counts. 0 keeps it forever.
    RETENTION_DAYS = 90
    # RQ's log level in `exporter worker` and `exporter cron` (`exporter run` sets WARNING unless --verbose).
    LOG_LEVEL = "INFO"
    # /healthz fails when a due delivery has waited longer than this.
    HEALTH_MAX_DUE_AGE_SECONDS = 300
    # The bearer token /metrics asks for; None: /metrics answers 404.
    METRICS_TOKEN = None
    WTF_CSRF_TIME_LIMIT = None
    # Sessions end after this long without a request (and at logout or a password change).
    SESSION_IDLE_MINUTES = 30
    # Failed logins allowed per account and per address (Flask-Limiter's notation).
    LOGIN_LIMIT_PER_ACCOUNT = "10 per 15 minutes"
    LOGIN_LIMIT_PER_ADDRESS = "30 per 15 minutes"
    # Redis down: throttle in this process's memory meanwhile rather than refuse every login.
    RATELIMIT_SWALLOW_ERRORS = True
    RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True
    # The session cookie is Secure unless this is False, or None and the app runs in debug or
    # is reached over plain HTTP on a loopback address (exporter run's default).
    SESSION_COOKIE_SECURE = None
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_HTTPONLY = True


def from_env(environ=os.environ, prefix="EXPORTER_"):
    """The EXPORTER_* variables as config keys, JSON-decoded where they parse."""
    values = {}
    for name, raw in environ.items():
        if not name.startswith(prefix) or name.startswith(prefix + "TEST_"):
            continue
        key = name[len(prefix):]
        values[key] = raw if key in STRINGS else _decoded(raw)
    return values


def _decoded(raw):
    try:
        return json.loads(raw)
    except ValueError:
        return raw


# What Exporter creates is its own: the database (customers' data, encrypted secrets), its WAL and
# SHM, the writer lock, the secret key, kept files. Another local user may not read or open them.
PRIVATE_UMASK = 0o077
SQLITE_SIDE_FILES = ("", "-wal", "-shm", "-journal", ".writer")


def make_private(instance_path, sqlite_path=None):
    """umask 077 for everything this process creates from now on; the instance folder 0700 and a
    SQLite database with its side files 0600 (an older version made them 0755 and 0644). Paths
    this user does not own are left as they are: chmod is not ours to do there."""
    os.umask(PRIVATE_UMASK)
    _chmod(instance_path, 0o700)
    if sqlite_path:
        for suffix in SQLITE_SIDE_FILES:
            _chmod(sqlite_path + suffix, 0o600)


def _chmod(path, mode):
    try:
        if os.stat(path).st_mode & 0o777 != mode:
            os.chmod(path, mode)
    except OSError:  # not there (yet), or not ours
        pass


def instance_secret_key(instance_path):
    """A secret key kept in the instance folder, made on first start."""
    path = os.path.join(instance_path, "secret_key")
    if not os.path.exists(path):
        # Written whole under a name of its own, then linked into place: processes started together
        # on a new install (`exporter run`'s web, worker and cron) all read the one key that won,
        # never a half-written file, and none fails on the file another just made.
        fd, temporary = tempfile.mkstemp(dir=instance_path, prefix=".secret_key-")  # 0600
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48))
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            os.unlink(temporary)
    with open(path) as f:
        return f.read().strip()
