"""Customers screens: search by name, email, phone or CRM id; a customer's events and history,
each history message linking to the delivery it speaks of."""
import re
from html import unescape

import pytest

from exporter.extensions import db
from exporter.models import Customer, Delivery

from ..factories import event, make_profile

JOHN = dict(customerId=7, firstName="John", lastName="Smith", emailAddress="john.smith@example.org",
            phoneNumber="5559870000", orderId=900)


def found(response):
    assert response.status_code == 200
    return re.findall(r'<a href="/customers/\d+">([^<]+)</a>', response.get_data(as_text=True))


@pytest.fixture
def customers(app, post_events):
    """Jane Doe (the model's event) and John Smith, stored by the intake."""
    assert post_events({"events": [event("evt-jane"), event("evt-john", **JOHN)]}).status_code == 202


def test_customer_pages_need_a_login(client, app):
    for url in ("/customers/", "/customers/?q=jane", "/customers/1"):
        response = client.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"]


@pytest.mark.parametrize("q, names", [
    ("", ["John Smith", "Jane Doe"]),            # no search: newest first
    ("jane", ["Jane Doe"]),                      # first name, any case
    ("SMITH", ["John Smith"]),                   # last name
    ("jane doe", ["Jane Doe"]),                  # "first last"
    ("john.smith@example", ["John Smith"]),      # email
    ("5552013344", ["Jane Doe"]),                # phone
    ("(555) 987-0000", ["John Smith"]),          # phone as people type it
    ("55821", ["Jane Doe"]),                     # CRM customer id
    ("558", []),                                 # an id matches whole, not as a fragment of 55821
    ("900", ["John Smith"]),                     # an order id of the customer's
    ("104233", ["Jane Doe"]),                    # the model's order id
    ("example", ["John Smith", "Jane Doe"]),
    ("%", []),                                   # a wildcard is a character, not "everyone"
    ("nobody", []),
])
def test_search_finds_customers_by_name_email_phone_or_crm_id(logged_in, customers, q, names):
    assert found(logged_in.get("/customers/", query_string={"q": q})) == names


def test_search_without_a_match_says_so(logged_in, customers):
    html = unescape(logged_in.get("/customers/?q=nobody").get_data(as_text=True))
    assert "No customer matches “nobody”." in html


def test_search_rows_show_email_phone_and_crm_id(logged_in, customers):
    html = logged_in.get("/customers/?q=jane").get_data(as_text=True)
    assert "<td>jane@example.com</td><td>5552013344</td>" in html
    assert "<td>55821</td>" in html


def test_too_long_a_search_gets_an_error_beside_the_field(logged_in, customers):
    response = logged_in.get("/customers/", query_string={"q": "x" * 201})
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert '<div class="field has-error" id="field-q">' in html
    assert '<span class="error">Search for at most 200 characters</span>' in html
    assert not re.search(r'href="/customers/\d+"', html)


def test_bad_page_gets_an_error(logged_in, customers):
    response = logged_in.get("/customers/?page=two")
    assert response.status_code == 400
    assert "Page: Not a valid integer value" in response.get_data(as_text=True)


@pytest.mark.parametrize("page", ["99999999999999999999", "1000001"])
def test_a_page_past_a_million_gets_an_error(logged_in, customers, page):
    response = logged_in.get(f"/customers/?page={page}")
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "Page is at most 1000000</span>" in html
    assert not re.search(r'href="/customers/\d+"', html)


def test_the_last_allowed_page_is_empty_not_an_error(logged_in, customers):
    assert found(logged_in.get("/customers/?page=1000000")) == []


def test_customer_page_lists_events_and_history_linking_to_deliveries(logged_in, post_events, receiver, run_jobs):
    make_profile(url=receiver.url + "/partials.php")
    post_events(event("evt-test", orderId=104230, isTestCard=True, occurred_at="2026-11-27T13:00:00Z"))
    post_events(event("evt-1001"))
    run_jobs(until=lambda: db.session.scalars(db.select(Delivery)).one().status == "delivered")
    delivery = db.session.scalars(db.select(Delivery)).one()
    customer = db.session.scalars(db.select(Customer)).one()
    html = unescape(logged_in.get(f"/customers/{customer.id}").get_data(as_text=True))
    assert "<h1>Jane Doe</h1>" in html
    assert "jane@example.com" in html and "5552013344" in html and "55821" in html

    events = re.search(r'<table id="events">(.*?)</table>', html, re.S).group(1)
    rows = [row for row in re.findall(r"<tr>(.*?)</tr>", events, re.S) if "<td>" in row]
    assert len(rows) == 2
    newest, oldest = rows
    assert "2026-11-27 14:03:22" in newest and "Partial" in newest and "<code>evt-1001</code>" in newest
    assert "104233" in newest and "259 Test Lander" in newest and "test card" not in newest
    assert "<code>evt-test</code>" in oldest and "104230" in oldest and "test card" in oldest

    history = re.search(r'<table id="history">(.*?)</table>', html, re.S).group(1)
    messages = re.findall(r"<tr>\s*<td>.*?</td>\s*<td>(.*?)</td>", history, re.S)
    fired = "Export profile 'Call center partials' fired: postback delivered (HTTP 200)"
    assert messages == [f'<a href="/deliveries/{delivery.id}">{fired}</a>',
                        "Test-card order: skipped, never exported"]  # newest first; the skip links nowhere

    linked = logged_in.get(f"/deliveries/{delivery.id}").get_data(as_text=True)
    assert f"Delivery #{delivery.id}" in linked and f"GET {receiver.url}/partials.php?first_name=Jane" in linked


def test_customer_whose_event_matched_no_profile_has_no_history(logged_in, post_events):
    post_events(event(firstName="", lastName=""))
    customer = db.session.scalars(db.select(Customer)).one()
    html = unescape(logged_in.get(f"/customers/{customer.id}").get_data(as_text=True))
    assert "<h1>jane@example.com</h1>" in html  # no name: the email stands in
    assert "Nothing in this customer's history yet." in html and "<code>evt-1001</code>" in html


def test_unknown_customer_is_404(logged_in, app):
    assert logged_in.get("/customers/999").status_code == 404
