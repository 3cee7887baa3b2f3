"""The issue's "Done when" for the audit log, in a real browser: an admin changes a profile on
its page, then answers "who changed this profile, and what did it send to whom" from the screens
alone: the Audit page, its filters, the entry's before and after, the profile's history, and
from there the profile's deliveries."""
import pytest
from playwright.sync_api import expect

from ..factories import make_profile

pytestmark = pytest.mark.browser


@pytest.fixture
def app_config(app_config):
    """CSRF on, as in production."""
    return {**app_config, "WTF_CSRF_ENABLED": True}


def test_who_changed_this_profile_and_what_it_sends(admin_page, live_server):
    page = admin_page
    profile = make_profile()
    make_profile(name="Another profile")
    page.goto(f"{live_server}/profiles/{profile.id}")
    page.fill("#delay_minutes", "15")
    page.click("text=Save General Settings")
    expect(page.locator(".flash.success")).to_have_text("General Settings saved.")
    expect(page.locator("#profile-history li").first).to_contain_text("General Settings saved")

    page.click("nav.top >> text=Audit")
    page.select_option("#action", "profile.update")
    page.click("#filters button[type=submit]")
    rows = page.locator("table.audit-entries tr[data-id]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("admin@example.com")
    expect(rows.first).to_contain_text("web form")
    expect(rows.first).to_contain_text("Call center partials")

    rows.first.locator("text=Before / after").click()
    changed = page.locator("#before-after tr.changed")
    expect(changed).to_have_count(1)
    expect(changed.locator("th")).to_contain_text("Export Delay (minutes)")
    expect(changed.locator("td pre")).to_have_text(["0", "15"])

    page.click("text=History of this profile")
    expect(page.locator("h1")).to_have_text("History of this profile: Call center partials")
    expect(page.locator("table.audit-entries tr[data-id]")).to_have_count(2)  # the import, then the form
    page.click("text=Deliveries of this profile")
    expect(page.locator("#profile")).to_have_value(str(profile.id))


def test_a_bad_date_on_the_audit_page_is_shown_beside_its_field(admin_page, live_server):
    page = admin_page
    response = page.goto(f"{live_server}/audit/?since=2026-11-27&until=2026-11-01")
    assert response.status == 400
    expect(page.locator("#field-until .error")).to_have_text("To is before From")
