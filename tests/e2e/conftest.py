"""Screens in a real browser: the app served on loopback, Playwright driving Chromium.

Debian's chromium is used when installed (CI installs it; EXPORTER_CHROMIUM names another);
otherwise a Chromium Playwright downloaded. Without one these tests are skipped with a
summary line (tests/chromium.py, tests/conftest.py).
"""
import threading

import pytest
from werkzeug.serving import make_server

from .. import chromium
from ..conftest import PASSWORD

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def live_server(app):
    """The test app served by a real HTTP server in a thread; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    _, executable = chromium.executable()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(10000)
    yield page
    context.close()


@pytest.fixture
def admin_page(page, live_server, admin):
    """A browser page logged in as the admin, on the dashboard."""
    page.goto(live_server + "/login")
    page.fill("input[name=email]", admin.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(live_server + "/")
    return page
