"""A partner's limits hold across all workers: three real `exporter worker` processes against a
loopback receiver that records the most requests in flight and the arrivals in any second, per
host. A limited send waits: it is no failure, and the other hosts' sends go on meanwhile."""
import time

import pytest

from exporter.extensions import db
from exporter.models import Attempt, Delivery, Host

from ..factories import event, make_profile
from ..processes import process_env, start, stop, wait_until
from ..receiver import Receiver, Reply

JITTER = 0.05  # a send's start and its arrival at the receiver differ by a few ms on a busy machine


def most_in_any(times, seconds):
    times = sorted(times)
    return max((sum(1 for t in times[i:] if t < start + seconds) for i, start in enumerate(times)), default=0)


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


def test_host_limits_form_refuses_bad_input_beside_each_field(app, logged_in):
    cases = [({"host": "", "rate_per": "1"}, "Host is required"),
             ({"host": "https://x.example/p", "rate_per": "1"}, "Give a host name only"),
             ({"host": "x.example", "max_in_flight": "0", "rate_per": "1"}, "Give 1 to 1000 sends at once"),
             ({"host": "x.example", "rate_limit": "lots", "rate_per": "1"}, "Rate is a whole number, like 2"),
             ({"host": "x.example", "rate_per": "3600"}, "Not a valid choice")]
    for data, error in cases:
        response = logged_in.post("/hosts/limits", data=data)
        assert response.status_code == 422, data
        assert error in response.get_data(as_text=True), data
    assert db.session.scalar(db.select(db.func.count()).select_from(Host)) == 0  # nothing half-stored


def test_setting_and_removing_a_hosts_limits_is_audited(app, logged_in):
    logged_in.post("/hosts/limits", data={"host": "Dialer.Example", "max_in_flight": "3", "rate_per": "1"})
    host = db.session.get(Host, "dialer.example")
    assert (host.max_in_flight, host.rate_limit) == (3, None)
    logged_in.post("/hosts/limits", data={"host": "dialer.example", "rate_per": "1"})
    db.session.refresh(host)
    assert (host.max_in_flight, host.rate_limit) == (None, None)
    audit = logged_in.get("/audit/").get_data(as_text=True)
    assert "Limits of dialer.example set: 3 at once" in audit and "Limits of dialer.example removed" in audit


def test_a_viewer_sees_host_limits_but_cannot_change_them(app, client):
    from exporter.models import User

    viewer = User(email="viewer@example.com", role="viewer")
    viewer.set_password("a long enough password 1")
    db.session.add(viewer)
    db.session.commit()
    client.post("/login", data={"email": viewer.email, "password": "a long enough password 1"})
    page = client.get("/hosts")
    assert page.status_code == 200 and "Save limits" not in page.get_data(as_text=True)
    assert client.post("/hosts/limits", data={"host": "x.example", "max_in_flight": "2"}).status_code == 403
