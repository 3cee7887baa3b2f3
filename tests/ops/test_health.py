"""The health checks on a real Redis and database: live workers and cron schedulers as RQ
registers them, and the oldest due delivery's age (deliveries to a down host left out)."""
import contextlib
import os
import signal
import time
from datetime import timedelta

import pytest
from rq import SimpleWorker
from rq.cron import CronScheduler
from rq.cron_scheduler_registry import get_registry_key

from exporter.ops import health
from exporter.delivery import queue
from exporter.extensions import db
from exporter.models import Delivery, Host, utcnow

from ..factories import make_profile
from ..processes import process_env, start, wait_until


@pytest.fixture
def connection(app):
    return queue.connect(app.config["REDIS_URL"])


def live_worker(app, name=None):
    """A real RQ worker's registration on the app's queue and its heartbeat in the workers table,
    as `exporter worker` makes them."""
    from exporter.delivery import workers

    worker = SimpleWorker([queue.get_queue(app.config["REDIS_URL"], app.config["QUEUE_NAME"])],
                          connection=queue.connect(app.config["REDIS_URL"]), name=name)
    worker.register_birth()
    workers.beat(worker.name)
    return worker


def live_cron(app):
    cron = CronScheduler(connection=queue.connect(app.config["REDIS_URL"]))
    cron.register_birth()
    return cron


def test_workers_count_while_registered_and_not_after(app, connection):
    assert health.live_workers(connection, app.config["QUEUE_NAME"]) == 0
    one, two = live_worker(app), live_worker(app)
    assert health.live_workers(connection, app.config["QUEUE_NAME"]) == 2
    assert health.live_workers(connection, "another-queue") == 0
    one.register_death()  # a worker that stops on a signal
    assert health.live_workers(connection, app.config["QUEUE_NAME"]) == 1
    connection.delete(two.key)  # a SIGKILLed worker, once its heartbeat key expired
    assert health.live_workers(connection, app.config["QUEUE_NAME"]) == 0
    assert not health.check_workers(connection, app.config["QUEUE_NAME"]).ok


def test_a_worker_whose_heartbeat_is_stale_is_dead_though_rq_still_lists_it(app, client, connection):
    """Issue 23: every worker SIGKILLed, /healthz answered 200 for minutes, while RQ kept their
    registrations; the heartbeat table knew within WORKER_STALE_SECONDS."""
    from exporter.models import Worker

    worker, cron = live_worker(app), live_cron(app)
    assert client.get("/healthz").status_code == 200
    db.session.get(Worker, worker.name).seen_at = utcnow() - timedelta(seconds=app.config["WORKER_STALE_SECONDS"] + 1)
    db.session.commit()  # it stopped beating: killed, its RQ key still alive
    assert health.live_workers(connection, app.config["QUEUE_NAME"]) == 0
    answer = client.get("/healthz")
    assert answer.status_code == 503 and answer.json["checks"]["workers"]["alive"] == 0
    assert "no worker is alive" in answer.json["checks"]["workers"]["error"]


def test_a_cron_scheduler_counts_while_its_heartbeat_is_recent(app, connection):
    assert health.live_cron_schedulers(connection) == 0
    cron = live_cron(app)
    assert health.live_cron_schedulers(connection) == 1
    connection.zadd(get_registry_key(), {cron.name: time.time() - 300})  # killed 5 minutes ago
    assert health.live_cron_schedulers(connection) == 0
    check = health.check_scheduler(connection)
    assert not check.ok and "exporter cron" in check.details["error"]


def test_a_cron_beats_every_sweep_interval_and_is_stale_after_two_missed_beats():
    assert health.cron_stale_seconds(1) == 7  # the fault suite's and the tests' 1 s sweep
    assert health.cron_stale_seconds(10) == 25
    assert health.cron_stale_seconds(60) == 120  # the default: RQ's own threshold
    assert health.cron_stale_seconds(600) == 120  # it beats at least once a minute whatever the sweep


def test_healthz_reports_a_sigkilled_worker_and_cron_within_their_bounds(app, app_config, client):
    """Issue 23: real `exporter worker` and `exporter cron` processes, SIGKILLed together. /healthz
    fails `workers` within WORKER_STALE_SECONDS (RQ still lists the worker for minutes) and
    `scheduler` within cron_stale_seconds(SWEEP_INTERVAL_SECONDS) of the kill."""
    settings = dict(HEARTBEAT_SECONDS=0.5, WORKER_STALE_SECONDS=3, SWEEP_INTERVAL_SECONDS=1)
    app.config.update(settings)
    env = process_env(app_config, **{f"EXPORTER_{k}": v for k, v in settings.items()})
    worker, cron = start(["worker"], env), start(["cron"], env)
    try:
        wait_until(lambda: client.get("/healthz").json["checks"]["workers"].get("alive") == 1
                   and client.get("/healthz").json["checks"]["scheduler"].get("alive") == 1,
                   timeout=30, what="a live worker and cron")
        for process in (worker, cron):  # the whole group: a scheduler the worker forked a moment ago too
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
        killed, failed = time.monotonic(), {}
        while len(failed) < 2 and time.monotonic() - killed < 30:
            answer = client.get("/healthz")
            for part in ("workers", "scheduler"):
                if part in answer.json["failing"]:
                    failed.setdefault(part, time.monotonic() - killed)
            time.sleep(0.1)
    finally:
        for process in (worker, cron):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    assert client.get("/healthz").status_code == 503
    assert failed["workers"] <= settings["WORKER_STALE_SECONDS"] + 1  # + a second for a slow machine
    assert failed["scheduler"] <= health.cron_stale_seconds(settings["SWEEP_INTERVAL_SECONDS"]) + 1
    print(f"\n/healthz: workers failing {failed['workers']:.1f} s after the kill "
          f"(bound {settings['WORKER_STALE_SECONDS']} s), scheduler {failed['scheduler']:.1f} s "
          f"(bound {health.cron_stale_seconds(settings['SWEEP_INTERVAL_SECONDS']):.0f} s)")


def due_delivery(profile, minutes_ago, status="scheduled", target="partner.example.com"):
    delivery = Delivery(profile=profile, status=status, target=target,
                        due_at=utcnow() - timedelta(minutes=minutes_ago))
    db.session.add(delivery)
    db.session.commit()
    return delivery


def test_the_oldest_due_age_counts_waiting_due_deliveries_only(app):
    profile = make_profile()
    assert health.due_backlog() == (0, None)
    due_delivery(profile, -5)  # not yet due
    due_delivery(profile, 30, status="delivered")
    due_delivery(profile, 40, status="cancelled")
    due_delivery(profile, 50, status="sending")  # claimed: the sweeper's business, not a backlog
    due_delivery(profile, 2, status="retrying")
    due_delivery(profile, 10)
    count, age = health.due_backlog()
    assert count == 2 and 595 < age < 610
    check = health.check_oldest_due(300)
    assert not check.ok and check.details["due"] == 2 and "waited 6" in check.details["error"]
    assert health.check_oldest_due(900).ok


def test_deliveries_to_a_down_host_wait_for_its_probe_not_for_a_worker(app):
    profile = make_profile()
    due_delivery(profile, 60, target="dialer.example.com")
    due_delivery(profile, 1, target="partner.example.com")
    db.session.add_all([Host(name="dialer.example.com", failures=5, down_since=utcnow() - timedelta(hours=1),
                             last_error="HTTP 503"),
                        Host(name="partner.example.com", failures=1)])  # a failure or two: still up
    db.session.commit()
    count, age = health.due_backlog()
    assert count == 1 and 55 < age < 70
    assert [h.name for h in health.down_hosts()] == ["dialer.example.com"]


def test_probe_now_makes_the_probe_due_and_wakes_a_drain(app, connection):
    later = utcnow() + timedelta(minutes=20)
    db.session.add(Host(name="dialer.example.com", failures=5, down_since=utcnow(), probe_at=later))
    db.session.commit()
    assert health.probe_now("dialer.example.com")
    db.session.expire_all()
    assert db.session.get(Host, "dialer.example.com").probe_at <= utcnow()
    jobs = queue.get_queue(app.config["REDIS_URL"], app.config["QUEUE_NAME"]).get_jobs()
    assert [job.func_name for job in jobs] == [queue.DRAIN_JOB]
    assert not health.probe_now("nobody.example.com")
    db.session.add(Host(name="up.example.com", failures=1))
    db.session.commit()
    assert not health.probe_now("up.example.com")  # only a down host has a probe to hurry


def test_the_banner_count_is_cached_a_few_seconds(app, connection, monkeypatch):
    health.forget_cached_workers()
    assert health.workers_alive_cached() == 0
    live_worker(app)
    assert health.workers_alive_cached() == 0  # cached
    monkeypatch.setattr(health, "WORKERS_CACHE_SECONDS", 0)
    health.forget_cached_workers()
    assert health.workers_alive_cached() == 1
