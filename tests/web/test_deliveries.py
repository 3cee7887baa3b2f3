"""Deliveries screens: the list and its filters, a delivery's page with every attempt, and
the Retry now, Cancel and Retry all buttons, on data made through the intake and real workers."""
import re
import socket
import time
from datetime import date, datetime, timezone
from html import unescape

import pytest

from exporter.delivery import dispatch
from exporter.export_types import Outcome
from exporter.extensions import db
from exporter.models import Delivery, HistoryEntry, Profile

from ..factories import claim_one, event, make_profile
from ..receiver import Reply

CARD = "4000056655665556"  # a real-looking card, not on the test-card list
MASKED_CARD = "400005******5556"


def closed_port_url():
    """A URL on loopback where nothing listens: every send fails with connection refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://localhost:{port}/down"


def now_iso():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def listed_ids(html):
    return [int(i) for i in re.findall(r'<tr data-id="(\d+)"', html)]


def deliveries(**where):
    db.session.expire_all()
    return db.session.scalars(db.select(Delivery).filter_by(**where).order_by(Delivery.id)).all()


@pytest.fixture
def two_profiles(app, post_events, receiver, run_jobs):
    """'Call center partials' delivered to the receiver, 'Broken partner' retrying: two events each."""
    app.config["RETRY_BASE_SECONDS"] = 60  # the failed ones stay retrying while the test looks
    app.config["RETRY_MAX_SECONDS"] = 60
    good = make_profile(url=receiver.url + "/partials.php")
    bad = make_profile(name="Broken partner", url=closed_port_url())
    post_events({"events": [event("evt-1"), event("evt-2", customerId=7, emailAddress="john@example.com",
                                                    firstName="John", lastName="Smith")]})
    run_jobs(until=lambda: len(deliveries(status="delivered")) == 2 and len(deliveries(status="retrying")) == 2)
    return good, bad


def test_every_deliveries_page_needs_a_login(client, app):
    for url in ("/deliveries/", "/deliveries/1"):
        response = client.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"]
    for url in ("/deliveries/1/retry", "/deliveries/1/cancel", "/deliveries/profiles/1/retry-all"):
        response = client.post(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_list_shows_newest_first_with_profile_customer_type_status_and_last_error(logged_in, two_profiles):
    html = logged_in.get("/deliveries/").get_data(as_text=True)
    assert listed_ids(html) == [4, 3, 2, 1]
    row = re.search(r'<tr data-id="(\d+)">(.*?)</tr>', html, re.S)
    retrying = deliveries(status="retrying")
    assert 'href="/deliveries/1"' in html
    assert "Broken partner" in html and "Call center partials" in html
    assert "Partial" in row.group(2)
    assert 'href="/customers/' in html and "Jane Doe" in html and "John Smith" in html
    assert '<span class="badge retrying">retrying</span>' in html
    assert '<span class="badge delivered">delivered</span>' in html
    words = retrying[0].last_error.splitlines()[0]
    assert words.startswith("connection refused by ") and words in html and "ConnectionError" not in html


def test_list_filters_by_status_and_by_profile(logged_in, two_profiles):
    good, bad = two_profiles
    delivered = [d.id for d in deliveries(status="delivered")]
    retrying = [d.id for d in deliveries(status="retrying")]
    html = logged_in.get("/deliveries/?status=delivered").get_data(as_text=True)
    assert sorted(listed_ids(html)) == delivered
    assert '<option selected value="delivered">' in html
    assert sorted(listed_ids(logged_in.get(f"/deliveries/?profile={bad.id}").get_data(as_text=True))) == retrying
    both = logged_in.get(f"/deliveries/?status=retrying&profile={good.id}").get_data(as_text=True)
    assert listed_ids(both) == [] and "No deliveries match these filters." in both


@pytest.mark.parametrize("query, message", [
    ("status=lost", "Choose a status from the list"),
    ("profile=999", "No such profile"),
    ("profile=abc", "No such profile"),
    ("before=abc", "Older than is a whole number, like 2"),
    ("before=²", "Older than is a whole number, like 2"),
    ("before=٣", "Older than is a whole number, like 2"),
    ("before=0", "Older than: is a delivery&#39;s id"),
    ("after=99999999999999999999", "Newer than is a whole number, like 2"),
])
def test_bad_filters_get_an_error_beside_the_field(logged_in, query, message):
    response = logged_in.get("/deliveries/?" + query)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert '<span class="error">' in html and message in html
    assert listed_ids(html) == []  # no list that pretends to be filtered


def test_list_pages_newer_and_older_by_id_fifty_at_a_time(logged_in, post_events):
    make_profile(delay_minutes=3600)  # scheduled an hour out: nothing is sent
    post_events({"events": [event(f"evt-{i}", occurred_at=now_iso()) for i in range(51)]})
    first = logged_in.get("/deliveries/").get_data(as_text=True)
    assert listed_ids(first) == list(range(51, 1, -1))
    assert "51 in all, newest first" in first and 'rel="next" href="/deliveries/?before=2"' in first
    assert 'rel="prev"' not in first
    older = logged_in.get("/deliveries/?before=2&status=scheduled").get_data(as_text=True)
    assert listed_ids(older) == [1] and 'rel="next"' not in older
    assert 'rel="prev" href="/deliveries/?status=scheduled&amp;after=1"' in older  # the filters kept
    newer = logged_in.get("/deliveries/?after=1&status=scheduled").get_data(as_text=True)
    assert listed_ids(newer) == list(range(51, 1, -1)) and 'rel="prev"' not in newer
    assert listed_ids(logged_in.get("/deliveries/?before=1").get_data(as_text=True)) == []


def test_delivery_page_shows_the_event_and_every_attempt(logged_in, app, post_events, receiver, run_jobs):
    app.config["RETRY_BASE_SECONDS"] = app.config["RETRY_MAX_SECONDS"] = 0.1
    receiver.script = [Reply(500, body="partner says: server on fire")]
    make_profile(url=receiver.url + "/partials.php")
    post_events(event())
    run_jobs(until=lambda: deliveries()[0].status == "delivered")
    delivery = deliveries()[0]
    html = logged_in.get(f"/deliveries/{delivery.id}").get_data(as_text=True)
    assert f"Delivery #{delivery.id}" in html
    assert "Call center partials" in html and "Partial" in html
    assert "<code>evt-1001</code>" in html and "104233" in html
    assert f'href="/customers/{delivery.event.customer_id}">Jane Doe</a>' in html
    assert 'id="attempt-1"' in html and 'id="attempt-2"' in html
    url = (f"GET {receiver.url}/partials.php?first_name=Jane&amp;order_date=2026-11-27+14%3A03%3A22"
           "&amp;list_id=400&amp;email_address=jane%40example.com&amp;campaign_number=259")
    assert html.count(url) == 2
    assert f"Idempotency-Key: {delivery.id}" in html
    assert '<strong class="response-status">500</strong>' in html
    assert "partner says: server on fire" in html
    assert '<p class="error attempt-error">HTTP 500</p>' in html
    assert '<strong class="response-status">200</strong>' in html
    assert re.search(r"\d+ ms", html)
    assert "No body sent." in html
    # Delivered: nothing to retry or cancel.
    assert "Retry now" not in html and ">Cancel<" not in html


def test_card_number_is_sent_whole_but_shown_masked_everywhere(logged_in, post_events, receiver, run_jobs):
    mappings = [{"export_name": "first_name", "field": "firstName"}, {"export_name": "cc", "field": "cardNumber"}]
    make_profile(url=receiver.url + "/cards", pci_documented=True, mappings=mappings)
    post_events(event(cardNumber=CARD))
    run_jobs(until=lambda: len(receiver.requests) == 1)
    assert receiver.requests[0].path == f"/cards?first_name=Jane&cc={CARD}"  # the partner gets the card
    delivery = deliveries()[0]
    page = logged_in.get(f"/deliveries/{delivery.id}").get_data(as_text=True)
    assert f"/cards?first_name=Jane&amp;cc={MASKED_CARD}" in page
    for url in (f"/deliveries/{delivery.id}", "/deliveries/", f"/customers/{delivery.event.customer_id}",
                "/customers/?q=jane", "/"):
        html = logged_in.get(url).get_data(as_text=True)
        assert CARD not in html, url
        assert CARD[6:12] not in html, url  # not even the middle digits


def test_unknown_delivery_is_404(logged_in, app):
    assert logged_in.get("/deliveries/999").status_code == 404
    assert logged_in.post("/deliveries/999/retry").status_code == 404
    assert logged_in.post("/deliveries/999/cancel").status_code == 404
    assert logged_in.post("/deliveries/profiles/999/retry-all").status_code == 404


def test_retry_now_sends_a_scheduled_delivery_at_once(logged_in, post_events, receiver, run_jobs):
    make_profile(url=receiver.url + "/p", delay_minutes=3600)
    post_events(event(occurred_at=now_iso()))
    delivery = deliveries()[0]
    page = logged_in.get(f"/deliveries/{delivery.id}").get_data(as_text=True)
    assert "Send now" in page and "Retry now" not in page and "Not tried yet." in page  # never tried: not a retry
    response = logged_in.post(f"/deliveries/{delivery.id}/retry", follow_redirects=True)
    assert f"Delivery #{delivery.id} will be sent now." in response.get_data(as_text=True)
    run_jobs(until=lambda: deliveries()[0].status == "delivered")
    assert len(receiver.requests) == 1
    history = db.session.scalars(db.select(HistoryEntry)).one()
    assert history.message == "Export profile 'Call center partials' fired: postback delivered (HTTP 200)"
    assert history.delivery_id == delivery.id


def test_cancel_writes_the_reason_into_history_and_nothing_is_sent(logged_in, post_events, receiver, run_jobs):
    make_profile(url=receiver.url + "/p", delay_minutes=1)  # a test minute is a second
    post_events(event(occurred_at=now_iso()))
    delivery = deliveries()[0]
    response = logged_in.post(f"/deliveries/{delivery.id}/cancel", follow_redirects=True)
    html = response.get_data(as_text=True)
    assert f"Delivery #{delivery.id} cancelled." in html
    assert '<td id="cancel-reason">cancelled by admin@example.com</td>' in html
    assert deliveries()[0].status == "cancelled"
    history = db.session.scalars(db.select(HistoryEntry)).one()
    assert history.message == "Export profile 'Call center partials' cancelled: cancelled by admin@example.com"
    assert history.delivery_id == delivery.id
    time.sleep(1.2)  # past the delivery's due time: its job runs and must not send
    run_jobs()
    assert receiver.requests == []
    assert ">Cancel<" not in html and "Send now" in html


def test_retry_now_revives_a_cancelled_delivery(logged_in, post_events, receiver, run_jobs):
    make_profile(url=receiver.url + "/p", delay_minutes=3600)
    post_events(event(occurred_at=now_iso()))
    delivery = deliveries()[0]
    logged_in.post(f"/deliveries/{delivery.id}/cancel")
    logged_in.post(f"/deliveries/{delivery.id}/retry")
    run_jobs(until=lambda: deliveries()[0].status == "delivered")
    assert len(receiver.requests) == 1
    html = logged_in.get(f"/customers/{delivery.event.customer_id}").get_data(as_text=True)
    assert "cancelled: cancelled by admin@example.com" in html and "fired: postback delivered (HTTP 200)" in html


def test_a_delivery_being_sent_cannot_be_cancelled_or_retried(logged_in, post_events, receiver):
    make_profile(url=receiver.url + "/p")
    post_events(event())
    delivery = deliveries()[0]
    assert claim_one()  # a worker's drain takes it
    response = logged_in.post(f"/deliveries/{delivery.id}/cancel", follow_redirects=True)
    assert (f"Delivery #{delivery.id} is being sent right now and cannot be cancelled. "
            "If this attempt fails, cancel it then.") in response.get_data(as_text=True)
    response = logged_in.post(f"/deliveries/{delivery.id}/retry", follow_redirects=True)
    assert "is sending: it is being sent right now." in response.get_data(as_text=True)
    assert deliveries()[0].status == "sending"
    assert db.session.scalars(db.select(HistoryEntry)).all() == []


def test_a_delivered_delivery_cannot_be_cancelled(logged_in, post_events, receiver, run_jobs):
    make_profile(url=receiver.url + "/p")
    post_events(event())
    run_jobs(until=lambda: deliveries()[0].status == "delivered")
    delivery = deliveries()[0]
    html = logged_in.post(f"/deliveries/{delivery.id}/cancel", follow_redirects=True).get_data(as_text=True)
    assert f"Delivery #{delivery.id} is already delivered: there is nothing to cancel." in html
    assert deliveries()[0].status == "delivered"


def test_retry_all_sends_the_retrying_deliveries_of_one_profile(logged_in, two_profiles, receiver, run_jobs):
    good, bad = two_profiles
    assert "Retry all retrying deliveries of this profile" not in logged_in.get("/deliveries/").get_data(as_text=True)
    page = logged_in.get(f"/deliveries/?profile={bad.id}").get_data(as_text=True)
    assert "Retry all retrying deliveries of this profile" in page
    assert "2 retrying now in profile 'Broken partner'." in page
    # The partner is back, at a new address.
    db.session.get(Profile, bad.id).settings = {"url": receiver.url + "/back", "method": "GET"}
    db.session.commit()
    response = logged_in.post(f"/deliveries/profiles/{bad.id}/retry-all", follow_redirects=True)
    assert ("2 retrying deliveries of profile 'Broken partner' will be sent again now."
            in unescape(response.get_data(as_text=True)))
    run_jobs(until=lambda: len(deliveries(profile_id=bad.id, status="delivered")) == 2)
    paths = sorted(r.path.split("?")[0] for r in receiver.requests)
    assert paths == ["/back", "/back", "/partials.php", "/partials.php"]
    messages = db.session.scalars(db.select(HistoryEntry.message)).all()
    assert messages.count("Export profile 'Broken partner' fired: postback delivered (HTTP 200)") == 2


def test_retry_all_leaves_other_profiles_alone(logged_in, app, post_events, receiver, run_jobs):
    app.config["RETRY_BASE_SECONDS"] = app.config["RETRY_MAX_SECONDS"] = 60
    one = make_profile(name="One", url=closed_port_url())
    make_profile(name="Two", url=closed_port_url())
    post_events(event())
    run_jobs(until=lambda: len(deliveries(status="retrying")) == 2)
    due = {d.profile.name: d.due_at for d in deliveries()}
    logged_in.post(f"/deliveries/profiles/{one.id}/retry-all")
    after = {d.profile.name: d.due_at for d in deliveries()}
    assert after["Two"] == due["Two"]
    assert after["One"] < due["One"]


def test_daily_file_delivery_shows_its_file_details_and_download_link(logged_in, app):
    # The row as the daily-file flow records it (details as the FTP type reports them).
    profile = make_profile(name="Nightly file", export_type="ftp",
                           settings={"host": "ftp.example.com", "username": "partner", "password": "s3cret"},
                           mappings=[{"export_name": "email", "field": "emailAddress"}])
    delivery = Delivery(profile=profile, route_id=profile.routes[0].id, file_date=date(2026, 11, 26),
                        status="delivered", due_at=datetime(2026, 11, 27, 2, 0), attempt_count=1,
                        delivered_at=datetime(2026, 11, 27, 2, 0, 3),
                        details={"file_name": "partials-2026-11-26.csv", "rows": 42, "bytes": 5120,
                                 "sha256": "9f86d081884c7d65", "uploaded": True})
    db.session.add(delivery)
    db.session.commit()
    html = logged_in.get(f"/deliveries/{delivery.id}").get_data(as_text=True)
    for text in ("File name", "partials-2026-11-26.csv", "Rows", "<code>42</code>", "Bytes", "<code>5120</code>",
                 "Checksum (SHA-256)", "9f86d081884c7d65", "Uploaded", "2026-11-26"):
        assert text in html
    assert f'href="/files/deliveries/{delivery.id}/download">Download the file as sent</a>' in html
    listing = logged_in.get("/deliveries/").get_data(as_text=True)
    assert "file of 2026-11-26" in listing


class TestCsrf:
    @pytest.fixture
    def app_config(self, app_config):
        return {**app_config, "WTF_CSRF_ENABLED": True}

    def test_buttons_carry_a_csrf_token_and_a_post_without_one_is_refused(self, client, admin, post_events):
        from ..conftest import PASSWORD

        login = client.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', login).group(1)
        client.post("/login", data={"email": admin.email, "password": PASSWORD, "csrf_token": token})
        make_profile(url=closed_port_url(), delay_minutes=3600)
        post_events(event(occurred_at=now_iso()))
        delivery = deliveries()[0]
        assert client.post(f"/deliveries/{delivery.id}/cancel").status_code == 400
        assert deliveries()[0].status == "scheduled"
        page = client.get(f"/deliveries/{delivery.id}").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        client.post(f"/deliveries/{delivery.id}/cancel", data={"csrf_token": token})
        assert deliveries()[0].status == "cancelled"


def test_test_sends_are_not_listed_among_a_deliverys_attempts(logged_in, post_events, receiver, run_jobs):
    profile = make_profile(url=receiver.url + "/p")
    post_events(event())
    run_jobs(until=lambda: deliveries()[0].status == "delivered")
    # A "Send test" from the profile page: an attempt of the profile, of no delivery.
    sent = Outcome(ok=True, method="GET", target=receiver.url + "/p?first_name=Test-Send", status=200)
    db.session.add(dispatch.attempt_from(sent, [], is_test=True, profile_id=profile.id))
    db.session.commit()
    delivery = deliveries()[0]
    html = logged_in.get(f"/deliveries/{delivery.id}").get_data(as_text=True)
    assert "Attempts (1)" in html and "Test-Send" not in html
    assert listed_ids(logged_in.get("/deliveries/").get_data(as_text=True)) == [delivery.id]


def test_an_attempt_says_what_happened_in_words_with_the_exception_one_click_away(logged_in, two_profiles):
    delivery = deliveries(status="retrying")[0]
    html = logged_in.get(f"/deliveries/{delivery.id}").get_data(as_text=True)
    words = re.search(r'<p class="error attempt-error">(.*?)</p>', html).group(1)
    assert words.startswith("connection refused by ")
    detail = re.search(r'<details class="error-detail"><summary>Details</summary><pre>(.*?)</pre>', html, re.S)
    assert detail and detail.group(1).startswith("ConnectionError: ")


def test_list_filters_by_customer_type_host_and_date(logged_in, post_events):
    routes = [{"customer_types": ["partial", "decline"], "campaigns": [], "products": []}]
    make_profile(delay_minutes=3600, routes=routes)  # scheduled an hour out: nothing is sent
    make_profile(name="Dialer", url="https://dialer.example.com/leads", delay_minutes=3600, routes=routes)
    post_events({"events": [event("evt-1"), event("evt-2", type="decline", orderId=5)]})
    by_id = {d.id: d for d in deliveries()}
    declines = sorted(i for i, d in by_id.items() if d.event.type == "decline")
    dialer = sorted(i for i, d in by_id.items() if d.profile.name == "Dialer")

    def listed(query):
        response = logged_in.get("/deliveries/?" + query)
        assert response.status_code == 200, query
        return sorted(listed_ids(response.get_data(as_text=True)))

    assert len(declines) == 2 and listed("customer_type=decline") == declines
    assert listed("host=DIALER.example") == dialer and listed("host=nowhere.example") == []
    today = db.session.get(Delivery, declines[0]).created_at.date()
    assert listed(f"since={today}&until={today}") == sorted(by_id)
    assert listed(f"since={today.replace(year=today.year + 1)}") == []
    assert listed(f"customer_type=decline&host=dialer&until={today}") == sorted(set(declines) & set(dialer))


@pytest.mark.parametrize("query, message", [
    ("customer_type=lead", "Choose a customer type from the list"),
    ("since=yesterday", "Give the date as YYYY-MM-DD"),
    ("until=2026-02-30", "Give the date as YYYY-MM-DD"),
    ("until=9999-12-31", "Give a date between 1970 and 2100"),
    ("since=2026-11-30&until=2026-11-01", "To is before From"),
    ("host=" + "x" * 300, "Host is at most 255 characters"),
])
def test_bad_new_filters_are_form_errors_not_a_500(logged_in, query, message):
    response = logged_in.get("/deliveries/?" + query)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert '<span class="error">' in html and message in html


def _window_around(now, before_hours, after_hours):
    """A window of every day, open from before_hours ago to after_hours on (UTC)."""
    from datetime import timedelta

    from exporter import windows

    start, end = now - timedelta(hours=before_hours), now + timedelta(hours=after_hours)
    return {"days": list(windows.DAYS), "from": f"{start:%H:%M}", "to": f"{end:%H:%M}"}


def test_a_delivery_whose_delay_ends_after_todays_window_says_it_waits_for_the_opening(logged_in, post_events):
    from datetime import timedelta

    from exporter.models import utcnow

    now = utcnow().replace(second=0, microsecond=0)
    # Open now, for an hour more; an Export Delay of two hours (a test minute is a second) ends after it closes.
    make_profile(send_window=_window_around(now, 1, 1), delay_minutes=7200)
    post_events(event(occurred_at=now_iso()))
    delivery = deliveries()[0]
    tomorrow = now - timedelta(hours=1) + timedelta(days=1)
    assert delivery.due_at == tomorrow
    page = logged_in.get(f"/deliveries/{delivery.id}").get_data(as_text=True)
    assert f"Waiting for the send window: opens {tomorrow:%a %H:%M} UTC" in page


def test_retry_all_while_the_window_is_closed_says_they_wait_for_the_opening(logged_in, post_events):
    from datetime import timedelta

    from exporter.models import utcnow

    now = utcnow().replace(second=0, microsecond=0)
    profile = make_profile(send_window=_window_around(now, -6, 7))  # opens in six hours
    post_events(event(occurred_at=now_iso()))
    delivery = deliveries()[0]
    opens = now + timedelta(hours=6)
    logged_in.post(f"/deliveries/{delivery.id}/retry")  # retrying now, due at the opening
    response = logged_in.post(f"/deliveries/profiles/{profile.id}/retry-all", follow_redirects=True)
    assert (f"1 retrying deliveries of profile &#39;{profile.name}&#39; wait for the send window: "
            f"opens {opens:%a %H:%M} UTC.") in response.get_data(as_text=True)
    assert (deliveries()[0].status, deliveries()[0].due_at) == ("retrying", opens)
