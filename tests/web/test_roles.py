"""Roles (issue 12, point 6): a viewer reads every page and changes nothing. The URL map is
walked, so a new state-changing route that forgets the check fails here; pages show a viewer
no change buttons, no secret and no card number."""
import re

import pytest
from flask import g
from sqlalchemy import text as sql
from werkzeug.exceptions import HTTPException

from exporter import create_app
from exporter.extensions import db
from exporter.models import Customer, Delivery, IntakeToken, Profile, User

from ..conftest import PASSWORD
from ..factories import event, make_profile
from ..test_security_cards import CARD, assert_nowhere, every_page, with_card_everywhere

STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
# A viewer's own session and password: the only changes a viewer makes.
VIEWERS_OWN = {"auth.login", "auth.logout", "auth.change_password", "auth.set_password"}
# A form a viewer might post if buttons were shown: valid enough that an admin's post would act.
FORM = {"name": "Viewer was here", "email": "new@example.com", "role": "admin", "crm_id": "777", "date": "2026-11-01",
        "export_name": "x", "field": "firstName", "customer_types": "partial", "host": "example.com"}
HEADER_SECRET = "X-Api-Key: sekrit-header-value-4477"


def fresh(client, method, url, **kwargs):
    """A request as its own (Flask-Login keeps the last user it loaded on the shared g)."""
    g.pop("_login_user", None)
    g.pop("csrf_token", None)
    return client.open(url, method=method, **kwargs)


@pytest.fixture
def viewer(app):
    user = User(email="viewer@example.com", role="viewer")
    user.set_password(PASSWORD)
    db.session.add(user)
    db.session.commit()
    return user


@pytest.fixture
def viewing(app, viewer):
    client = app.test_client()
    assert fresh(client, "POST", "/login", data={"email": viewer.email, "password": PASSWORD}).status_code == 302
    return client


@pytest.fixture
def rows(app, admin, post_events):
    """Real rows for every id a path names."""
    profile = make_profile(settings={"url": "https://postingmydata.com/p", "method": "GET", "headers": HEADER_SECRET})
    assert post_events(event()).status_code == 202
    return {"profile_id": profile.id, "mapping_id": profile.mappings[0].id, "route_id": profile.routes[0].id,
            "delivery_id": db.session.scalar(db.select(Delivery.id)),
            "customer_id": db.session.scalar(db.select(Customer.id)),
            "token_id": db.session.scalar(db.select(IntakeToken.id)), "user_id": admin.id}


def state_changing_urls(app, ids):
    """(method, url, endpoint) of every rule that accepts a state-changing method, its
    arguments filled with real ids (any int for an id no row has)."""
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods & STATE_CHANGING):
            url = re.sub(r"<any\(\s*'?(\w+)'?[^)]*\):\w+>", r"\1", rule.rule)
            url = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(ids.get(m.group(1), 1)), url)
            yield method, url, rule.endpoint


def database_text():
    db.session.expire_all()
    return "\n".join(repr(tuple(row)) for table in db.metadata.sorted_tables
                     for row in db.session.execute(sql(f"SELECT * FROM {table.name} ORDER BY 1")))


def test_a_viewer_is_refused_every_state_changing_route_and_nothing_changes(app, rows, viewing):
    before = database_text()
    walked = set()
    for method, url, endpoint in state_changing_urls(app, rows):
        if endpoint in VIEWERS_OWN:
            continue
        response = fresh(viewing, method, url, data=FORM)
        assert response.status_code == 403, (method, url, response.status_code)
        assert "You are a viewer: you can read every page but change nothing." in response.get_data(as_text=True)
        walked.add(endpoint)
    assert len(walked) > 20 and {"admins.index", "profiles.delete", "intake.events"} <= walked
    assert database_text() == before
    answer = fresh(viewing, "POST", f"/profiles/{rows['profile_id']}/delete", headers={"Accept": "application/json"})
    assert answer.status_code == 403 and "change nothing" in answer.get_json()["error"]
    assert fresh(viewing, "GET", "/").status_code == 200  # still logged in


def test_a_route_added_without_any_check_is_refused_to_a_viewer_too(app_config, viewer):
    """The check is central: a new route that names no role is covered all the same."""
    app = create_app(app_config)
    changed = []
    app.add_url_rule("/brand-new-change", "brand_new_change", lambda: changed.append(1) or "changed",
                     methods=["POST"])
    with app.app_context():
        client = app.test_client()
        client.post("/login", data={"email": viewer.email, "password": PASSWORD})
        assert fresh(client, "POST", "/brand-new-change").status_code == 403 and changed == []


def test_a_viewer_changes_their_own_password_and_logs_out(app, viewing, viewer):
    response = fresh(viewing, "POST", "/account/password", data={
        "current_password": PASSWORD, "new_password": "the viewer's new one", "confirm": "the viewer's new one"})
    assert response.status_code == 302
    assert fresh(viewing, "POST", "/logout").status_code == 302
    assert fresh(viewing, "GET", "/").status_code == 302
    assert fresh(app.test_client(), "POST", "/login", data={
        "email": viewer.email, "password": "the viewer's new one"}).status_code == 302


def test_an_admin_demoted_to_viewer_is_refused_at_once(app, logged_in, admin, viewer):
    viewer.role = "admin"
    db.session.commit()
    fresh(logged_in, "POST", f"/admins/{admin.id}/role", data={"role": "viewer"})
    assert fresh(logged_in, "POST", "/tokens/", data={"name": "sneaky"}).status_code == 403
    assert db.session.query(IntakeToken).count() == 0


# --- what a viewer sees ---------------------------------------------------------------------

CHANGE_WORDS = re.compile(r"Edit|Delete.*|Save.*|Revoke|\+.*|Upload|Retry (?:now|all.*)|Cancel|Re-run.*|Send test|"
                          r"Test connection|Probe now|Invite|Disable|Enable|Reset password|Change role|"
                          r"Forget this customer|Send past events")


def change_buttons(html):
    """The buttons and links of a page that would change something."""
    texts = (re.sub(r"<[^>]+>", "", t).strip() for t in re.findall(r"<(?:button|a)\b[^>]*>(.*?)</(?:button|a)>", html, re.S))
    return [t for t in texts if CHANGE_WORDS.fullmatch(t)]


def links_to_forms(app, html):
    """The button-styled links of a page to a page that changes something when posted to (its
    URL takes a POST too: the Forget confirm step, Send past events' form)."""
    adapter = app.url_map.bind("localhost")
    found = []
    for tag in re.findall(r"<a\b[^>]*>", html):
        classes, href = re.search(r'class="([^"]*)"', tag), re.search(r'href="([^"]*)"', tag)
        if not (classes and href and "button" in classes.group(1).split()):
            continue
        try:
            adapter.match(href.group(1).split("?")[0], method="POST")
        except HTTPException:
            continue
        found.append(href.group(1))
    return found


def main_pages(rows):
    p = rows["profile_id"]
    return ["/", "/profiles/", f"/profiles/?profile={p}", f"/profiles/{p}", f"/profiles/{p}/routes/{rows['route_id']}",
            f"/profiles/{p}/routes/new", "/campaigns", "/deliveries/", f"/deliveries/?profile={p}",
            f"/deliveries/{rows['delivery_id']}", "/customers/", f"/customers/{rows['customer_id']}", "/tokens/",
            "/admins/", "/export-types/", "/fields/"]


def test_a_viewer_sees_no_change_buttons_on_the_main_pages(app, rows, logged_in, viewing):
    admin_saw, admin_links = set(), set()
    for url in main_pages(rows):
        admin_page = fresh(logged_in, "GET", url).get_data(as_text=True)
        admin_saw.update(change_buttons(admin_page))
        admin_links.update(links_to_forms(app, admin_page))
        response = fresh(viewing, "GET", url)
        assert response.status_code == 200, url
        page = response.get_data(as_text=True)
        assert change_buttons(page) == [], url
        assert links_to_forms(app, page) == [], url
        forms = re.findall(r'<form method="post" action="([^"]*)"', page)
        assert forms == ["/logout"], (url, forms)  # the one form a viewer has: Log out
    assert {"Edit", "Delete", "Save General Settings", "Revoke", "+ Invite", "Cancel", "Forget this customer",
            "Send past events"} <= admin_saw
    assert {f"/customers/{rows['customer_id']}/forget", f"/profiles/{rows['profile_id']}/replay"} <= admin_links


def test_a_viewer_reads_every_page_and_sees_no_card_number_or_secret(app, admin, viewer, post_events, receiver,
                                                                     run_jobs):
    make_profile(name="Call center", pci_documented=True,
                 settings={"url": receiver.url + "/p", "method": "GET", "headers": HEADER_SECRET},
                 mappings=[{"export_name": "cc", "field": "cardNumber"}, {"export_name": "fn", "field": "firstName"}])
    assert post_events(with_card_everywhere(event())).status_code == 202
    run_jobs(until=lambda: all(d.status == "delivered" for d in db.session.scalars(db.select(Delivery))))
    assert CARD in receiver.requests[0].path  # the partner got it (PCI documentation on file)
    client = app.test_client()
    assert fresh(client, "POST", "/login", data={"email": viewer.email, "password": PASSWORD}).status_code == 302
    g.pop("_login_user", None)
    pages = every_page(client)
    pages["/admins/"] = fresh(client, "GET", "/admins/").get_data(as_text=True)
    assert "/profiles/export.json" in pages  # the profiles JSON: secrets in it are the mask
    for url, page in pages.items():
        assert_nowhere(page, url)
        assert "sekrit-header-value-4477" not in page, url
    profile = db.session.scalar(db.select(Profile).where(Profile.name == "Call center"))
    assert "sekrit" not in repr(profile.settings)  # stored encrypted
