"""A circuit per host: a partner down for hours gets one probe per backoff step, not a request per
delivery per step; when a probe succeeds its backlog flows again."""
from collections import Counter
from datetime import timedelta

from exporter.delivery import circuit
from exporter.export_types import Outcome
from exporter.extensions import db
from exporter.models import Delivery, Host, utcnow

from ..factories import event, make_profile
from ..receiver import Reply


def events(n):
    return {"events": [event(f"e{i}", customerId=100 + i, orderId=500 + i) for i in range(n)]}


def test_only_failures_of_the_host_itself_count():
    assert circuit.host_failure(Outcome(ok=False, error="connection refused"))
    assert circuit.host_failure(Outcome(ok=False, status=503))
    assert not circuit.host_failure(Outcome(ok=False, status=429))  # "slow down", not "I am down"
    assert not circuit.host_failure(Outcome(ok=False, status=400))  # about this delivery's data
    assert not circuit.host_failure(Outcome(ok=True, status=200))


def test_a_down_host_gets_one_probe_per_step_and_its_backlog_flows_when_one_succeeds(app, post_events, receiver,
                                                                                      run_jobs):
    app.config.update(CIRCUIT_FAILURES=3, CIRCUIT_PROBE_SECONDS=0.5, RETRY_BASE_SECONDS=0.1, RETRY_MAX_SECONDS=0.5,
                      HOST_CONCURRENCY=1)
    receiver.default = Reply(503, body="maintenance")
    make_profile(url=receiver.url + "/p")
    post_events(events(30))
    host = db.session.get

    run_jobs(until=lambda: (h := host(Host, "127.0.0.1")) is not None and h.down_since is not None, timeout=20)
    opened = len(receiver.requests)
    # The failures that opened it, and what the worker had in hand by then (claims of a few per host
    # at a time): half the backlog at most, where no circuit would try all 30 at every step.
    assert opened <= 15
    down = host(Host, "127.0.0.1")
    assert down.last_error == "HTTP 503" and down.failures >= 3

    # Down for a while: probes only, each after the last has failed and a step has passed.
    import time

    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        run_jobs()
        time.sleep(0.1)
    probes = len(receiver.requests) - opened
    assert 1 <= probes <= 6, f"{probes} requests while down: not one per step"
    assert Counter(db.session.scalars(db.select(Delivery.status)))["delivered"] == 0

    receiver.default = Reply(200)  # the partner is back
    run_jobs(until=lambda: Counter(db.session.scalars(db.select(Delivery.status))) == {"delivered": 30}, timeout=30)
    db.session.expire_all()
    up = host(Host, "127.0.0.1")
    assert up.down_since is None and up.failures == 0
    assert receiver.max_in_flight_by_host["127.0.0.1"] <= 1  # the backlog flows within the per-host limit


def test_probe_now_makes_the_next_probe_due_at_once(app):
    db.session.add(Host(name="dialer.example.com", failures=9, down_since=utcnow(), probe_at=utcnow().replace(
        year=2100), last_error="timed out"))
    db.session.commit()
    assert circuit.probe_now("dialer.example.com")
    assert circuit.blocked_hosts() == (set(), {"dialer.example.com"})
    assert not circuit.probe_now("up.example.com")


def test_a_burst_of_429s_slows_the_sends_but_never_shuts_the_partner_off(app, post_events, receiver, run_jobs):
    """Issue 23: a partner that answered 429 with Retry-After to its first requests opened the
    circuit, and the next probe was minutes away. A 429 is retried after its Retry-After; were it
    an outage, these deliveries would wait for a probe ten minutes away."""
    app.config.update(CIRCUIT_FAILURES=3, CIRCUIT_PROBE_SECONDS=600, RETRY_MAX_SECONDS=600, HOST_CONCURRENCY=2)
    receiver.script = [Reply(429, headers={"Retry-After": "1"}) for _ in range(10)]
    make_profile(url=receiver.url + "/p")
    post_events(events(10))
    run_jobs(until=lambda: Counter(db.session.scalars(db.select(Delivery.status))) == {"delivered": 10}, timeout=30)
    assert len(receiver.requests) == 20  # each 429 tried once more, after its Retry-After
    host = db.session.get(Host, "127.0.0.1")
    assert host is None or host.down_since is None


def test_only_a_probes_own_failure_pushes_the_next_probe_back(app):
    """A send already in flight when the circuit opened fails later: it is the host's last error,
    but no failed probe, so the next probe stays where it was; a probe's failure moves it."""
    now = utcnow()
    db.session.add(Host(name="api.partner.example", failures=5, probes=0, last_error="HTTP 503",
                        down_since=now, probe_at=now + timedelta(seconds=30)))
    db.session.commit()
    in_flight = {"api.partner.example": (0, 1, "timed out", now - timedelta(seconds=2))}
    circuit.record(in_flight, threshold=5, base=30, cap=3600, now=now + timedelta(seconds=1))
    db.session.commit()
    host = db.session.get(Host, "api.partner.example", populate_existing=True)
    assert host.probes == 0 and host.probe_at == (now + timedelta(seconds=30)).replace(tzinfo=host.probe_at.tzinfo)
    assert host.last_error == "timed out"

    probe = {"api.partner.example": (0, 1, "HTTP 503", now + timedelta(seconds=30))}
    circuit.record(probe, threshold=5, base=30, cap=3600, now=now + timedelta(seconds=31))
    db.session.commit()
    host = db.session.get(Host, "api.partner.example", populate_existing=True)
    assert host.probes == 1 and host.probe_at.replace(tzinfo=None) == (now + timedelta(seconds=91)).replace(tzinfo=None)
