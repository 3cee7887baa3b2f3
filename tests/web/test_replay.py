"""Send past events on screen (HTTP): the form, Count, Send, and bad input beside its field."""
import html
import re
from datetime import datetime, timedelta, timezone

import pytest

from exporter.extensions import db
from exporter.models import AuditEntry, Delivery

from ..factories import event, make_profile
from ..plugins.conftest import ftp_server  # noqa: F401 - a fixture
from ..files.test_daily_files import DAY, at, ftp_profile

TODAY = datetime.now(timezone.utc).date()
SINCE = (TODAY - timedelta(days=7)).isoformat()


def two_type_profile():
    return make_profile(url="http://127.0.0.1:9/p", routes=[
        {"customer_types": ["partial"], "campaigns": [259], "products": []},
        {"customer_types": ["decline"], "campaigns": [], "products": []}])


def past_events(post_events):
    yesterday = f"{TODAY - timedelta(days=1)}T10:00:00Z"
    post_events({"events": [event("p1", customerId=1, orderId=1, occurred_at=yesterday),
                            event("p2", customerId=2, orderId=2, occurred_at=yesterday),
                            event("d1", type="decline", customerId=3, orderId=3, occurred_at=yesterday)]})


def field_errors(page, name):
    part = re.split(r'<div class="field|<button', page.split(f'id="field-{name}"', 1)[1], maxsplit=1)[0]
    return [html.unescape(e.split("</span>")[0]) for e in part.split('<span class="error">')[1:]]


def post(client, profile, action, **data):
    data.setdefault("since", SINCE)
    data.setdefault("until", TODAY.isoformat())
    data.setdefault("customer_types", ["partial", "decline"])
    return client.post(f"/profiles/{profile.id}/replay", data={**data, "action": action})


def deliveries():
    return db.session.scalar(db.select(db.func.count()).select_from(Delivery))


def test_the_page_needs_a_login(client, app):
    profile = two_type_profile()
    for response in (client.get(f"/profiles/{profile.id}/replay"), post(client, profile, "send")):
        assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert deliveries() == 0


def test_the_profile_page_leads_to_a_form_of_its_routes_customer_types(logged_in, app):
    profile = two_type_profile()
    page = logged_in.get(f"/profiles/{profile.id}").get_data(as_text=True)
    assert f'href="/profiles/{profile.id}/replay">Send past events</a>' in page
    page = logged_in.get(f"/profiles/{profile.id}/replay").get_data(as_text=True)
    assert 'value="partial"\n          checked> Partial' in page and "> Decline</label>" in page
    assert "Refund" not in page  # only the routes' types are offered
    assert f'value="{SINCE}"' in page and f'value="{TODAY.isoformat()}"' in page


def test_count_shows_what_send_then_creates_and_nothing_before(logged_in, app, post_events):
    past_events(post_events)
    profile = two_type_profile()
    response = post(logged_in, profile, "count", customer_types=["partial"])
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "<strong>2</strong> events match;\n    <strong>2</strong> will be sent." in page
    assert "Send 2 events" in page and deliveries() == 0
    response = post(logged_in, profile, "send", customer_types=["partial"])
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/profiles/{profile.id}")
    assert deliveries() == 2
    flashed = logged_in.get(response.headers["Location"]).get_data(as_text=True)
    assert "2 deliveries created." in flashed
    page = post(logged_in, profile, "count").get_data(as_text=True)
    assert "<strong>3</strong> events match;\n    <strong>2</strong> already sent or queued for this profile; <strong>1</strong> will be sent." in page
    entry = db.session.scalars(db.select(AuditEntry).where(AuditEntry.action == "profile.replay")).one()
    assert entry.after["customer_types"] == ["partial"] and entry.after["created"] == 2


@pytest.mark.parametrize("data,name,message", [
    ({"since": ""}, "since", "From date is required"),
    ({"until": "yesterday"}, "until", "'yesterday' is not a date as YYYY-MM-DD"),
    ({"since": "2026-03-02", "until": "2026-03-01"}, "until", "To date 2026-03-01 is before From date 2026-03-02"),
    ({"since": "2020-01-01", "until": "2026-03-01"}, "until", "at most 366 days at a time: split the range"),
    ({"customer_types": []}, "customer_types", "Choose at least one customer type"),
    ({"customer_types": ["refund"]}, "customer_types", "Refund is not among this profile's routes' customer types"),
    ({"customer_types": ["nonsense"]}, "customer_types", "'nonsense' is not a customer type"),
    ({"since": "9999-12-31", "until": "9999-12-31"}, "since", "9999-12-31 is not in the years 1970 to 2100"),
    ({"since": "0001-01-01", "until": "0001-01-01"}, "since", "0001-01-01 is not in the years 1970 to 2100"),
    ({"until": "2101-01-01"}, "until", "2101-01-01 is not in the years 1970 to 2100"),
])
@pytest.mark.parametrize("action", ["count", "send"])
def test_bad_input_is_named_beside_the_field_with_a_400(logged_in, app, post_events, data, name, message, action):
    past_events(post_events)
    profile = two_type_profile()
    response = post(logged_in, profile, action, **data)
    assert response.status_code == 400
    assert any(message in error for error in field_errors(response.get_data(as_text=True), name))
    assert deliveries() == 0


def test_an_unknown_profile_is_not_found(logged_in, app):
    assert logged_in.get("/profiles/999/replay").status_code == 404


def test_a_daily_file_profile_says_what_a_replay_does(logged_in, app, post_events, ftp_server):
    post_events(event("e1", occurred_at=at(DAY, 8)))
    profile = ftp_profile(ftp_server)
    page = post(logged_in, profile, "count", since=DAY.isoformat(), customer_types=["partial"]).get_data(as_text=True)
    assert "the events become rows of their day's file" in page and "Send 1 event" in page
    response = post(logged_in, profile, "send", since=DAY.isoformat(), customer_types=["partial"])
    assert response.status_code == 302
    assert "1 file row created." in logged_in.get(response.headers["Location"]).get_data(as_text=True)


def test_purged_events_are_shown_apart_and_not_sent(logged_in, app, post_events):
    from exporter.flows import retention
    from exporter.models import Customer

    past_events(post_events)
    retention.forget(db.session.scalar(db.select(Customer).where(Customer.crm_customer_id == 1)), by="admin")
    profile = two_type_profile()
    page = post(logged_in, profile, "count").get_data(as_text=True)
    assert "<strong>1</strong> purged: their data is gone, not sent" in page and "Send 2 events" in page
    response = post(logged_in, profile, "send")
    assert "1 purged: their data is gone, not sent" in logged_in.get(response.headers["Location"]).get_data(as_text=True)
    assert deliveries() == 2


# --- Send this event to a profile ---------------------------------------------------------------

def test_a_delivery_page_sends_its_event_to_another_profile_once(logged_in, post_events):
    from exporter.models import Delivery, Event

    first = make_profile()
    other = make_profile(name="Second partner")
    post_events(event("one"))  # both profiles take it: two deliveries
    db.session.execute(db.delete(Delivery).where(Delivery.profile_id == other.id))  # as if made before it existed
    db.session.commit()
    delivery = db.session.scalars(db.select(Delivery)).one()
    page = logged_in.get(f"/deliveries/{delivery.id}").get_data(as_text=True)
    assert 'id="send-this-event"' in page and f'<option value="{other.id}">Second partner</option>' in page
    stored = db.session.scalars(db.select(Event)).one()
    back = f"/deliveries/{delivery.id}"
    response = logged_in.post(f"/profiles/events/{stored.id}/send", data={"profile_id": other.id, "back": back})
    assert response.status_code == 302 and response.headers["Location"] == back
    page = logged_in.get(back).get_data(as_text=True)
    assert "Event one goes to &#39;Second partner&#39;: a delivery, sent after its Export Delay." in page
    again = logged_in.post(f"/profiles/events/{stored.id}/send", data={"profile_id": other.id, "back": back},
                           follow_redirects=True).get_data(as_text=True)
    assert "already sent or queued for this profile: never twice" in again
    assert db.session.scalar(db.select(db.func.count()).select_from(Delivery).where(
        Delivery.profile_id == other.id)) == 1
    assert first.id != other.id


def test_send_this_event_refuses_in_words_and_goes_back_only_inside_the_site(logged_in, post_events):
    from exporter.models import Event

    make_profile()
    post_events(event("one"))
    stored = db.session.scalars(db.select(Event)).one()
    response = logged_in.post(f"/profiles/events/{stored.id}/send", data={"profile_id": "", "back": "//evil.example/x"})
    assert response.headers["Location"] == f"/customers/{stored.customer_id}"
    page = logged_in.get(response.headers["Location"]).get_data(as_text=True)
    assert "Choose a profile to send this event to." in page
    assert logged_in.post("/profiles/events/999/send", data={"profile_id": "1"}).status_code == 404
