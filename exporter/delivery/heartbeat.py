"""This worker's name and its heartbeat in the workers table: the sweeper and /healthz know a
worker is alive by it, and release the claims of one that stopped beating."""
import logging
import os
import socket
import threading

from ..extensions import writing
from . import workers

log = logging.getLogger(__name__)

_worker_name = [None, ""]  # (pid, name): asked for at every claim and record


def worker_name():
    pid = os.getpid()
    if _worker_name[0] != pid:  # a forked process is another worker
        _worker_name[:] = [pid, f"{socket.gethostname()}:{pid}"]
    return _worker_name[1]


class Heartbeat(threading.Thread):
    """This worker's heartbeat in the database, every few seconds while its engine lives."""

    def __init__(self, app, name, every, own_limits_since=lambda: None):
        super().__init__(name="exporter-heartbeat", daemon=True)
        self.app, self.worker, self.every = app, name, every
        self.own_limits_since = own_limits_since  # epoch seconds this worker limits hosts alone (Redis away)
        self.done = threading.Event()
        self._beat()
        self.start()

    def _beat(self):
        try:
            with self.app.app_context(), writing():
                workers.beat(self.worker, self.own_limits_since())
        except Exception:  # the database is away for a moment: the next beat tries again
            log.exception("could not write the heartbeat")

    def run(self):
        while not self.done.wait(self.every):
            self._beat()

    def stop(self):
        self.done.set()
        self.join(self.every + 1)
        try:
            with self.app.app_context():
                workers.farewell(self.worker)
        except Exception:
            log.exception("could not say farewell; the heartbeat goes stale instead")


