"""The fault suite: real processes (the web app as waitress serves it, two `exporter worker`,
one `exporter cron`), a few thousand events of mixed types, and during the run: workers
SIGKILLed, Redis killed and restarted empty, Redis flushed, database connections terminated
(PostgreSQL), a receiver that flaps (500s, timeouts, down). At the end every expected delivery
arrived, repeats only from sends cut mid-flight, nothing early, every history complete, and the
backlog drained within DRAIN_BOUND seconds of the last fault. It prints its figures.

A second run doubles every process, as on several machines (issue 23): two crons, three workers,
two web servers, a worker and a cron SIGKILLed; everything is sent, filed, told and purged once.

    make faults      (PostgreSQL: EXPORTER_TEST_DATABASE_URL; .ci/run runs it)
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
import requests
from sqlalchemy import text

from exporter.intake import tokens
from exporter.extensions import db
from exporter.models import Attempt, Delivery, HistoryEntry, utcnow
from exporter.delivery.queue import EmbeddedRedis, free_port

from ..factories import event, make_profile
from ..processes import answers, kill_tree, process_env, start, stop, wait_until
from ..receiver import Receiver, Reply

pytestmark = pytest.mark.reliability

EVENTS = 2400
BATCH = 40
POST_SECONDS = 60
DRAIN_BOUND = 120  # seconds from the last fault until every delivery is delivered
TIMEOUT = 1  # the partners' Postback timeout; a "timeout" reply answers later than this
TYPES = ["partial", "new_sale", "refund", "decline"]


class Run:
    """The processes of the run, each restartable as a service manager would."""

    def __init__(self, env, web_port):
        self.env, self.web_port = env, web_port
        self.workers = [self.worker(), self.worker()]
        self.cron = start(["cron"], env)
        self.web = subprocess.Popen([sys.executable, "-m", "waitress", "--port", str(web_port), "--threads", "8",
                                     "--call", "exporter:create_app"], env=env, start_new_session=True,
                                    stderr=subprocess.DEVNULL)

    def worker(self):
        return start(["worker"], self.env, stderr=subprocess.DEVNULL)

    def restart_worker(self, i):
        kill_tree(self.workers[i])
        time.sleep(2)  # Restart=always, RestartSec=2
        self.workers[i] = self.worker()

    def stop(self):
        for process in [*self.workers, self.cron, self.web]:
            stop(process)


def test_every_export_arrives_through_every_fault(app, app_config, tmp_path):
    postgres = db.engine.dialect.name == "postgresql"
    redis = EmbeddedRedis().start()
    fast, flaky = Receiver().start(), Receiver(host="127.0.0.2").start()
    flaky_port = flaky.port
    profiles = [("sales", fast, 0, ["new_sale"]), ("refunds", fast, 0, ["refund", "decline"]),
                ("partials to the dialer", flaky, 0, ["partial"]), ("late sales", flaky, 2, ["new_sale"])]
    for name, receiver, delay, types in profiles:
        make_profile(name=name, url=receiver.url + "/" + name.replace(" ", "_"), delay_minutes=delay,
                     settings={"url": receiver.url + "/" + name.replace(" ", "_"), "method": "GET",
                               "timeout": TIMEOUT},
                     routes=[{"customer_types": types, "campaigns": [], "products": []}])
    token = tokens.create("faults")
    env = process_env({**app_config, "REDIS_URL": redis.url}, EXPORTER_MINUTE_SECONDS=1,
                      EXPORTER_SWEEP_INTERVAL_SECONDS=2, EXPORTER_SWEEP_GRACE_SECONDS=1,
                      EXPORTER_HEARTBEAT_SECONDS=1, EXPORTER_WORKER_STALE_SECONDS=4,
                      EXPORTER_CLAIM_TIMEOUT_SECONDS=60, EXPORTER_RETRY_BASE_SECONDS=0.5,
                      EXPORTER_RETRY_MAX_SECONDS=4, EXPORTER_CIRCUIT_PROBE_SECONDS=1)
    web_port = free_port()
    run = Run(env, web_port)
    faults = []

    def fault(name, action):
        action()
        faults.append((time.monotonic(), name))

    posted = []

    def post_all():
        url, headers = f"http://127.0.0.1:{web_port}/intake/events", {"Authorization": f"Bearer {token}"}
        for start_at in range(0, EVENTS, BATCH):
            body = {"events": [event(f"f{i}", type=TYPES[i % len(TYPES)], customerId=10_000 + i, orderId=90_000 + i,
                                     occurred_at=datetime.now(timezone.utc).isoformat())
                               for i in range(start_at, start_at + BATCH)]}
            while True:  # a CRM retries what the intake did not take (a 503 while the database is away)
                try:
                    if requests.post(url, data=json.dumps(body), headers={**headers, "Content-Type":
                                     "application/json"}, timeout=10).status_code == 202:
                        break
                except requests.RequestException:
                    pass
                time.sleep(0.5)
            posted.append(time.monotonic())
            time.sleep(POST_SECONDS / (EVENTS / BATCH))

    try:
        wait_until(lambda: answers(f"http://127.0.0.1:{web_port}/login"), what="the web app")
        poster = threading.Thread(target=post_all)
        poster.start()
        time.sleep(5)
        fault("worker 1 SIGKILLed", lambda: run.restart_worker(0))
        time.sleep(5)

        def redis_restarted_empty():
            nonlocal redis
            redis.stop()
            time.sleep(5)
            redis = EmbeddedRedis(port=redis.port, password=redis.password).start()

        fault("Redis killed, back empty after 5 s", redis_restarted_empty)
        time.sleep(5)
        fault("Redis flushed", lambda: __import__("redis").Redis.from_url(redis.url).flushall())
        time.sleep(3)
        if postgres:
            fault("database connections terminated", lambda: (db.session.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()")), db.session.commit()))
            time.sleep(3)
        fault("dialer answers 500", lambda: setattr(flaky, "default", Reply(500)))
        time.sleep(4)
        fault("dialer times out", lambda: setattr(flaky, "default", Reply(200, delay=TIMEOUT + 1)))
        time.sleep(4)
        fault("dialer down", flaky.stop)
        time.sleep(5)

        def dialer_back():
            nonlocal flaky
            flaky = Receiver(port=flaky_port, host="127.0.0.2").start()
            flaky.requests[:0] = down_requests

        down_requests = list(flaky.requests)
        fault("dialer back", dialer_back)
        time.sleep(3)
        fault("worker 2 SIGKILLed", lambda: run.restart_worker(1))
        poster.join()
        last_fault = faults[-1][0]
        expected = db.session.scalar(db.select(db.func.count()).select_from(Delivery))

        def all_delivered():
            db.session.expire_all()
            return db.session.scalar(db.select(db.func.count()).where(Delivery.status == "delivered")) == expected

        wait_until(all_delivered, timeout=DRAIN_BOUND + 120, what="every delivery to be delivered")
        drained = time.monotonic() - last_fault
    finally:
        run.stop()
        redis.stop()
        fast.stop()
        flaky.stop()

    deliveries = {str(d.id): d for d in db.session.scalars(db.select(Delivery))}
    arrivals = [r for r in fast.requests + flaky.requests]
    by_key = Counter(r.headers["Idempotency-Key"] for r in arrivals)
    accepted = Counter(r.headers["Idempotency-Key"] for r in arrivals
                       if r.reply and r.reply.status == 200 and r.reply.delay < TIMEOUT)
    attempts = Counter(str(d) for d in db.session.scalars(db.select(Attempt.delivery_id)))
    # A send cut mid-flight reached the partner but left no attempt (its worker died first).
    cut = {key: by_key[key] - attempts[key] for key in by_key if by_key[key] > attempts[key]}
    repeats = {key: n for key, n in accepted.items() if n > 1}
    # Due at the event's time + Export Delay (a minute is a second here); a released claim's due_at
    # moves later, so the first due time is computed, not read.
    due = {key: (d.event.occurred_at + timedelta(seconds=d.profile.delay_minutes)).replace(
        tzinfo=timezone.utc).timestamp() for key, d in deliveries.items()}
    early = [r for r in arrivals if r.received_at < due[r.headers["Idempotency-Key"]]]
    fired = Counter(h.delivery_id for h in db.session.scalars(db.select(HistoryEntry))
                    if h.message.startswith("Export profile"))
    statuses = Counter(d.status for d in deliveries.values())
    print(f"\nfault suite ({db.engine.dialect.name}): {EVENTS} events, {len(deliveries)} deliveries, "
          f"{len(arrivals)} requests received, {sum(accepted.values())} accepted")
    for at, name in faults:
        print(f"  fault at +{at - faults[0][0] + 5:5.1f} s: {name}")
    print(f"  repeats of an accepted export: {len(repeats)} (sends cut mid-flight: {sum(cut.values())})")
    print(f"  drained {drained:.1f} s after the last fault (bound {DRAIN_BOUND} s); statuses {dict(statuses)}")

    sales = sum(1 for i in range(EVENTS) if TYPES[i % len(TYPES)] == "new_sale")
    assert len(deliveries) == EVENTS + sales and statuses == {"delivered": EVENTS + sales}  # sales go to two
    assert set(accepted) == set(deliveries), "an expected export never arrived"
    assert all(n - 1 <= cut.get(key, 0) for key, n in repeats.items()), "a repeat that no cut send explains"
    assert early == []
    assert all(fired[d.id] == 1 for d in deliveries.values()), "a customer's history misses an export"
    assert drained <= DRAIN_BOUND


# --- many machines: every process twice or more (issue 23) -------------------------------------

TOPOLOGY_EVENTS = 600
TOPOLOGY_BATCH = 20
TOPOLOGY_POST_SECONDS = 12
TOPOLOGY_TYPES = ["partial", "new_sale", "refund", "decline", "cancel"]  # decline and cancel: daily files
OLD_EVENTS = 10  # 100 days old, of a type no profile takes: the purge's work
DIALER = "127.0.0.2"


def kill_group(process):
    """SIGKILL a process and everything in its group (a worker's RQ scheduler, forked or forking)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(5)


def test_two_crons_three_workers_two_web_servers_do_everything_once(app, app_config, post_events, tmp_path):
    """Every process doubled, as on several machines (docs/operations.md): two `exporter cron`,
    three `exporter worker`, two web servers taking the CRM's events in turn, one database, one
    Redis; a worker and a cron SIGKILLed mid-run (the worker back 2 s later, the cron never).
    Every export arrives, twice only when its send was cut by the kill; each route's daily file
    of each day is made and uploaded once; the dialer's outage is told once and its end once,
    though both crons run the alerts every second; the daily purge, queued by both crons at
    once, runs once (one audit entry, one message per customer); /healthz counts the one cron
    left."""
    from exporter import jobs
    from exporter.delivery import queue
    from exporter.models import AlertSettings, AuditEntry, Event

    from ..plugins.ftp_servers import FtpServer

    redis = EmbeddedRedis().start()
    fast, dialer, hooks = Receiver().start(), Receiver(host=DIALER).start(), Receiver().start()
    fast.default = Reply(200, delay=0.2)  # sends in flight when the worker is killed
    (tmp_path / "ftp").mkdir()
    uploads = Counter()
    ftp = FtpServer(tmp_path / "ftp", on_received=lambda path: uploads.update(
        [os.path.basename(path).removeprefix(".").removesuffix(".part")])).start()
    for name, receiver, types in [("sales", fast, ["new_sale"]), ("refunds", fast, ["refund"]),
                                  ("partials to the dialer", dialer, ["partial"])]:
        url = receiver.url + "/" + name.replace(" ", "_")
        make_profile(name=name, url=url, settings={"url": url, "method": "GET", "timeout": TIMEOUT},
                     routes=[{"customer_types": types, "campaigns": [], "products": []}])
    daily = make_profile(name="Daily file", export_type="ftp", settings=ftp.settings(send_empty=True),
                         routes=[{"customer_types": [t], "campaigns": [], "products": []} for t in ("decline", "cancel")])
    daily.created_at = utcnow() - timedelta(days=3)  # two or three days' files due at the first tick
    db.session.add(AlertSettings(webhook_url=hooks.url + "/hook", host_down_minutes=0))
    db.session.commit()
    old_events = [event(f"old-{i}", type="rma_received", customerId=500 + i, orderId=50_000 + i,
                        occurred_at=(datetime.now(timezone.utc) - timedelta(days=100)).isoformat())
                  for i in range(OLD_EVENTS)]
    assert post_events({"events": old_events}).status_code == 202
    token = tokens.create("topology")
    env = process_env({**app_config, "REDIS_URL": redis.url}, EXPORTER_MINUTE_SECONDS=1,
                      EXPORTER_SWEEP_INTERVAL_SECONDS=1, EXPORTER_SWEEP_GRACE_SECONDS=1,
                      EXPORTER_HEARTBEAT_SECONDS=1, EXPORTER_WORKER_STALE_SECONDS=4,
                      EXPORTER_CLAIM_TIMEOUT_SECONDS=60, EXPORTER_RETRY_BASE_SECONDS=0.5,
                      EXPORTER_RETRY_MAX_SECONDS=4, EXPORTER_CIRCUIT_PROBE_SECONDS=1)
    web_ports = [free_port(), free_port()]
    webs = [subprocess.Popen([sys.executable, "-m", "waitress", "--port", str(port), "--threads", "4",
                              "--call", "exporter:create_app"], env=env, start_new_session=True,
                             stderr=subprocess.DEVNULL) for port in web_ports]
    crons = [start(["cron"], env, stderr=subprocess.DEVNULL) for _ in range(2)]
    workers = [start(["worker"], env, stderr=subprocess.DEVNULL) for _ in range(3)]
    started = time.monotonic()
    timeline = []

    def at(name, action):
        action()
        timeline.append((time.monotonic() - started, name))

    def post_all():  # the CRM's load balancer: each request to the next web server
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        for n, first in enumerate(range(0, TOPOLOGY_EVENTS, TOPOLOGY_BATCH)):
            body = {"events": [event(f"t{i}", type=TOPOLOGY_TYPES[i % len(TOPOLOGY_TYPES)], customerId=20_000 + i,
                                     orderId=80_000 + i, occurred_at=datetime.now(timezone.utc).isoformat())
                               for i in range(first, first + TOPOLOGY_BATCH)]}
            url = f"http://127.0.0.1:{web_ports[n % 2]}/intake/events"
            while requests.post(url, data=json.dumps(body), headers=headers, timeout=10).status_code != 202:
                time.sleep(0.5)
            time.sleep(TOPOLOGY_POST_SECONDS / (TOPOLOGY_EVENTS / TOPOLOGY_BATCH))

    def sending_worker():
        """The worker holding a claim now (its name ends with its pid): killed, it cuts sends."""
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            holders = set(db.session.scalars(db.select(Delivery.claimed_by).where(Delivery.status == "sending")))
            db.session.rollback()
            for i, process in enumerate(workers):
                if any(name.endswith(f":{process.pid}") for name in holders):
                    return i
            time.sleep(0.02)
        return 0

    def restart_worker():
        i = sending_worker()
        kill_group(workers[i])
        time.sleep(2)  # Restart=always, RestartSec=2
        workers[i] = start(["worker"], env, stderr=subprocess.DEVNULL)

    def purges_queued_by_both_crons():  # what both crons do at 03:30, at the same moment
        jobs_queue = queue.get_queue(redis.url, app.config["QUEUE_NAME"])
        for _ in crons:
            jobs_queue.enqueue(jobs.purge, job_timeout=600)

    try:
        for port in web_ports:
            wait_until(lambda: answers(f"http://127.0.0.1:{port}/login"), what="a web server")
        poster = threading.Thread(target=post_all)
        poster.start()
        time.sleep(2)
        at("dialer answers 500", lambda: setattr(dialer, "default", Reply(500)))
        time.sleep(1)
        at("both crons queue the daily purge", purges_queued_by_both_crons)
        time.sleep(1)
        at("a worker SIGKILLed mid-send, back 2 s later", restart_worker)
        at("cron 1 SIGKILLed, for good", lambda: kill_group(crons[0]))
        time.sleep(2)
        at("dialer back", lambda: setattr(dialer, "default", Reply(200)))
        poster.join()
        at("last event posted", lambda: None)
        per_event = TOPOLOGY_EVENTS * 3 // len(TOPOLOGY_TYPES)

        def finished():
            db.session.expire_all()
            statuses = Counter(db.session.scalars(db.select(Delivery.status)))
            resolved = [r for r in hooks.requests if b"Resolved: Partner host" in r.body]
            return statuses["delivered"] >= per_event and set(statuses) == {"delivered"} and resolved

        wait_until(finished, timeout=90, what="every delivery delivered and the dialer's outage resolved")
        at("every delivery delivered, the outage told resolved", lambda: None)
        health = requests.get(f"http://127.0.0.1:{web_ports[1]}/healthz", timeout=10).json()
    finally:
        for process in [*workers, *crons, *webs]:
            kill_group(process)
        for server in (redis, fast, dialer, hooks, ftp):
            server.stop()

    db.session.expire_all()
    deliveries = {str(d.id): d for d in db.session.scalars(db.select(Delivery))}
    files = {d.id: d for d in deliveries.values() if d.file_date is not None}
    arrivals = fast.requests + dialer.requests
    by_key = Counter(r.headers["Idempotency-Key"] for r in arrivals)
    accepted = Counter(r.headers["Idempotency-Key"] for r in arrivals if r.reply and r.reply.status == 200)
    attempts = Counter(str(d) for d in db.session.scalars(db.select(Attempt.delivery_id)))
    cut = {key: by_key[key] - attempts[key] for key in by_key if by_key[key] > attempts[key]}
    repeats = {key: n for key, n in accepted.items() if n > 1}
    file_names = {d.id: f"daily-file_{d.route_id}_{d.file_date:%Y%m%d}.csv" for d in files.values()}
    told = [json.loads(r.body)["text"].split("\n")[0] for r in hooks.requests]
    purged = db.session.scalar(db.select(db.func.count()).where(Event.event_key.like("old-%"), Event.purged_at.is_not(None)))
    purge_entries = db.session.scalars(db.select(AuditEntry).where(AuditEntry.action == "retention.purge")).all()
    purge_messages = db.session.scalar(db.select(db.func.count()).where(HistoryEntry.message.like("Personal data%")))
    print(f"\ntopology ({db.engine.dialect.name}): 2 crons, 3 workers, 2 web servers; {TOPOLOGY_EVENTS} events, "
          f"{len(deliveries) - len(files)} per-event deliveries, {len(files)} daily files")
    for seconds, name in timeline:
        print(f"  +{seconds:5.1f} s: {name}")
    print(f"  repeats of an accepted export: {len(repeats)} (sends cut mid-flight: {sum(cut.values())}); "
          f"uploads {dict(uploads)}; alerts told {told}; purge entries {len(purge_entries)}, "
          f"customers told {purge_messages}; /healthz scheduler {health['checks']['scheduler']}")

    assert len(deliveries) - len(files) == per_event
    assert {str(k) for k in accepted} >= set(deliveries) - {str(k) for k in files}, "an export never arrived"
    assert all(n - 1 <= cut.get(key, 0) for key, n in repeats.items()), "a repeat that no cut send explains"
    assert len(files) in (4, 6) and all(d.status == "delivered" for d in files.values())  # 2 routes x 2 or 3 days
    assert set(uploads) == set(file_names.values())
    assert all(uploads[file_names[i]] - 1 <= max(uploads[file_names[i]] - attempts[str(i)], 0) for i in files), \
        "a daily file uploaded twice, not by a cut send"
    assert told.count(f"*Partner host {DIALER} is down*") == 1
    assert told.count(f"*Resolved: Partner host {DIALER} is down*") == 1
    assert purged == OLD_EVENTS and len(purge_entries) == 1 and purge_messages == OLD_EVENTS
    assert health["checks"]["scheduler"]["alive"] == 1  # the cron left; the killed one no longer counts
