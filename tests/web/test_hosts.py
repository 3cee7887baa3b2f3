"""The Hosts page: a host's limits set and removed (audited), bad input refused beside its field,
each host's allowance now and why, and the workers limiting on their own while Redis is away."""
import time
from datetime import timedelta

from redis import Redis

from exporter.delivery.limits import SharedLimits
from exporter.extensions import db
from exporter.models import Host, Worker, utcnow


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


def test_a_slowed_host_shows_its_allowance_why_and_until_when_on_the_hosts_page_and_dashboard(app, logged_in):
    logged_in.post("/hosts/limits", data={"host": "dialer.example", "max_in_flight": "4", "rate_limit": "10",
                                          "rate_per": "1"})
    worker = SharedLimits(Redis.from_url(app.config["REDIS_URL"]))
    worker.slow_down("dialer.example", 30, time.time(), "HTTP 429 (Retry-After 30 s) at 12:00:00 UTC")
    page = logged_in.get("/hosts/").get_data(as_text=True)
    assert "<strong>50 %</strong> of its limits now: 5 a second, 2 at once;" in page
    assert "HTTP 429 (Retry-After 30 s) at 12:00:00 UTC; waiting until" in page
    dashboard = " ".join(logged_in.get("/").get_data(as_text=True).split())
    assert "<code>dialer.example</code> is slowed to 50 % of its limits: HTTP 429 (Retry-After 30 s)" in dashboard


def test_a_worker_limiting_on_its_own_is_named_on_the_dashboard_and_hosts_page(app, logged_in):
    now = utcnow()
    db.session.add_all([Worker(name="box-2:4411", seen_at=now, limits_own_since=now - timedelta(minutes=3)),
                        Worker(name="box-1:301", seen_at=now)])
    db.session.commit()
    for path in ("/", "/hosts/"):
        page = logged_in.get(path).get_data(as_text=True)
        assert "Worker <code>box-2:4411</code> limits hosts on its own since" in page, path
        assert "box-1:301" not in page, path
