"""Workers that heal: a dead worker's claims are released when its heartbeat stops, not after the
claim timeout; a worker and cron outlive Redis going away and coming back empty."""
import signal
import time
from datetime import timedelta

from exporter.delivery import workers
from exporter.extensions import db
from exporter.models import Delivery, SendCount, Worker, utcnow

from ..factories import event, make_profile
from ..processes import kill_tree, process_env, start, stop, wait_until
from ..receiver import Reply


def test_only_claims_of_silent_workers_or_past_the_timeout_are_released(app, post_events):
    make_profile(url="http://127.0.0.1:9/p")
    post_events({"events": [event(f"e{i}", customerId=i + 1, orderId=i + 1) for i in range(3)]})
    now = utcnow()
    db.session.add_all([Worker(name="alive:1", seen_at=now), Worker(name="dead:2", seen_at=now - timedelta(minutes=1))])
    rows = db.session.scalars(db.select(Delivery).order_by(Delivery.id)).all()
    for delivery, (by, at) in zip(rows, [("alive:1", now), ("dead:2", now), ("cli:3", now - timedelta(hours=1))]):
        delivery.status, delivery.claimed_by, delivery.claimed_at = "sending", by, at
    db.session.commit()
    released = workers.release_stale_claims(claim_timeout=300, stale_seconds=20)
    assert sorted(released) == [rows[1].id, rows[2].id]  # the silent worker's, and the one past the timeout
    assert workers.alive(20) == ["alive:1"]


def test_two_sweeps_at_once_release_each_dead_claim_once(app, post_events):
    """Two `exporter cron` sweep at the same moment (issue 23): every claim of a dead worker is
    released by one of them, and its daily-cap grant given back once; no deadlock on PostgreSQL."""
    import threading

    from exporter import windows
    from exporter.models import Profile

    make_profile(url="http://127.0.0.1:9/p", daily_cap=10_000)
    post_events({"events": [event(f"e{i}", customerId=i + 1, orderId=i + 1) for i in range(300)]})
    now = utcnow()
    db.session.add(Worker(name="dead:2", seen_at=now - timedelta(minutes=1)))
    rows = db.session.scalars(db.select(Delivery).order_by(Delivery.id.desc())).all()
    for delivery in rows:
        delivery.status, delivery.claimed_by, delivery.claimed_at = "sending", "dead:2", now
    profile = db.session.scalar(db.select(Profile))
    db.session.add(SendCount(profile_id=profile.id, day=windows.cap_day(profile, now), sent=500))
    db.session.commit()
    released, errors, start_line = [], [], threading.Barrier(2)

    def sweep():
        try:
            with app.app_context():
                start_line.wait()
                released.append(workers.release_stale_claims(claim_timeout=300, stale_seconds=20))
        except Exception as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert sorted(released[0] + released[1]) == sorted(d.id for d in rows)  # each once
    assert db.session.scalars(db.select(SendCount.sent)).all() == [200]  # 300 grants back, not 600


def test_a_killed_workers_claims_go_out_again_long_before_the_claim_timeout(app, app_config, post_events, receiver):
    receiver.script = [Reply(200, delay=30)]  # the first send hangs while the worker is killed
    make_profile(url=receiver.url + "/p")
    env = process_env(app_config, EXPORTER_CLAIM_TIMEOUT_SECONDS=300, EXPORTER_HEARTBEAT_SECONDS=0.5,
                      EXPORTER_WORKER_STALE_SECONDS=2, EXPORTER_SWEEP_INTERVAL_SECONDS=1,
                      EXPORTER_SWEEP_GRACE_SECONDS=0)
    first = start(["worker"], env)
    try:
        post_events(event())
        receiver.wait_for(1, timeout=20)
        kill_tree(first)
    finally:
        stop(first, signal.SIGKILL)
    killed = time.monotonic()
    second, cron = start(["worker"], env), start(["cron"], env)
    try:
        receiver.wait_for(2, timeout=30)
    finally:
        stop(cron)
        stop(second)
    assert time.monotonic() - killed < 30  # not the 300 s claim timeout
    assert receiver.requests[1].headers["Idempotency-Key"] == receiver.requests[0].headers["Idempotency-Key"]


def test_a_worker_and_cron_outlive_redis_restarted_empty(app, app_config, post_events, receiver, tmp_path):
    from exporter.delivery.queue import EmbeddedRedis

    redis = EmbeddedRedis().start()
    make_profile(url=receiver.url + "/p")
    app.config["REDIS_URL"] = redis.url
    env = process_env({**app_config, "REDIS_URL": redis.url}, EXPORTER_SWEEP_INTERVAL_SECONDS=1,
                      EXPORTER_SWEEP_GRACE_SECONDS=0)
    worker, cron = start(["worker"], env), start(["cron"], env)
    try:
        post_events(event("before"))
        receiver.wait_for(1, timeout=20)
        redis.stop()  # Redis dies with the worker idle-waiting and cron ticking
        time.sleep(3)
        redis = EmbeddedRedis(port=redis.port, password=redis.password).start()  # back, empty
        post_events(event("after", customerId=2, orderId=2))
        receiver.wait_for(2, timeout=60)
        assert worker.poll() is None and cron.poll() is None
    finally:
        stop(cron)
        stop(worker)
        redis.stop()
    wait_until(lambda: db.session.scalar(db.select(db.func.count()).where(Delivery.status == "delivered")) == 2
               or db.session.expire_all(), what="both delivered")


def test_a_killed_workers_claim_gives_its_grant_back_to_the_daily_cap(app, app_config, post_events, receiver):
    """Cap 1: the send that hung in the killed worker goes out again, counted once, and the
    other event waits for the next day; without the refund the resend found the cap used up."""
    receiver.script = [Reply(200, delay=30)]
    make_profile(url=receiver.url + "/p", daily_cap=1)
    env = process_env(app_config, EXPORTER_CLAIM_TIMEOUT_SECONDS=300, EXPORTER_HEARTBEAT_SECONDS=0.5,
                      EXPORTER_WORKER_STALE_SECONDS=2, EXPORTER_SWEEP_INTERVAL_SECONDS=1,
                      EXPORTER_SWEEP_GRACE_SECONDS=0)
    first = start(["worker"], env)
    try:
        post_events({"events": [event("e1", customerId=1, orderId=1), event("e2", customerId=2, orderId=2)]})
        receiver.wait_for(1, timeout=20)
        kill_tree(first)
    finally:
        stop(first, signal.SIGKILL)
    second, cron = start(["worker"], env), start(["cron"], env)
    try:
        receiver.wait_for(2, timeout=30)
        wait_until(lambda: _statuses() == ["delivered", "scheduled"], timeout=15, what="the resend to be recorded")
    finally:
        stop(cron)
        stop(second)
    assert receiver.requests[1].headers["Idempotency-Key"] == receiver.requests[0].headers["Idempotency-Key"]
    assert db.session.scalars(db.select(SendCount.sent)).all() == [1]


def _statuses():
    db.session.expire_all()
    return sorted(db.session.scalars(db.select(Delivery.status)))


def test_a_heartbeat_says_since_when_the_worker_limits_hosts_on_its_own(app):
    lost_redis_at = time.time() - 90
    workers.beat("box:1", lost_redis_at)
    row = db.session.get(Worker, "box:1")
    assert abs((utcnow() - row.limits_own_since).total_seconds() - 90) < 5
    workers.beat("box:1", None)  # Redis answers again: the limits are shared again
    db.session.refresh(row)
    assert row.limits_own_since is None
