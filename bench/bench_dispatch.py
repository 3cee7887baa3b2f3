"""How fast events go in and exports go out, against what the bare parts can do.

    .venv/bin/python bench/bench_dispatch.py [N]      (default N = 2000)

Intake: N events posted in batches of 500 through the real intake route (validation, storage,
matching, scheduling), against a baseline that inserts the same N events with one executemany.
Dispatch: N deliveries sent by a real RQ worker to a loopback receiver (claim, render, send,
record the attempt, history), against a baseline of N bare requests.get calls to the same
receiver. Each ratio is the Exporter time over its baseline time in the same run. SQLite and an
embedded Redis: nothing outside this machine is touched.
"""
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import requests  # noqa: E402
from rq import SimpleWorker  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from exporter import create_app, queue  # noqa: E402
from exporter.extensions import db  # noqa: E402
from exporter.models import Delivery, Event  # noqa: E402
from tests.factories import event, make_profile  # noqa: E402
from tests.receiver import Receiver  # noqa: E402


def main(n):
    tmp = tempfile.mkdtemp(prefix="exporter-bench-")
    redis = queue.EmbeddedRedis().start()
    receiver = Receiver().start()
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp}/bench.sqlite", "REDIS_URL": redis.url,
                      "SECRET_KEY": "bench", "ALLOW_PRIVATE_TARGETS": True, "HOST_CONCURRENCY": 0})
    try:
        with app.app_context():
            from flask_migrate import upgrade

            upgrade(directory=app.extensions["migrate"].directory)
            report(*measure(app, n, receiver))
    finally:
        receiver.stop()
        redis.stop()


def measure(app, n, receiver):
    from exporter import tokens

    make_profile(url=receiver.url + "/p")
    token = tokens.create("bench")
    client = app.test_client()
    bodies = [{"events": [event(f"e{i}", customerId=i, orderId=i) for i in range(s, min(s + 500, n))]}
              for s in range(0, n, 500)]
    started = time.perf_counter()
    for body in bodies:
        assert client.post("/intake/events", json=body, headers={"Authorization": f"Bearer {token}"}).status_code == 202
    intake = time.perf_counter() - started

    rows = [{"event_key": f"b{i}", "type": "partial", "occurred_at": Event.occurred_at.type.python_type.now(),
             "order": json.loads(json.dumps(event()["order"])), "is_test": False} for i in range(n)]
    started = time.perf_counter()
    db.session.execute(insert(Event), rows)
    db.session.commit()
    intake_base = time.perf_counter() - started

    q = queue.get_queue(app.config["REDIS_URL"], app.config["QUEUE_NAME"])
    started = time.perf_counter()
    SimpleWorker([q], connection=q.connection).work(burst=True, logging_level="ERROR")
    dispatch = time.perf_counter() - started
    delivered = db.session.query(Delivery).filter_by(status="delivered").count()
    assert delivered == n, f"{delivered} of {n} delivered"

    started = time.perf_counter()
    for i in range(n):
        requests.get(receiver.url + f"/p?first_name=Jane&i={i}", timeout=5)
    dispatch_base = time.perf_counter() - started
    return n, intake, intake_base, dispatch, dispatch_base


def report(n, intake, intake_base, dispatch, dispatch_base):
    print(f"events: {n}")
    print(f"intake:   {n / intake:8.0f} events/s   baseline executemany {n / intake_base:8.0f} rows/s   "
          f"ratio {intake / intake_base:5.1f}x")
    print(f"dispatch: {n / dispatch:8.0f} exports/s  baseline requests.get {n / dispatch_base:8.0f} req/s    "
          f"ratio {dispatch / dispatch_base:5.1f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
