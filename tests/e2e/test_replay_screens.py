"""Send past events in a real browser: from the profile page, Count, then Send; a worker sends them."""
import re
from datetime import datetime, timedelta, timezone

import pytest
from playwright.sync_api import expect

from exporter.extensions import db
from exporter.models import Delivery

from ..factories import event, make_profile

pytestmark = pytest.mark.browser
TODAY = datetime.now(timezone.utc).date()


@pytest.fixture
def app_config(app_config):
    """CSRF on, as in production: the Count and Send forms must carry their token."""
    return {**app_config, "WTF_CSRF_ENABLED": True}


def test_admin_counts_then_sends_past_events_once(admin_page, live_server, post_events, receiver, run_jobs):
    three_days_ago = f"{TODAY - timedelta(days=3)}T10:00:00Z"
    post_events({"events": [event(f"old{i}", customerId=i + 1, orderId=i + 1, occurred_at=three_days_ago)
                            for i in range(3)]
                 + [event("test-card", customerId=9, orderId=9, occurred_at=three_days_ago, isTestCard=True)]})
    profile = make_profile(url=receiver.url + "/partials.php", delay_minutes=1)
    page = admin_page

    page.goto(f"{live_server}/profiles/{profile.id}")
    page.click("#profile-actions >> text=Send past events")
    page.wait_for_url(re.compile(rf"/profiles/{profile.id}/replay$"))
    expect(page.locator("#field-customer_types input[value=partial]")).to_be_checked()
    page.fill("input[name=since]", "2026-03-02")
    page.fill("input[name=until]", "2026-03-01")
    page.click("button[value=count]")
    expect(page.locator("#field-until .error")).to_have_text("To date 2026-03-01 is before From date 2026-03-02")
    page.fill("input[name=until]", TODAY.isoformat())

    page.fill("input[name=since]", (TODAY - timedelta(days=5)).isoformat())
    page.click("button[value=count]")
    expect(page.locator("#replay-summary")).to_have_text("3 events match; 3 will be sent.")
    assert db.session.scalar(db.select(db.func.count()).select_from(Delivery)) == 0  # counting sends nothing
    page.click("#replay-send")
    page.wait_for_url(re.compile(rf"/profiles/{profile.id}$"))
    expect(page.locator(".flash.success")).to_contain_text("3 deliveries created.")

    run_jobs(until=lambda: receiver.requests and len(receiver.requests) >= 3, timeout=20)
    assert len(receiver.requests) == 3

    # Again: everything is already exported; there is nothing to send.
    page.click("#profile-actions >> text=Send past events")
    page.fill("input[name=since]", (TODAY - timedelta(days=5)).isoformat())
    page.click("button[value=count]")
    expect(page.locator("#replay-summary")).to_have_text("3 events match; 3 already sent or queued for this profile; 0 will be sent.")
    expect(page.locator("#replay-nothing")).to_have_text("Nothing to send.")
