"""The dashboard's workers and down hosts: a banner on every page when no worker is alive,
down hosts with since-when and the last error, and Probe now (login and CSRF required)."""
import re
from datetime import timedelta

import pytest

from exporter.ops import health
from exporter.delivery import queue
from exporter.extensions import db
from exporter.models import Host, utcnow

from ..ops.test_health import live_cron, live_worker


@pytest.fixture(autouse=True)
def fresh_counts():
    health.forget_cached_workers()
    yield
    health.forget_cached_workers()


@pytest.fixture
def dialer(app):
    host = Host(name="dialer.example.com", failures=7, down_since=utcnow() - timedelta(hours=2, minutes=5),
                probe_at=utcnow() + timedelta(minutes=20), probes=3, last_error="HTTP 503 from the dialer")
    db.session.add_all([host, Host(name="partner.example.com", failures=1)])
    db.session.commit()
    return host


@pytest.mark.parametrize("page", ["/", "/deliveries/", "/profiles/", "/customers/"])
def test_every_page_says_when_no_worker_is_alive(logged_in, page):
    html = logged_in.get(page, follow_redirects=True).get_data(as_text=True)
    assert 'id="no-worker-banner"' in html and "No worker is alive" in html


def test_no_banner_while_a_worker_is_alive_and_none_before_login(client, app, logged_in):
    live_worker(app)
    assert 'id="no-worker-banner"' not in logged_in.get("/deliveries/").get_data(as_text=True)
    logged_in.post("/logout")
    health.forget_cached_workers()
    queue.connect(app.config["REDIS_URL"]).flushdb()
    assert 'id="no-worker-banner"' not in client.get("/login").get_data(as_text=True)


def test_the_dashboard_counts_live_workers_and_the_cron_scheduler(app, logged_in):
    html = logged_in.get("/").get_data(as_text=True)
    assert re.search(r'<strong class="workers-alive">0</strong>\s*workers alive', html)
    assert "no cron scheduler is alive" in html
    live_worker(app), live_worker(app), live_cron(app)
    html = logged_in.get("/").get_data(as_text=True)
    assert re.search(r'<strong class="workers-alive">2</strong>\s*workers alive', html)
    assert '<span class="badge ok">alive</span>' in html


def test_down_hosts_are_listed_with_since_when_and_last_error(logged_in, dialer):
    html = logged_in.get("/").get_data(as_text=True)
    section = html[html.index('id="hosts-down"'):]
    assert 'data-host="dialer.example.com"' in section and "partner.example.com" not in section
    assert "(2 h 5 min)" in section and "HTTP 503 from the dialer" in section
    assert dialer.down_since.strftime("%Y-%m-%d %H:%M:%S") in section


def test_no_host_down(logged_in):
    assert "Every host is up." in logged_in.get("/").get_data(as_text=True)


def test_probe_now_makes_the_probe_due_and_wakes_a_drain(app, logged_in, dialer):
    response = logged_in.post("/hosts/probe", data={"host": "dialer.example.com"}, follow_redirects=True)
    assert response.status_code == 200
    assert "A probe of dialer.example.com goes out now" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Host, "dialer.example.com").probe_at <= utcnow()
    jobs = queue.get_queue(app.config["REDIS_URL"], app.config["QUEUE_NAME"]).get_jobs()
    assert [job.func_name for job in jobs] == [queue.DRAIN_JOB]
    assert logged_in.post("/hosts/probe", data={"host": "nobody.example.com"}).status_code == 404


def test_probe_now_needs_a_login_and_a_csrf_token(app, client, logged_in, dialer):
    probe_at = dialer.probe_at
    app.config["WTF_CSRF_ENABLED"] = True
    assert logged_in.post("/hosts/probe", data={"host": "dialer.example.com"}).status_code == 400
    app.config["WTF_CSRF_ENABLED"] = False
    logged_in.post("/logout")
    response = client.post("/hosts/probe", data={"host": "dialer.example.com"})
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    db.session.expire_all()
    assert db.session.get(Host, "dialer.example.com").probe_at == probe_at
