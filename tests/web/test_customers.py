"""Customers screens: search by name, email, phone or CRM id; a customer's events and history,
each history message linking to the delivery it speaks of."""
import os
import re
from html import unescape

import pytest

from exporter.extensions import db
from exporter.models import Customer, Delivery

from ..factories import event, make_profile, occurred
from ..plugins.conftest import ftp_server  # noqa: F401 - a fixture

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
    assert "Page: Page is a whole number, like 2" in response.get_data(as_text=True)


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
    post_events(event("evt-test", orderId=104230, isTestCard=True, occurred_at=occurred(hours=1)))
    body = event("evt-1001")
    post_events(body)
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
    shown = body["occurred_at"].replace("T", " ").rstrip("Z")  # "2026-11-27 14:03:22": when it occurred, UTC
    assert shown in newest and "Partial" in newest and "<code>evt-1001</code>" in newest
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


# --- Forget this customer (issue 12) -------------------------------------------------------------

CARD = "5105105105105100"


@pytest.fixture
def jane(logged_in, post_events, receiver, run_jobs):
    """Jane with a delivered postback (its query string names her) and a delivery still waiting."""
    from exporter.models import utcnow

    make_profile(url=receiver.url + "/partials.php")
    make_profile(name="Slow dialer", url=receiver.url + "/slow.php", delay_minutes=3600)  # an hour in tests
    post_events(event("evt-1001", cardNumber=CARD, occurred_at=utcnow().isoformat() + "Z"))
    run_jobs(until=lambda: db.session.scalar(db.select(db.func.count()).where(Delivery.status == "delivered")) == 1)
    return db.session.scalars(db.select(Customer)).one()


def test_forget_asks_first(logged_in, jane):
    page = unescape(logged_in.get(f"/customers/{jane.id}").get_data(as_text=True))
    assert f'href="/customers/{jane.id}/forget">Forget this customer</a>' in page
    confirm = unescape(logged_in.get(f"/customers/{jane.id}/forget").get_data(as_text=True))
    assert "<h1>Forget this customer?</h1>" in confirm and "<strong>Jane Doe</strong>" in confirm
    assert "the orders and card numbers of their 1 event;" in confirm
    assert "1 waiting delivery is cancelled" in confirm
    assert f'<form method="post" action="/customers/{jane.id}/forget"' in confirm
    db.session.refresh(jane)
    assert jane.forgotten_at is None and jane.email == "jane@example.com"  # asking changed nothing


def test_forget_erases_personal_data_and_keeps_deliveries_as_counts(logged_in, jane, receiver):
    from exporter.models import Attempt, AuditEntry, Event, HistoryEntry

    db.session.add(HistoryEntry(customer_id=jane.id, message="Export profile 'Mailer' fired: sent to JANE@example.com"))
    db.session.commit()
    response = logged_in.post(f"/customers/{jane.id}/forget")
    assert response.status_code == 302 and response.headers["Location"] == f"/customers/{jane.id}"
    page = unescape(logged_in.get(f"/customers/{jane.id}").get_data(as_text=True))
    assert f"Customer #{jane.id} forgotten: personal data of 1 event erased, 1 waiting delivery cancelled, 0 kept daily-file copies deleted." in page
    assert re.search(r"Forgotten on <time[^>]*>[\d\- :]+</time> UTC by admin@example.com", page)
    assert f"<h1>Customer #{jane.id}</h1>" in page and "Forget this customer</a>" not in page
    for personal in ("Jane", "Doe", "jane@example.com", "5552013344", "55821"):
        assert personal not in page
    assert "<code>evt-1001</code>" in page and "104233" in page and "data purged on" in page
    history = re.search(r'<table id="history">(.*?)</table>', page, re.S).group(1)
    assert "Forgotten on request: personal data of 1 event erased, 1 waiting delivery cancelled" in history
    assert "Export profile 'Mailer' fired: sent to [purged]" in history  # a message quoting her, erased
    assert "Export profile 'Call center partials' fired: postback delivered (HTTP 200)" in history

    db.session.expire_all()
    customer = db.session.get(Customer, jane.id)
    assert (customer.first_name, customer.last_name, customer.email, customer.phone,
            customer.crm_customer_id) == ("", "", "", "", None)
    evt = db.session.scalars(db.select(Event)).one()
    assert evt.card_number is None and evt.purged_at is not None
    assert evt.order == {"orderId": 104233, "campaignId": 259, "campaignName": "Test Lander",
                         "orderDate": "2026-11-27 14:03:22", "isTestCard": False}
    by_profile = {d.profile.name: d for d in db.session.scalars(db.select(Delivery))}
    sent, waiting = by_profile["Call center partials"], by_profile["Slow dialer"]
    assert (sent.status, sent.attempt_count) == ("delivered", 1) and sent.delivered_at is not None
    assert (waiting.status, waiting.cancel_reason, waiting.attempt_count) == ("cancelled", "customer forgotten", 0)
    attempt = db.session.scalars(db.select(Attempt)).one()
    assert attempt.target == f"{receiver.url}/partials.php?[purged]" and "Jane" not in str(attempt.request_headers)

    entry = db.session.scalars(db.select(AuditEntry).where(AuditEntry.action == "customer.forget")).one()
    assert (entry.actor, entry.via, entry.target_type, entry.target_id) == (
        "admin@example.com", "web", "customer", jane.id)
    assert entry.after == {"events": 1, "attempts": 1, "cancelled_deliveries": 1, "kept_files_deleted": 0}
    assert "jane" not in (entry.summary + entry.target_name + str(entry.after)).lower()

    delivery_page = unescape(logged_in.get(f"/deliveries/{sent.id}").get_data(as_text=True))
    assert "first_name=Jane" not in delivery_page and "partials.php?[purged]" in delivery_page
    assert "nothing left to send" in delivery_page
    cancelled_page = logged_in.get(f"/deliveries/{waiting.id}").get_data(as_text=True)
    assert "Retry now" not in cancelled_page and "customer forgotten" in cancelled_page


def test_a_forgotten_customer_can_be_found_only_by_order_id(logged_in, jane):
    logged_in.post(f"/customers/{jane.id}/forget")
    assert found(logged_in.get("/customers/", query_string={"q": "jane"})) == []
    assert found(logged_in.get("/customers/", query_string={"q": "55821"})) == []
    assert found(logged_in.get("/customers/", query_string={"q": "104233"})) == [f"Customer #{jane.id}"]


def test_a_new_event_after_forgetting_stores_nothing_personal_and_is_not_exported(logged_in, jane, post_events):
    from exporter.models import Event

    logged_in.post(f"/customers/{jane.id}/forget")
    response = post_events(event("evt-2002", cardNumber=CARD, notes="call Jane at 5552013344"))
    assert response.get_json() == {"accepted": 1, "duplicates": 0, "test_orders": 0, "deliveries": 0}
    customers = db.session.scalars(db.select(Customer)).all()
    assert [(c.id, c.email, c.first_name, c.crm_customer_id) for c in customers] == [(jane.id, "", "", None)]
    later = db.session.scalar(db.select(Event).where(Event.event_key == "evt-2002"))
    assert later.customer_id == jane.id and later.purged_at is not None and later.card_number is None
    assert later.order == {"orderId": 104233, "campaignId": 259, "campaignName": "Test Lander",
                           "orderDate": "2026-11-27 14:03:22", "isTestCard": False}
    page = unescape(logged_in.get(f"/customers/{jane.id}").get_data(as_text=True))
    assert "Event of a forgotten customer: stored without personal data, never exported" in page
    for personal in ("Jane", "5552013344", "55821", "jane@example.com"):
        assert personal not in page


def test_forget_is_refused_while_a_delivery_is_being_sent(logged_in, jane):
    waiting = db.session.scalars(db.select(Delivery).where(Delivery.status == "scheduled")).one()
    waiting.status = "sending"
    db.session.commit()
    response = logged_in.post(f"/customers/{jane.id}/forget", follow_redirects=True)
    assert "being sent right now: try again in a minute" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Customer, jane.id).email == "jane@example.com"
    assert db.session.get(Delivery, waiting.id).status == "sending"


def test_forgetting_twice_says_so(logged_in, jane):
    logged_in.post(f"/customers/{jane.id}/forget")
    page = logged_in.post(f"/customers/{jane.id}/forget", follow_redirects=True).get_data(as_text=True)
    assert f"Customer #{jane.id} was already forgotten." in page
    assert logged_in.get(f"/customers/{jane.id}/forget").status_code == 302


def test_forget_an_unknown_customer_is_404(logged_in, app):
    assert logged_in.get("/customers/999/forget").status_code == 404
    assert logged_in.post("/customers/999/forget").status_code == 404


def test_forget_deletes_the_kept_copies_of_the_daily_files_that_carried_the_customer(
        logged_in, app, post_events, ftp_server, run_jobs):
    """The confirm page says so; the copy of the day holding her event goes (its delivery page and
    download say it was deleted), another day's copy stays, and a re-run keeps a new copy."""
    from datetime import timedelta

    from exporter.files import daily_files
    from exporter.models import utcnow

    from ..files.test_daily_files import DAY, all_delivered, at, ftp_profile, utc

    profile = ftp_profile(ftp_server, created=DAY - timedelta(days=1))
    post_events({"events": [event("jane-day", customerId=1, firstName="Jane", occurred_at=at(DAY, 8)),
                            event("john-day", customerId=2, firstName="John", occurred_at=at(DAY, 9)),
                            event("john-before", customerId=2, firstName="John",
                                  occurred_at=at(DAY - timedelta(days=1), 9))]})
    daily_files.tick(now=utc(DAY + timedelta(days=1), 2))
    run_jobs(until=all_delivered)
    files = {d.file_date: d for d in db.session.scalars(db.select(Delivery).where(Delivery.profile_id == profile.id))}
    jane_file, other_file = files[DAY], files[DAY - timedelta(days=1)]
    assert b"Jane" in logged_in.get(f"/files/deliveries/{jane_file.id}/download").data
    jane = db.session.scalar(db.select(Customer).where(Customer.crm_customer_id == 1))
    confirm = unescape(logged_in.get(f"/customers/{jane.id}/forget").get_data(as_text=True))
    assert "the copies kept for download of the daily files that carried their events" in confirm

    response = logged_in.post(f"/customers/{jane.id}/forget")
    assert "1 kept daily-file copy deleted." in logged_in.get(response.headers["Location"]).get_data(as_text=True)
    download = logged_in.get(f"/files/deliveries/{jane_file.id}/download")
    assert download.status_code == 410
    assert f"was deleted on {utcnow():%Y-%m-%d}: it held a forgotten customer's data" in unescape(
        download.get_data(as_text=True))
    page = unescape(logged_in.get(f"/deliveries/{jane_file.id}").get_data(as_text=True))
    assert "The copy kept for download was deleted on" in page and "Download the file as sent" not in page
    assert logged_in.get(f"/files/deliveries/{other_file.id}/download").status_code == 200
    assert not any(b"Jane" in open(os.path.join(app.config["FILES_DIR"], "deliveries", name), "rb").read()
                   for name in os.listdir(os.path.join(app.config["FILES_DIR"], "deliveries")))

    daily_files.rerun(profile, DAY)  # sent again: a new copy, without her
    run_jobs(until=all_delivered)
    again = logged_in.get(f"/files/deliveries/{jane_file.id}/download")
    assert again.status_code == 200 and b"John" in again.data and b"Jane" not in again.data


def test_a_waiting_or_failing_export_shows_in_the_history_until_it_ends(logged_in, post_events, receiver, run_jobs):
    from ..receiver import Reply

    make_profile(url=receiver.url + "/partials.php")
    receiver.script = [Reply(503, "busy")]
    post_events(event())
    customer = db.session.scalars(db.select(Customer)).one()
    delivery = db.session.scalars(db.select(Delivery)).one()
    html = unescape(logged_in.get(f"/customers/{customer.id}").get_data(as_text=True))
    assert "Nothing in this customer's history yet." not in html
    assert re.search(r"Export profile 'Call center partials':\s+waiting, to be sent at the time shown", html)
    run_jobs(until=lambda: len(receiver.requests) == 1 and db.session.get(Delivery, delivery.id).status == "retrying")
    html = unescape(logged_in.get(f"/customers/{customer.id}").get_data(as_text=True))
    assert re.search(r"Export profile 'Call center partials':\s+failed 1 time, tried again at the time shown: HTTP 503", html)
    assert f'<tr class="unfinished" data-delivery-id="{delivery.id}">' in html
