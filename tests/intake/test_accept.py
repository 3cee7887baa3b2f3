"""POST /intake/events: every answer of DESIGN §6, and what is (not) stored."""
import json
import re
import threading
import time

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy.exc import OperationalError

from exporter.intake import accept as intake
from exporter import security
from exporter.extensions import db
from exporter.models import Campaign, Customer, Delivery, Event, HistoryEntry, IntakeToken, Product

from ..factories import event, make_profile


def stored():
    return {m.__name__: db.session.query(m).count() for m in (Event, Customer, Delivery, Campaign, Product)}


NOTHING = {"Event": 0, "Customer": 0, "Delivery": 0, "Campaign": 0, "Product": 0}


def test_one_event_is_stored_with_its_customer_campaign_and_products(app, post_events):
    body = event()
    response = post_events(body)
    assert response.status_code == 202
    assert response.get_json() == {"accepted": 1, "duplicates": 0, "test_orders": 0, "deliveries": 0}
    customer = db.session.scalars(db.select(Customer)).one()
    assert (customer.crm_customer_id, customer.email, customer.name) == (55821, "jane@example.com", "Jane Doe")
    assert db.session.get(Campaign, 259).name == "Test Lander"
    assert db.session.get(Product, 33).name == "Keto 30ct"
    stored_event = db.session.scalars(db.select(Event)).one()
    assert f"{stored_event.occurred_at.isoformat()}Z" == body["occurred_at"]  # naive UTC, as stored


def test_a_batch_of_events_and_duplicates_by_id(app, post_events):
    body = {"events": [event("a"), event("b"), event("a")]}
    assert post_events(body).get_json() == {"accepted": 2, "duplicates": 1, "test_orders": 0, "deliveries": 0}
    assert post_events({"events": [event("b"), event("c")]}).get_json()["duplicates"] == 1
    assert db.session.query(Event).count() == 3


def test_occurred_at_defaults_to_the_time_received(app, post_events):
    body = event()
    del body["occurred_at"]
    assert post_events(body).status_code == 202
    assert db.session.scalars(db.select(Event)).one().occurred_at.year >= 2026


def test_customer_found_by_email_when_the_crm_sends_no_customer_id(app, post_events):
    post_events(event("a", customerId=None))
    post_events(event("b", customerId=None, firstName="Janet"))
    customer = db.session.scalars(db.select(Customer)).one()
    assert customer.first_name == "Janet" and customer.crm_customer_id is None


def test_cvv_is_never_stored_and_the_card_number_only_encrypted(app, post_events):
    body = event(cardNumber="4012 8888 8888 1881", cvv="123", cvv2="456", cardSecurityCode="789", securityCode="000")
    assert post_events(body).status_code == 202
    row = db.session.scalars(db.select(Event)).one()
    dumped = json.dumps(row.order)
    for secret in ("123", "456", "789", "000", "4012888888881881"):
        assert f'"{secret}"' not in dumped
    assert row.order["cardLast4"] == "1881" and row.order["cardBin"] == "401288"
    assert row.card_number.startswith("enc:") and "4012888888881881" not in row.card_number
    assert security.decrypt(app.config["SECRET_KEY"], row.card_number) == "4012888888881881"


def test_cvv_is_dropped_in_any_case_at_any_depth_and_the_rest_kept(app, post_events):
    body = event(CVV="111", Cvc="222", payment={"method": "visa", "CardSecurityCode": "333",
                                                 "card": {"cvv2": "444", "SECURITYCODE": "555"}},
                 payments=[{"amount": "49.95", "cVv": "666"}, [{"cvc": "777"}]])
    assert post_events(body).status_code == 202
    order = db.session.scalars(db.select(Event)).one().order
    assert not re.search(r'"[1-7]{3}"', json.dumps(order))
    assert order["payment"] == {"method": "visa", "card": {}}
    assert order["payments"] == [{"amount": "49.95"}, [{}]]


@pytest.mark.parametrize("order", [{"isTestCard": True}, {"cardNumber": "4111111111111111"}])
def test_test_card_orders_are_skipped_and_say_so_in_history(app, post_events, order):
    make_profile()
    response = post_events(event(**order))
    assert response.get_json() == {"accepted": 1, "duplicates": 0, "test_orders": 1, "deliveries": 0}
    assert db.session.query(Delivery).count() == 0
    assert db.session.scalars(db.select(Event)).one().is_test
    assert db.session.scalars(db.select(HistoryEntry)).one().message == "Test-card order: skipped, never exported"


# --- bad input: the status and message each gets, and nothing stored -----------------------

def test_no_token_or_a_bad_or_revoked_token_is_401(app, client, post_events, intake_token):
    assert post_events(event(), token=None).status_code == 401
    response = post_events(event(), token="exp_not-a-token")
    assert response.status_code == 401 and "intake token" in response.get_json()["error"]
    db.session.scalars(db.select(IntakeToken)).one().revoked_at = db.func.now()
    db.session.commit()
    assert post_events(event()).status_code == 401
    assert stored() == NOTHING


def test_token_use_is_noted(app, post_events):
    post_events(event())
    assert db.session.scalars(db.select(IntakeToken)).one().last_used_at is not None


def test_malformed_json_is_400(app, client, intake_token):
    response = client.post("/intake/events", data=b'{"id": "x",', content_type="application/json",
                           headers={"Authorization": f"Bearer {intake_token}"})
    assert response.status_code == 400 and response.get_json()["error"].startswith("malformed JSON")
    assert stored() == NOTHING


def test_non_json_content_type_is_415(app, client, intake_token):
    response = client.post("/intake/events", data=json.dumps(event()), content_type="text/plain",
                           headers={"Authorization": f"Bearer {intake_token}"})
    assert response.status_code == 415 and "application/json" in response.get_json()["error"]
    assert stored() == NOTHING


def test_a_body_over_the_limit_is_413(app, client, intake_token):
    app.config["INTAKE_MAX_BYTES"] = 2048
    body = event(custom1="x" * 4096)
    response = client.post("/intake/events", json=body, headers={"Authorization": f"Bearer {intake_token}"})
    assert response.status_code == 413
    assert stored() == NOTHING


def test_more_than_1000_events_is_422(app, post_events):
    response = post_events({"events": [event(f"e{i}") for i in range(1001)]})
    assert response.status_code == 422
    assert response.get_json()["problems"] == [
        {"index": None, "field": "events", "message": "at most 1000 events per request"}]
    assert stored() == NOTHING


@pytest.mark.parametrize("mutate,field", [
    (lambda e: e.update(type="lead"), "type"),
    (lambda e: e.pop("id"), "id"),
    (lambda e: e.update(id=""), "id"),
    (lambda e: e.pop("order"), "order"),
    (lambda e: e.update(occurred_at="yesterday"), "occurred_at"),
    (lambda e: e["order"].update(campaignId="two hundred"), "order.campaignId"),
    (lambda e: e["order"].update(products=[{"productName": "no id"}]), "order.products.0.productId"),
    (lambda e: e["order"].update(cardNumber="4111-abc"), "order.cardNumber"),
    (lambda e: e.update(surprise=1), "surprise"),
    # Ids past a 64-bit integer, or negative: the database columns cannot hold them.
    (lambda e: e["order"].update(orderId=10**20), "order.orderId"),
    (lambda e: e["order"].update(customerId=10**20), "order.customerId"),
    (lambda e: e["order"].update(campaignId=10**20), "order.campaignId"),
    (lambda e: e["order"].update(campaignId=-1), "order.campaignId"),
    (lambda e: e["order"].update(products=[{"productId": 10**20}]), "order.products.0.productId"),
    # Text longer than its column, or that no column can hold (NUL, a lone surrogate).
    (lambda e: e.update(id="x" * 121), "id"),
    (lambda e: e["order"].update(firstName="x" * 121), "order.firstName"),
    (lambda e: e["order"].update(lastName="x" * 121), "order.lastName"),
    (lambda e: e["order"].update(emailAddress="x" * 250 + "@x.com"), "order.emailAddress"),
    (lambda e: e["order"].update(phoneNumber="5" * 41), "order.phoneNumber"),
    (lambda e: e["order"].update(campaignName="x" * 256), "order.campaignName"),
    (lambda e: e["order"].update(products=[{"productId": 1, "productName": "x" * 256}]),
     "order.products.0.productName"),
    (lambda e: e["order"].update(firstName="Ja\x00ne"), "order.firstName"),
    (lambda e: e["order"].update(lastName="D\ud800e"), "order.lastName"),
    (lambda e: e.update(occurred_at="0001-01-01T00:00:00+01:00"), "occurred_at"),
    (lambda e: e.update(occurred_at="1969-12-31T23:59:59Z"), "occurred_at"),
    (lambda e: e.update(occurred_at="2101-01-01T00:00:00Z"), "occurred_at"),
])
def test_an_invalid_event_rejects_the_whole_body_naming_index_and_field(app, post_events, mutate, field):
    bad = event("bad")
    mutate(bad)
    response = post_events({"events": [event("good"), bad]})
    assert response.status_code == 422
    body = response.get_json()
    assert body["error"] == "invalid events"
    assert {"index": 1, "field": field} == {k: body["problems"][0][k] for k in ("index", "field")}
    assert body["problems"][0]["message"]
    assert stored() == NOTHING


@pytest.mark.parametrize("name,message", [("Ja\x00ne", "must not contain the NUL character"),
                                          ("D\ud800e", "is not valid Unicode text (a lone surrogate)")])
def test_text_no_column_can_hold_is_422_saying_why(app, post_events, name, message):
    response = post_events(event(firstName=name))
    assert response.status_code == 422
    assert response.get_json()["problems"] == [{"index": 0, "field": "order.firstName", "message": message}]
    assert stored() == NOTHING


@pytest.mark.parametrize("occurred_at", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00+01:00"])
def test_a_date_out_of_range_with_a_delay_is_422_naming_occurred_at(app, post_events, occurred_at):
    make_profile(delay_minutes=5)
    response = post_events(event(occurred_at=occurred_at))
    assert response.status_code == 422
    problem = response.get_json()["problems"][0]
    assert problem["field"] == "occurred_at" and "1970" in problem["message"] and "2100" in problem["message"]
    assert stored() == NOTHING


def test_the_longest_names_and_ids_the_columns_hold_are_stored(app, post_events):
    order = dict(orderId=2**63 - 1, customerId=2**63 - 1, campaignId=2**63 - 1, firstName="f" * 120,
                 lastName="l" * 120, emailAddress="e" * 249 + "@x.com", phoneNumber="5" * 40,
                 campaignName="c" * 255, products=[{"productId": 2**63 - 1, "productName": "p" * 255}])
    assert post_events(event("x" * 120, occurred_at="2100-12-31T23:59:59Z", **order)).status_code == 202
    customer = db.session.scalars(db.select(Customer)).one()
    assert (customer.crm_customer_id, len(customer.name), len(customer.email)) == (2**63 - 1, 241, 255)
    assert len(db.session.get(Campaign, 2**63 - 1).name) == len(db.session.get(Product, 2**63 - 1).name) == 255


def post_raw(client, token, data):
    return client.post("/intake/events", data=data, content_type="application/json",
                       headers={"Authorization": f"Bearer {token}"})


def test_text_with_an_arrays_special_characters_is_stored_as_sent(app, post_events):
    """On PostgreSQL each column's values go as one array: quotes, commas, braces, backslashes,
    the word NULL and non-ASCII text come back exactly as sent, in every table."""
    odd = 'O"Brien, {Jr.} \\ NULL ümlaut'
    body = {"events": [event("a", firstName=odd, lastName="NULL", campaignName=odd, emailAddress="a,b@example.com",
                             products=[{"productId": 7, "productName": "{}"}]),
                       event('b"{,}', customerId=2, orderId=9, firstName="", campaignName="")]}
    assert post_events(body).get_json()["accepted"] == 2
    customer = db.session.scalars(db.select(Customer).where(Customer.crm_customer_id == 55821)).one()
    assert (customer.first_name, customer.last_name, customer.email) == (odd, "NULL", "a,b@example.com")
    assert db.session.get(Campaign, 259).name == odd  # the second event's empty name keeps it
    assert db.session.get(Product, 7).name == "{}"
    stored_event = db.session.scalars(db.select(Event).where(Event.event_key == 'b"{,}')).one()
    assert stored_event.order["orderId"] == 9
    assert db.session.scalars(db.select(Event).where(Event.event_key == "a")).one().order["firstName"] == odd


@pytest.mark.parametrize("data, message", [
    ("[" * 100_000, "malformed JSON: nested too deeply"),
    (json.dumps(event(extra=json.loads("[" * 31 + "]" * 31))), "JSON nested deeper than 32 levels"),
    (json.dumps(event()).replace("false", "NaN"), "malformed JSON: NaN is not JSON"),
    (json.dumps(event()).replace("false", "Infinity"), "malformed JSON: Infinity is not JSON"),
])
def test_json_nested_too_deeply_or_with_nan_is_400(app, client, intake_token, data, message):
    response = post_raw(client, intake_token, data)
    assert response.status_code == 400 and response.get_json()["error"] == message
    assert stored() == NOTHING


def test_an_order_nested_32_levels_deep_is_stored(app, client, intake_token):
    body = event(extra=json.loads("[" * 30 + "]" * 30))  # the body, its order, then 30 lists: 32 levels
    assert post_raw(client, intake_token, json.dumps(body)).status_code == 202
    assert db.session.query(Event).count() == 1


@pytest.mark.parametrize("body", [[1, 2], "text", {"events": "many"}, {"events": []}])
def test_a_body_that_is_not_an_event_or_a_list_of_events_is_422(app, post_events, body):
    response = post_events(body)
    assert response.status_code == 422 and response.get_json()["problems"]
    assert stored() == NOTHING


def test_get_is_not_allowed(app, client):
    assert client.get("/intake/events").status_code == 405


# --- group commit: bodies that arrive while one is written are written together ----------------

def _post_in_threads(app, intake_token, bodies):
    """POST each body from a thread of its own (a test client each); the answers, in order."""
    answers = [None] * len(bodies)

    def post(n):
        answers[n] = app.test_client().post("/intake/events", json=bodies[n],
                                            headers={"Authorization": f"Bearer {intake_token}"})

    threads = [threading.Thread(target=post, args=(n,)) for n in range(len(bodies))]
    for thread in threads:
        thread.start()
    return threads, answers


def test_bodies_posted_while_one_is_written_are_written_in_one_transaction_each_answered_alone(
        app, intake_token):
    make_profile(url="http://127.0.0.1:9/p")
    group = intake._group_of(app)
    bodies = [event("a"), {"events": [event("b"), event("a")]}, event("c", isTestCard=True), event("b")]
    inserts = []
    # the events' insert (on PostgreSQL after the names' upserts, in the same statement)
    counting = lambda *args: inserts.append(args[2]) if "INSERT INTO events " in args[2] else None
    sa_event.listen(db.engine, "before_cursor_execute", counting)
    try:
        with group._lock:  # another body is being written: these four queue behind it
            threads, answers = _post_in_threads(app, intake_token, bodies)
            deadline = time.monotonic() + 10
            while len(group._pending) < 4 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert len(group._pending) == 4
        for thread in threads:
            thread.join(10)
    finally:
        sa_event.remove(db.engine, "before_cursor_execute", counting)
    assert len(inserts) == 1  # one statement, one transaction, for the four bodies
    by_body = [a.get_json() for a in answers]
    assert all(a.status_code == 202 for a in answers)
    # Each answer is its body's, as if the bodies had come one after another (in some order):
    # "a" and "b" are stored once, and whichever body came second counts them as duplicates.
    assert sum(b["accepted"] for b in by_body) == 3 and sum(b["duplicates"] for b in by_body) == 2
    assert by_body[2] == {"accepted": 1, "duplicates": 0, "test_orders": 1, "deliveries": 0}
    assert sum(b["deliveries"] for b in by_body) == 2 and db.session.query(Delivery).count() == 2
    assert sorted(db.session.scalars(db.select(Event.event_key))) == ["a", "b", "c"]


def test_a_group_that_fails_is_written_again_body_by_body(app):
    written = []

    def write(bodies):
        if len(bodies) > 1:
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        written.append(bodies[0])
        return [{"accepted": len(bodies[0])}], set()

    group = intake._GroupCommit(write)
    answers = {}

    def store(n):
        with app.app_context():
            answers[n] = group.store([n] * (n + 1), 1000)

    with group._lock:
        threads = [threading.Thread(target=store, args=(n,)) for n in range(3)]
        for thread in threads:
            thread.start()
        while len(group._pending) < 3:
            time.sleep(0.01)
    for thread in threads:
        thread.join(10)
    assert answers == {0: {"accepted": 1}, 1: {"accepted": 2}, 2: {"accepted": 3}}
    assert sorted(written) == [[0], [1, 1], [2, 2, 2]]


def test_a_token_revoked_elsewhere_is_refused_within_a_second(app, post_events, intake_token):
    """Each process remembers a live token for LIVE_SECONDS; another process's revoke (here: the
    row changed behind this one's back) is seen once that has passed. This process's revoke: at once."""
    from exporter.intake import tokens

    assert post_events(event("a")).status_code == 202
    db.session.execute(db.update(IntakeToken).values(revoked_at=db.func.now()))
    db.session.commit()
    time.sleep(tokens.LIVE_SECONDS + 0.1)
    assert post_events(event("b")).status_code == 401
    assert db.session.scalars(db.select(Event.event_key)).all() == ["a"]


# --- customers come only from stored events; event ids per token (issue 21, point 3) -----------------

def customers_now():
    db.session.expire_all()
    return [(c.crm_customer_id, c.first_name, c.email) for c in db.session.scalars(db.select(Customer).order_by(Customer.id))]


def test_a_duplicate_event_leaves_its_customer_alone(app, post_events):
    assert post_events(event("evt-1")).status_code == 202
    again = post_events(event("evt-1", firstName="Mallory", emailAddress="mallory@example.com"))
    assert again.get_json() == {"accepted": 0, "duplicates": 1, "test_orders": 0, "deliveries": 0}
    assert customers_now() == [(55821, "Jane", "jane@example.com")]


def test_a_duplicate_in_a_body_with_new_events_leaves_its_customer_alone(app, post_events):
    post_events(event("evt-1"))
    body = {"events": [event("evt-1", firstName="Mallory"), event("evt-2", customerId=7, firstName="Ann")]}
    assert post_events(body).get_json() == {"accepted": 1, "duplicates": 1, "test_orders": 0, "deliveries": 0}
    assert customers_now() == [(55821, "Jane", "jane@example.com"), (7, "Ann", "jane@example.com")]


def test_a_forgotten_customers_old_event_posted_again_creates_no_customer(app, post_events):
    from exporter.flows import retention

    post_events(event("evt-1"))
    retention.forget(db.session.scalars(db.select(Customer)).one(), by="admin@example.com")
    assert post_events(event("evt-1")).get_json()["duplicates"] == 1
    assert customers_now() == [(None, "", "")]


def test_a_forgotten_customers_new_event_stores_no_personal_data(app, post_events, receiver):
    from exporter.flows import retention

    make_profile(url=receiver.url + "/p")
    post_events(event("evt-1"))
    retention.forget(db.session.scalars(db.select(Customer)).one(), by="admin@example.com")
    body = {"events": [event("evt-2", cardNumber="4012888888881881"), event("evt-3", customerId=7, firstName="Ann")]}
    assert post_events(body).get_json() == {"accepted": 2, "duplicates": 0, "test_orders": 0, "deliveries": 1}
    assert customers_now() == [(None, "", ""), (7, "Ann", "jane@example.com")]
    later = db.session.scalar(db.select(Event).where(Event.event_key == "evt-2"))
    assert later.purged_at is not None and later.card_number is None and "firstName" not in later.order
    assert "Jane" not in json.dumps(later.order) and "jane" not in json.dumps(later.order)


def test_another_token_may_use_the_same_event_id_without_touching_the_first_customer(app, post_events):
    from exporter.intake import tokens

    other = tokens.create("second crm")
    assert post_events(event("evt-1")).status_code == 202
    theirs = post_events(event("evt-1", customerId=9, firstName="Bob", emailAddress="bob@example.com"), token=other)
    assert theirs.get_json() == {"accepted": 1, "duplicates": 0, "test_orders": 0, "deliveries": 0}
    assert post_events(event("evt-1", customerId=9, firstName="Eve"), token=other).get_json()["duplicates"] == 1
    assert customers_now() == [(55821, "Jane", "jane@example.com"), (9, "Bob", "bob@example.com")]
    assert sorted((e.event_key, e.intake_token_id is not None) for e in db.session.scalars(db.select(Event))) == [
        ("evt-1", True), ("evt-1", True)]


def test_an_event_stored_before_ids_were_scoped_per_token_is_a_duplicate_for_every_token(app, post_events):
    assert post_events(event("evt-1")).status_code == 202
    db.session.execute(db.update(Event).values(intake_token_id=None))  # as the migration leaves older events
    db.session.commit()
    assert post_events(event("evt-1", firstName="Mallory")).get_json()["duplicates"] == 1
    assert customers_now() == [(55821, "Jane", "jane@example.com")]


def test_the_same_new_id_posted_at_once_by_two_processes_is_stored_once_and_counted_once(app, app_config, intake_token):
    """Two apps on one database (two web processes: each its own group commit) post the same new
    ids at the same moment: each id is stored once, its customer made from it once, and the other
    answer counts a duplicate (the insert that loses the race fails, and the retry counts it)."""
    from exporter import create_app

    other = create_app(app_config)
    barrier = threading.Barrier(2)
    answers = {}

    def post(name, an_app, n):
        barrier.wait()
        answers[name, n] = an_app.test_client().post(
            "/intake/events", json=event(f"race-{n}", customerId=1000 + n, firstName=name),
            headers={"Authorization": f"Bearer {intake_token}"})

    for n in range(10):
        threads = [threading.Thread(target=post, args=(name, an_app, n)) for name, an_app in (("A", app), ("B", other))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    with other.app_context():
        db.engine.dispose()
    for n in range(10):
        counts = [answers[name, n].get_json() for name in "AB"]
        assert sorted((c["accepted"], c["duplicates"]) for c in counts) == [(0, 1), (1, 0)], counts
    db.session.expire_all()
    stored = db.session.execute(db.select(Event.event_key, Customer.first_name).join(Customer)).all()
    assert len(stored) == 10 and len({key for key, _ in stored}) == 10
    for key, first_name in stored:  # the customer is the stored event's, never the duplicate's
        n = int(key.split("-")[1])
        winner = "A" if answers["A", n].get_json()["accepted"] else "B"
        assert first_name == winner


def test_a_profile_changed_here_routes_the_next_event_and_one_changed_elsewhere_within_a_second(
        app, post_events, monkeypatch):
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    profile = make_profile(url="http://127.0.0.1:9/p")
    assert post_events(event("first")).get_json()["deliveries"] == 1
    profile.active = False  # in this process, as the profile form does: the next event sees it
    db.session.commit()
    assert post_events(event("second")).get_json()["deliveries"] == 0
    profile.active = True
    db.session.commit()
    assert post_events(event("third")).get_json()["deliveries"] == 1
    # another process (a second web server, `exporter profiles import`) turns it off
    monkeypatch.setattr(intake, "ROUTES_SECONDS", 0.3)
    other = create_engine(db.engine.url, poolclass=NullPool)
    with other.begin() as connection:
        connection.execute(text("UPDATE profiles SET active = :off"), {"off": False})
    other.dispose()
    time.sleep(0.35)
    assert post_events(event("fourth")).get_json()["deliveries"] == 0
