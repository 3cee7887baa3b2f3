"""The README's screenshots, taken by the screen tests so they stay current: every image the README
shows is made here, from a day's real data, at the sizes the README shows. They go to
build/screenshots/readme/; `make screenshots` writes them into docs/screenshots/ instead."""
import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from exporter.extensions import db
from exporter.models import Profile

from .test_accessibility import SCREENSHOTS, a_busy_day  # noqa: F401 - a fixture

pytestmark = pytest.mark.browser

README = Path(__file__).parents[2] / "README.md"
TARGET = Path(os.environ.get("EXPORTER_README_SCREENSHOTS") or SCREENSHOTS / "readme")


def readme_images():
    return set(re.findall(r"\(docs/screenshots/([\w-]+)\.png\)", README.read_text()))


def test_the_readmes_screenshots_are_taken_from_the_screens(admin_page, live_server, a_busy_day):
    page = admin_page
    profile = db.session.scalars(db.select(Profile).where(Profile.name == "Call center partials")).one()
    profile.window_days, profile.window_start, profile.window_end = "mon,tue,wed,thu,fri", 8 * 60, 20 * 60
    profile.window_time_zone, profile.daily_cap = "America/New_York", 500
    db.session.commit()
    page.goto(live_server + a_busy_day["profile"])  # a change, so the audit log has a before and after
    page.fill("#delay_minutes", "5")
    page.click("text=Save General Settings")
    expect(page.locator(".flash.success")).to_have_text("General Settings saved.")
    pages = {**a_busy_day, "alerts": "/alerts/"}
    shots = {  # README image: (page, width, whole page)
        "profile": ("profile", 1280, True), "dashboard": ("dashboard", 1280, False),
        "profiles": ("profiles", 1280, False), "mapping-dialog": ("mapping-dialog", 1280, False),
        "failed-delivery": ("failed-delivery", 1280, False), "customer": ("customer", 1280, False),
        "profile-390": ("profile", 390, False), "deliveries-390": ("deliveries", 390, False),
        "audit": ("audit", 1280, False), "audit-entry": ("audit-entry", 1280, False),
        "profile-history": ("profile-history", 1280, False), "admins": ("admins", 1280, False),
        "alerts": ("alerts", 1280, False)}
    assert readme_images() <= set(shots), "the README shows an image no screen test takes"
    TARGET.mkdir(parents=True, exist_ok=True)
    for name, (key, width, whole) in shots.items():
        page.set_viewport_size({"width": width, "height": 900 if width > 400 else 844})
        path = pages[key] if key != "audit-entry" else "/audit/" + _latest_profile_update(page, live_server)
        page.goto(live_server + path)
        page.screenshot(path=str(TARGET / f"{name}.png"), full_page=whole)
    assert all((TARGET / f"{name}.png").stat().st_size > 10_000 for name in readme_images())


def _latest_profile_update(page, live_server):
    from exporter.models import AuditEntry

    entry = db.session.scalars(db.select(AuditEntry).where(AuditEntry.action == "profile.update")
                               .order_by(AuditEntry.id.desc())).first()
    return str(entry.id)
