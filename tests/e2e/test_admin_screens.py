"""Several admins in a real browser (CSRF on): an admin invites a viewer, the viewer sets a
password with the link, logs out, logs in, and reads pages with no change buttons."""
import pytest

from exporter.extensions import db
from exporter.models import User

from ..factories import make_profile

pytestmark = pytest.mark.browser

NEW_PASSWORD = "viewer's own password"


def test_invite_then_set_password_then_log_in(app, admin_page, live_server, browser):
    app.config["WTF_CSRF_ENABLED"] = True
    profile = make_profile()
    page = admin_page
    page.click("nav.top >> text=Admins")
    page.wait_for_url(live_server + "/admins/")
    page.fill("#email", "viewer@example.com")
    page.select_option("#role", "viewer")
    page.click("text=+ Invite")
    link = page.locator("#set-password-link").inner_text()
    assert link.startswith(live_server + "/account/set-password/")
    assert page.locator('#admins tr:has-text("viewer@example.com") td.status').inner_text() == "invited"

    context = browser.new_context()  # the invited person's own browser
    them = context.new_page()
    them.set_default_timeout(10000)
    try:
        them.goto(link)
        assert them.locator("#link-email").inner_text() == "viewer@example.com"
        them.fill("#new_password", NEW_PASSWORD)
        them.fill("#confirm", "not the same")
        them.click("button[type=submit]")
        assert "The two passwords differ" in them.locator("#field-confirm .error").inner_text()
        them.fill("#new_password", NEW_PASSWORD)
        them.fill("#confirm", NEW_PASSWORD)
        them.click("button[type=submit]")
        them.wait_for_url(live_server + "/")
        assert "Password set." in them.locator(".flash.success").inner_text()

        them.click("text=Log out")
        them.wait_for_url(live_server + "/login")
        them.goto(link)
        assert "already used" in them.locator("main").inner_text()
        them.goto(live_server + "/login")
        them.fill("input[name=email]", "viewer@example.com")
        them.fill("input[name=password]", NEW_PASSWORD)
        them.click("button[type=submit]")
        them.wait_for_url(live_server + "/")

        them.goto(f"{live_server}/profiles/{profile.id}")
        assert them.locator("h1").inner_text() == profile.name
        assert them.locator("text=Save General Settings").count() == 0
        assert them.locator("#mappings >> text=Edit").count() == 0
        assert them.locator("#general-form input[name=name]").is_disabled()
    finally:
        context.close()

    page.goto(live_server + "/admins/")
    assert page.locator('#admins tr:has-text("viewer@example.com") td.status').inner_text() == "active"
    db.session.expire_all()
    assert db.session.scalar(db.select(User).where(User.email == "viewer@example.com")).last_login_at is not None
