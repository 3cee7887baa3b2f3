"""The limits every worker shares through Redis (exporter/delivery/limits.py): leases that expire,
a rate that holds in any second, a slow-down every worker sees, and each worker on its own when
Redis does not answer; two SharedLimits on one Redis stand for two workers. Then three real
`exporter worker` processes against a loopback receiver that records the most requests in flight
and the arrivals in any second, per host: a limited send waits, it is no failure, and the other
hosts' sends go on meanwhile."""
import threading
import time

import pytest
from redis import Redis

from exporter.delivery import limits
from exporter.delivery import engine as engine_module
from exporter.delivery.engine import Engine, Job
from exporter.delivery.limits import HostLimit, SharedLimits
from exporter.extensions import db
from exporter.models import Attempt, Delivery, Host

from ..factories import event, make_profile
from ..processes import process_env, start, stop, wait_until
from ..receiver import Receiver, Reply

HOST = "dialer.example"


@pytest.fixture
def connection(redis_url):
    redis = Redis.from_url(redis_url)
    redis.flushdb()
    yield redis
    redis.flushdb()


def workers(connection, n=2, **settings):
    made = [SharedLimits(connection, default_in_flight=4) for _ in range(n)]
    for worker in made:
        worker.configure({HOST: HostLimit(**settings)})
    return made


# The limiter spaces a rate's grants exactly (5 a second: one every 200 ms), so a window of a
# whole second holds 5 with no room to spare; the times the tests take (when acquire returned,
# when a request arrived) lag the limiter's own by a few ms on a busy machine. The windows are
# shorter by that much: a rate that let a 6th through would still show.
JITTER = 0.05


def most_in_any(times, seconds):
    """The most of `times` that fall in any window of `seconds` (from one to the next)."""
    times = sorted(times)
    return max((sum(1 for t in times[i:] if t < start + seconds) for i, start in enumerate(times)), default=0)


def test_sends_at_once_hold_across_workers_and_a_freed_lease_lets_the_next_go(connection):
    a, b = workers(connection, in_flight=3)
    grants = [a.acquire(HOST), b.acquire(HOST), a.acquire(HOST)]
    assert all(g.ok for g in grants)
    refused = b.acquire(HOST)
    assert (refused.ok, refused.why) == (False, "in flight")
    a.release(HOST, grants[0].lease)
    assert b.acquire(HOST).ok


def test_a_lease_passed_on_keeps_the_count_in_one_script_and_a_slowed_host_refuses_it_and_wakes_a_waiter(
        connection, redis_url):
    client = CountingRedis.from_url(redis_url)
    a, b = SharedLimits(client), SharedLimits(client)
    for worker in (a, b):
        worker.configure({HOST: HostLimit(in_flight=2)})
    first, second = a.acquire(HOST), b.acquire(HOST)
    before = CountingRedis.scripts
    passed = a.swap(HOST, first.lease)  # a's send ended and its next one to the host goes
    assert passed.ok and passed.lease not in (None, first.lease)
    assert CountingRedis.scripts == before + 1  # release and acquire in one round trip
    assert connection.zcard(limits.KEY + HOST + ":leases") == 2  # the old lease is gone, the new one counts
    assert (b.acquire(HOST).ok, a.acquire(HOST).ok) == (False, False)  # still two at once, no more
    a.release(HOST, first.lease)  # an old lease given back twice frees nothing
    assert not b.acquire(HOST).ok

    b.slow_down(HOST, None, time.time(), "HTTP 429")  # two at once halved to one, for every worker
    refused = a.swap(HOST, passed.lease)
    assert (refused.ok, refused.why) == (False, "in flight")  # b's send still holds the one lease
    assert connection.zcard(limits.KEY + HOST + ":leases") == 1  # a's is given back all the same
    started = time.monotonic()
    b.wait_for_lease(HOST, 0.5)
    assert time.monotonic() - started < 0.25  # and it woke a waiter, as a release does


def test_installs_sharing_a_redis_keep_their_limits_apart(connection):
    ours, theirs = (SharedLimits(connection, prefix=limits.key_prefix(name)) for name in ("exporter", "staging"))
    for install in (ours, theirs):
        install.configure({HOST: HostLimit(in_flight=1)})
    assert ours.acquire(HOST).ok and theirs.acquire(HOST).ok  # one each: not one between them
    assert not ours.acquire(HOST).ok and not theirs.acquire(HOST).ok
    theirs.slow_down(HOST, 60, time.time(), "HTTP 429")
    assert [s.reason for s in limits.host_states(connection, prefix=limits.key_prefix("staging"))] == ["HTTP 429"]
    assert [s.reason for s in limits.host_states(connection)] == []  # the default install was not slowed
    assert connection.exists(limits.KEY + HOST + ":leases")  # the default install's keys are those of before


def test_a_dead_workers_leases_expire(connection):
    dead = SharedLimits(connection, lease_seconds=0.3)
    dead.configure({HOST: HostLimit(in_flight=1)})
    assert dead.acquire(HOST).ok  # and never released: its worker was killed
    alive = workers(connection, n=1, in_flight=1)[0]
    assert not alive.acquire(HOST).ok
    time.sleep(0.4)
    assert alive.acquire(HOST).ok


def test_a_rate_holds_in_any_second_across_workers(connection):
    a, b = workers(connection, rate=5, per=1)
    granted, deadline = [], time.monotonic() + 2.2
    while time.monotonic() < deadline:
        for worker in (a, b):
            grant = worker.acquire(HOST)
            if grant.ok:
                granted.append(time.monotonic())
            else:
                assert grant.why == "rate" and 0 < grant.wait <= 0.2
        time.sleep(0.005)
    assert most_in_any(granted, 1.0 - JITTER) <= 5
    assert len(granted) >= 10  # the rate is reached, not only respected


def test_a_rate_per_minute_spaces_sends_evenly(connection):
    a, b = workers(connection, rate=120, per=60)  # two a second, never a burst of 120
    assert a.acquire(HOST).ok
    refused = b.acquire(HOST)
    assert not refused.ok and 0.4 <= refused.wait <= 0.5


def test_a_429_halves_the_hosts_allowance_for_every_worker_and_blocks_until_retry_after(connection):
    a, b = workers(connection, in_flight=4, rate=10, per=1)
    started = time.time()
    a.slow_down(HOST, 0.5, started, "HTTP 429")
    refused = b.acquire(HOST)  # the other worker honours the Retry-After
    assert (refused.ok, refused.why) == (False, "retry-after") and 0.3 < refused.wait <= 0.5
    [state] = limits.host_states(connection)
    assert state.host == HOST and state.factor == 0.5 and state.reason == "HTTP 429" and state.blocked_until
    time.sleep(0.55)
    leases = [b.acquire(HOST)]
    assert leases[0].ok
    time.sleep(0.21)  # 5 a second now: one each 0.2 s
    leases.append(a.acquire(HOST))
    assert leases[1].ok
    refused = a.acquire(HOST)
    assert (refused.ok, refused.why) == (False, "in flight")  # 2 of 4 at once now


def test_a_burst_of_429s_to_sends_already_in_flight_halves_once(connection):
    a, b = workers(connection, in_flight=8)
    started = time.time()  # eight sends started together, all answered 429
    time.sleep(0.01)
    for worker in (a, b, a, b):
        worker.slow_down(HOST, None, started, "HTTP 429")
    [state] = limits.host_states(connection)
    assert state.factor == 0.5
    a.slow_down(HOST, None, time.time(), "HTTP 429")  # one sent at the halved allowance: halves again
    [state] = limits.host_states(connection)
    assert state.factor == 0.25


def test_the_allowance_comes_back_step_by_step(connection, monkeypatch):
    monkeypatch.setattr(limits, "RECOVER_SECONDS", 0.2)
    a, = workers(connection, n=1, in_flight=10)
    a.slow_down(HOST, None, time.time(), "HTTP 429")
    assert limits.host_states(connection)[0].factor == 0.5
    time.sleep(0.45)
    a.acquire(HOST)  # an acquire applies the steps since (two of 0.1)
    assert limits.host_states(connection)[0].factor == pytest.approx(0.7)
    time.sleep(1.1)
    assert limits.host_states(connection)[0].factor == 1.0


def test_an_unlimited_host_that_answers_429_is_limited_until_it_recovers(connection):
    a, b = SharedLimits(connection, default_in_flight=4), SharedLimits(connection, default_in_flight=4)
    grants = [a.acquire(HOST) for _ in range(10)]
    assert all(g.ok and g.lease is None for g in grants)  # no limits: no leases kept, none to give back
    a.slow_down(HOST, None, time.time(), "HTTP 429")
    grants = [b.acquire(HOST) for _ in range(3)]
    assert [g.ok for g in grants] == [True, True, False]  # half of HOST_MAX_IN_FLIGHT, across workers
    b.release(HOST, grants[0].lease)  # a slowed host's leases are kept, and given back
    assert b.acquire(HOST).ok


class CountingRedis(Redis):
    """A Redis client that counts the scripts it runs (the limits' Lua scripts run by EVALSHA)."""
    scripts = 0

    def evalsha(self, *args, **kwargs):
        CountingRedis.scripts += 1
        return super().evalsha(*args, **kwargs)


def test_a_send_to_a_host_without_limits_asks_redis_nothing_until_a_worker_slows_it(connection, redis_url):
    client = CountingRedis.from_url(redis_url)
    a, b = SharedLimits(client, default_in_flight=4), SharedLimits(client, default_in_flight=4)
    b.acquire(HOST)  # b has read which hosts are slowed: none
    before = CountingRedis.scripts
    assert all(a.acquire(HOST).ok and b.acquire(HOST).ok for _ in range(20))
    assert CountingRedis.scripts == before  # forty sends, no script run for them
    a.slow_down(HOST, None, time.time(), "HTTP 429")
    assert [a.acquire(HOST).ok for _ in range(3)] == [True, True, False]  # the worker that got the 429: at once
    time.sleep(limits.SLOWED_READ_SECONDS + 0.1)
    assert b.acquire(HOST).ok is False  # every other worker within SLOWED_READ_SECONDS
    assert CountingRedis.scripts > before


def test_two_workers_engines_pass_their_leases_on_and_never_exceed_the_limit(connection, redis_url):
    """Each send to a busy limited host hands its lease to the worker's next job for the host:
    about one script a send, where asking and giving back took two (and a failed ask more)."""
    client = CountingRedis.from_url(redis_url)
    lock, now, most, recorded = threading.Lock(), [0], [0], []

    def job(i):
        def send():
            with lock:
                now[0] += 1
                most[0] = max(most[0], now[0])
            time.sleep(0.02)
            with lock:
                now[0] -= 1
            return i
        return Job(i, HOST, send)

    made = []
    for _ in range(2):
        shared = SharedLimits(client)
        shared.configure({HOST: HostLimit(in_flight=2)})
        made.append(Engine(recorded.extend, host_concurrency=2, threads=8, limits=shared))
    before = CountingRedis.scripts
    try:
        for i in range(40):
            made[i % 2].submit(job(i))
        wait_until(lambda: len(recorded) == 40, timeout=20)
    finally:
        for worker in made:
            worker.stop(timeout=10)
    assert sorted(recorded) == list(range(40)) and most[0] == 2  # each once, never more than two at once
    assert CountingRedis.scripts - before < 60  # 40 sends: 40 passed on leases, and a few asks and gives back
    assert connection.zcard(limits.KEY + HOST + ":leases") == 0  # every lease given back at the end


def test_a_lease_passed_on_goes_back_after_a_few_sends_so_another_workers_waiter_gets_its_turn(
        connection, monkeypatch):
    monkeypatch.setattr(engine_module, "MAX_PASSES", 3)
    order, recorded, sending = [], [], threading.Event()

    def job(name, i):
        def send():
            order.append(name)
            sending.set()
            time.sleep(0.02)
            return i
        return Job(i, HOST, send)

    a, b = workers(connection, in_flight=1)
    first, second = (Engine(recorded.extend, host_concurrency=1, threads=4, limits=shared) for shared in (a, b))
    try:
        for i in range(10):
            first.submit(job("a", i))
        assert sending.wait(5)  # a holds the one lease, and passes it on to its next job
        for i in range(10, 20):
            second.submit(job("b", i))
        wait_until(lambda: len(recorded) == 20, timeout=20)
    finally:
        first.stop(timeout=10), second.stop(timeout=10)
    assert order.index("b") <= 4  # a's first send and three passes, then b's turn: not after all ten of a's
    assert first.waiting() == second.waiting() == 0  # no job was given back to the database


def test_without_redis_each_worker_limits_on_its_own_and_says_so(connection):
    gone = SharedLimits(limits.connect("redis://127.0.0.1:1/0", timeout=0.2))
    gone.configure({HOST: HostLimit(in_flight=1)})
    assert gone.fallback_since is None
    started = time.monotonic()
    first = gone.acquire(HOST)
    assert first.ok and gone.fallback_since is not None
    assert time.monotonic() - started < 1  # no client retries waited out: the send goes at once
    assert not gone.acquire(HOST).ok  # still limited, by this worker alone
    gone.release(HOST, first.lease)
    assert gone.acquire(HOST).ok


def test_a_worker_waiting_for_a_lease_wakes_as_soon_as_another_frees_one(connection):
    a, b = workers(connection, in_flight=1)
    lease = a.acquire(HOST).lease
    threading.Timer(0.2, a.release, (HOST, lease)).start()
    started = time.monotonic()
    b.wait_for_lease(HOST, 0.5)
    assert 0.15 < time.monotonic() - started < 0.45  # woken by the release, not by its timeout
    assert b.acquire(HOST).ok


# --- three real workers and a receiver ------------------------------------------------------------



def set_limits(name="127.0.0.1", **limits):
    db.session.add(Host(name=name, failures=0, probes=0, last_error="", **limits))
    db.session.commit()


def events(n, prefix="e"):
    return {"events": [event(f"{prefix}{i}", customerId=i + 1, orderId=i + 1) for i in range(n)]}


@pytest.fixture
def three_workers(app_config):
    env = process_env(app_config, EXPORTER_HOST_CONCURRENCY=4, EXPORTER_HEARTBEAT_SECONDS=1)
    processes = [start(["worker"], env) for _ in range(3)]
    yield processes
    for process in processes:
        stop(process)


def delivered(n):
    def check():
        db.session.expire_all()
        return db.session.scalar(db.select(db.func.count()).select_from(Delivery).where(
            Delivery.status == "delivered")) == n
    return check


def test_three_workers_never_put_more_than_the_hosts_limit_in_flight(app, three_workers, post_events, receiver):
    receiver.default = Reply(200, delay=0.15)
    make_profile(url=receiver.url + "/p")
    set_limits(max_in_flight=2)
    assert post_events(events(30)).status_code == 202
    wait_until(delivered(30), timeout=60, what="30 delivered")
    assert receiver.max_in_flight_by_host["127.0.0.1"] == 2  # reached, never passed (per worker, 4 each)
    assert len(receiver.requests) == 30
    assert db.session.scalar(db.select(db.func.max(Delivery.attempt_count))) == 1  # no wait cost a try


def test_three_workers_keep_to_the_hosts_rate_in_any_second(app, three_workers, post_events, receiver):
    make_profile(url=receiver.url + "/p")
    set_limits(rate_limit=4, rate_per=1)
    assert post_events(events(14)).status_code == 202
    wait_until(delivered(14), timeout=60, what="14 delivered")
    arrivals = [r.received_at for r in receiver.requests]
    assert most_in_any(arrivals, 1.0 - JITTER) <= 4
    assert max(arrivals) - min(arrivals) >= 13 / 4 - 0.2  # spread by the rate
    # Waiting for the rate is no failure: one attempt each, all delivered.
    assert db.session.scalar(db.select(db.func.count()).select_from(Attempt).where(Attempt.ok.is_(False))) == 0


def test_after_a_429_no_more_than_the_limit_arrives_before_its_retry_after(app, three_workers, post_events, receiver):
    receiver.default = Reply(200, delay=0.05)
    receiver.script = [Reply(429, "slow down", {"Retry-After": "2"})]
    make_profile(url=receiver.url + "/p")
    set_limits(max_in_flight=2)
    assert post_events(events(30)).status_code == 202
    wait_until(delivered(30), timeout=90, what="30 delivered")
    first_429 = receiver.requests[0].received_at
    meanwhile = [r for r in receiver.requests[1:] if first_429 < r.received_at < first_429 + 2]
    assert len(meanwhile) <= 2  # the limit: sends already in flight when the 429 came
    assert len(receiver.requests) == 31  # every event, the one answered 429 twice
    host = db.session.get(Host, "127.0.0.1")
    assert host.down_since is None and host.failures == 0  # a 429 is no outage


def test_a_limited_host_waits_without_failing_while_other_hosts_go_on(app, logged_in, post_events, receiver,
                                                                      run_jobs):
    other = Receiver(host="127.0.0.2").start()
    try:
        make_profile(name="slow partner", url=other.url + "/s")
        make_profile(name="fast partner", url=receiver.url + "/f")
        response = logged_in.post("/hosts/limits", data={"host": "127.0.0.2", "rate_limit": "1", "rate_per": "60"})
        assert response.status_code == 302
        post_events(events(5))
        run_jobs(until=lambda: len(receiver.requests) == 5 and len(other.requests) == 1, timeout=20)
        held = db.session.scalars(db.select(Delivery).where(Delivery.target == "127.0.0.2",
                                                            Delivery.status != "delivered")).all()
        assert len(held) == 4
        assert {(d.status, d.attempt_count) for d in held} == {("scheduled", 0)}  # not retrying, no try used
        assert {d.waiting_reason for d in held} == {"Waiting: 127.0.0.2's rate limit"}
        assert min(d.due_at for d in held) > db.session.scalar(db.select(db.func.max(Delivery.delivered_at)))
        page = logged_in.get("/hosts").get_data(as_text=True)
        assert "127.0.0.2" in page and "1 a minute" in page
        shown = logged_in.get(f"/deliveries/{held[0].id}").get_data(as_text=True)
        assert "Waiting: 127.0.0.2&#39;s rate limit" in shown
    finally:
        other.stop()
