"""An operator in a real browser: the banner when no worker is alive, a down host on the
dashboard, and Probe now through the real form (CSRF on)."""
from datetime import timedelta

import pytest

from exporter.ops import health
from exporter.delivery import queue
from exporter.extensions import db
from exporter.models import Host, utcnow

pytestmark = pytest.mark.browser


def test_an_operator_sees_no_worker_and_probes_a_down_host(app, admin_page, live_server):
    health.forget_cached_workers()
    db.session.add(Host(name="dialer.example.com", failures=6, down_since=utcnow() - timedelta(minutes=42),
                        probe_at=utcnow() + timedelta(minutes=30), last_error="ReadTimeout: dialer did not answer"))
    db.session.commit()
    app.config["WTF_CSRF_ENABLED"] = True
    page = admin_page
    page.goto(live_server + "/deliveries/")
    assert "No worker is alive" in page.locator("#no-worker-banner").inner_text()
    page.goto(live_server + "/")
    row = page.locator('#hosts-down tr[data-host="dialer.example.com"]')
    assert "42 min" in row.inner_text() and "ReadTimeout: dialer did not answer" in row.inner_text()
    row.locator("text=Probe now").click()
    page.wait_for_url(live_server + "/")
    assert "A probe of dialer.example.com goes out now" in page.locator(".flash.success").inner_text()
    db.session.expire_all()
    assert db.session.get(Host, "dialer.example.com").probe_at <= utcnow()
    assert queue.get_queue(app.config["REDIS_URL"], app.config["QUEUE_NAME"]).count == 1  # a drain is woken
