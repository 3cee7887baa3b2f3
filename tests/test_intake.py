"""POST /intake/events: every answer of DESIGN §6, and what is (not) stored."""
import json

import pytest

from exporter import security
from exporter.extensions import db
from exporter.models import Campaign, Customer, Delivery, Event, HistoryEntry, IntakeToken, Product

from .factories import event, make_profile


def stored():
    return {m.__name__: db.session.query(m).count() for m in (Event, Customer, Delivery, Campaign, Product)}


NOTHING = {"Event": 0, "Customer": 0, "Delivery": 0, "Campaign": 0, "Product": 0}


def test_one_event_is_stored_with_its_customer_campaign_and_products(app, post_events):
    response = post_events(event())
    assert response.status_code == 202
    assert response.get_json() == {"accepted": 1, "duplicates": 0, "test_orders": 0, "deliveries": 0}
    customer = db.session.scalars(db.select(Customer)).one()
    assert (customer.crm_customer_id, customer.email, customer.name) == (55821, "jane@example.com", "Jane Doe")
    assert db.session.get(Campaign, 259).name == "Test Lander"
    assert db.session.get(Product, 33).name == "Keto 30ct"
    stored_event = db.session.scalars(db.select(Event)).one()
    assert stored_event.occurred_at.isoformat() == "2026-11-27T14:03:22"


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


@pytest.mark.parametrize("body", [[1, 2], "text", {"events": "many"}, {"events": []}])
def test_a_body_that_is_not_an_event_or_a_list_of_events_is_422(app, post_events, body):
    response = post_events(body)
    assert response.status_code == 422 and response.get_json()["problems"]
    assert stored() == NOTHING


def test_get_is_not_allowed(app, client):
    assert client.get("/intake/events").status_code == 405
