"""The limits every worker shares through Redis (exporter/delivery/limits.py): leases that expire,
a rate that holds in any second, a slow-down every worker sees, and each worker on its own when
Redis does not answer. Two SharedLimits on one Redis stand for two workers."""
import threading
import time

import pytest
from redis import Redis

from exporter.delivery import limits
from exporter.delivery.limits import HostLimit, SharedLimits

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
    assert most_in_any(granted, 1.0) <= 5
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
    assert all(a.acquire(HOST).ok for _ in range(10))  # no limits: no leases kept
    a.slow_down(HOST, None, time.time(), "HTTP 429")
    granted = [b.acquire(HOST).ok for _ in range(3)]
    assert granted == [True, True, False]  # half of HOST_MAX_IN_FLIGHT, across workers


def test_without_redis_each_worker_limits_on_its_own_and_says_so(connection):
    gone = SharedLimits(Redis(port=1, socket_connect_timeout=0.2))
    gone.configure({HOST: HostLimit(in_flight=1)})
    assert gone.fallback_since is None
    first = gone.acquire(HOST)
    assert first.ok and gone.fallback_since is not None
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
