"""Login in a real browser: every admin page sends a stranger to the login form."""
import pytest

pytestmark = pytest.mark.browser


def test_stranger_is_sent_to_login_then_lands_on_dashboard(page, live_server, admin):
    page.goto(live_server + "/profiles/")
    assert "/login" in page.url
    page.fill("input[name=email]", admin.email)
    page.fill("input[name=password]", "wrong password")
    page.click("button[type=submit]")
    assert page.locator(".flash.error").inner_text() == "Wrong email or password."
    from ..conftest import PASSWORD

    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(live_server + "/profiles/")
    assert page.locator("h1").inner_text() == "Export Profiles"
