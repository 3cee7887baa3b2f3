"""Every page for every admin: axe-core (from the npm registry, `make test` installs it into
tests/e2e/node) finds no serious or critical violation, and at a phone's 390 px nothing
scrolls sideways. The same walk saves a screenshot of each main page under build/screenshots
(the best are kept in docs/screenshots/)."""
import os
from pathlib import Path

import pytest

from exporter.extensions import db
from exporter.models import AuditEntry, Customer, Delivery, Host

from .. import chromium
from ..factories import event, make_profile
from ..receiver import Reply

pytestmark = pytest.mark.browser

AXE = Path(__file__).parent / "node" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = Path(os.environ.get("EXPORTER_SCREENSHOTS") or Path(__file__).parents[2] / "build" / "screenshots")


@pytest.fixture
def page(browser):
    """axe-core goes in as a script tag, which the app's Content-Security-Policy (no inline script)
    rightly blocks: these pages bypass the policy for the audit only. The policy itself is tested
    in tests/web/test_security_web.py."""
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(10000)
    yield page
    context.close()


@pytest.fixture
def axe_source():
    if not AXE.exists():
        message = "axe-core is not installed: npm install --prefix tests/e2e/node axe-core@4 (make test does)"
        if chromium.required():
            pytest.fail(message)
        pytest.skip(message)
    return AXE.read_text()


@pytest.fixture
def a_busy_day(app, post_events, receiver, run_jobs):
    """What an admin sees after a day: the model's profile delivered, a broken one retrying,
    a customer with history, a daily-file profile, a campaign."""
    app.config["RETRY_BASE_SECONDS"] = 60
    app.config["RETRY_MAX_SECONDS"] = 60
    receiver.script = [Reply(200, "OK")]
    good = make_profile(url=receiver.url + "/partials.php")
    make_profile(name="Broken partner", url=receiver.url.rsplit(":", 1)[0] + ":9/down")
    make_profile(name="Daily sales file", export_type="ftp",
                 mappings=[{"export_name": "email", "field": "emailAddress"}],
                 settings={"protocol": "sftp", "host": "files.example.com", "username": "partner"})
    post_events(event())
    run_jobs(until=lambda: db.session.scalar(db.select(db.func.count()).select_from(Delivery).where(
        Delivery.status.in_(("delivered", "retrying")))) == 2)
    delivered = db.session.scalars(db.select(Delivery).where(Delivery.status == "delivered")).one()
    retrying = db.session.scalars(db.select(Delivery).where(Delivery.status == "retrying")).one()
    customer = db.session.scalars(db.select(Customer)).one()
    route = good.routes[0]
    entry = db.session.scalars(db.select(AuditEntry).order_by(AuditEntry.id.desc())).first()
    db.session.add(Host(name="dialer.example.com", failures=0, probes=0, last_error="", max_in_flight=3,
                        rate_limit=10, rate_per=1))
    db.session.commit()
    return {
        "dashboard": "/", "profiles": "/profiles/", "profile": f"/profiles/{good.id}",
        "mapping-dialog": f"/profiles/{good.id}?mapping=new", "route": f"/profiles/{good.id}/routes/{route.id}",
        "campaigns": "/campaigns", "fields": "/fields/", "deliveries": "/deliveries/",
        "delivery": f"/deliveries/{delivered.id}", "failed-delivery": f"/deliveries/{retrying.id}",
        "customers": "/customers/", "customer": f"/customers/{customer.id}",
        "customer-forget": f"/customers/{customer.id}/forget", "tokens": "/tokens/",
        "export-types": "/export-types/", "replay": f"/profiles/{good.id}/replay",
        "audit": "/audit/", "audit-entry": f"/audit/{entry.id}", "profile-history": f"/audit/profiles/{good.id}",
        "admins": "/admins/", "alerts": "/alerts/", "hosts": "/hosts/",
    }


def serious_violations(page, axe_source):
    page.add_script_tag(content=axe_source)
    found = page.evaluate("""async () => {
        const result = await axe.run(document, {resultTypes: ["violations"]});
        return result.violations.filter(v => ["serious", "critical"].includes(v.impact))
            .map(v => ({id: v.id, impact: v.impact, help: v.help,
                        nodes: v.nodes.slice(0, 3).map(n => n.target.join(" "))}));
    }""")
    return found


def sideways_scroll(page):
    return page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")


def test_every_page_passes_axe_and_fits_a_phone(admin_page, live_server, a_busy_day, axe_source):
    page = admin_page
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    problems = {}
    for name, path in a_busy_day.items():
        page.set_viewport_size({"width": 1280, "height": 900})
        page.goto(live_server + path)
        violations = serious_violations(page, axe_source)
        if violations:
            problems[name] = violations
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(live_server + path)
        if sideways_scroll(page) > 0:
            problems[f"{name} at 390 px"] = f"scrolls sideways by {sideways_scroll(page)} px"
        page.screenshot(path=str(SCREENSHOTS / f"{name}-390.png"), full_page=True)
    import json
    assert not problems, json.dumps(problems, indent=1)


def test_the_login_page_passes_axe_and_fits_a_phone(page, live_server, axe_source):
    page.goto(live_server + "/login")
    assert serious_violations(page, axe_source) == []
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(live_server + "/login")
    assert sideways_scroll(page) <= 0
