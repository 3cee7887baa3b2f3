"""Per-endpoint limits: at most HOST_CONCURRENCY requests in flight to one host from a worker,
while other hosts' requests go out beside them, proven with a real `exporter worker` process and
a receiver that answers slowly and counts the requests it holds at once, per Host. (With N
workers a host sees up to N times the limit: docs/operations.md.)"""
import os
import signal
import subprocess
import sys
import time

from exporter.extensions import db
from exporter.models import Delivery

from ..factories import event, make_profile
from ..receiver import Reply

WORKERS = 1
EVENTS = 4


def worker_env(app_config, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTER_")}
    env.update({"EXPORTER_DATABASE_URL": app_config["DATABASE_URL"], "EXPORTER_REDIS_URL": app_config["REDIS_URL"],
                "EXPORTER_SECRET_KEY": app_config["SECRET_KEY"], "EXPORTER_ALLOW_PRIVATE_TARGETS": "true",
                "EXPORTER_RETRY_BASE_SECONDS": "0.5", "EXPORTER_RETRY_MAX_SECONDS": "1"})
    env.update(extra)
    return env


def stop(process):
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


def delivered_count():
    count = db.session.scalar(db.select(db.func.count()).select_from(Delivery).where(Delivery.status == "delivered"))
    db.session.remove()  # end the read: SQLite writers in the workers must not wait on this test
    return count


def test_one_host_gets_at_most_host_concurrency_requests_at_once(app, app_config, post_events, receiver):
    receiver.default = Reply(200, "OK", delay=0.4)
    # Two profiles, two hosts (the same receiver by two names): the limit is per host, not global.
    make_profile(name="By address", url=f"http://127.0.0.1:{receiver.port}/a")
    make_profile(name="By name", url=f"http://localhost:{receiver.port}/b")
    response = post_events({"events": [event(f"evt-{i}", orderId=1000 + i) for i in range(EVENTS)]})
    assert response.get_json()["deliveries"] == 2 * EVENTS
    env = worker_env(app_config, EXPORTER_HOST_CONCURRENCY="1")
    workers = [subprocess.Popen([sys.executable, "-m", "exporter", "worker"], env=env, start_new_session=True)
               for _ in range(WORKERS)]
    try:
        deadline = time.monotonic() + 45
        while delivered_count() < 2 * EVENTS:
            assert time.monotonic() < deadline, f"only {delivered_count()} of {2 * EVENTS} delivered"
            assert all(w.poll() is None for w in workers), "a worker died"
            time.sleep(0.1)
    finally:
        for worker in workers:
            stop(worker)
    assert len(receiver.requests) == 2 * EVENTS
    assert receiver.max_in_flight_by_host == {"127.0.0.1": 1, "localhost": 1}
    # The two hosts were sent to side by side (one request each at once): the limit is per host.
    assert receiver.max_in_flight == 2
