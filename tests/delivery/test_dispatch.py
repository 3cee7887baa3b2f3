"""Events in, exports out: intake to a real HTTP receiver through real RQ workers."""
import pytest

from exporter.extensions import db
from exporter.models import Delivery, HistoryEntry

from ..factories import claim_one, event, make_profile, occurred


def test_model_example_arrives_as_exactly_the_models_url(app, post_events, receiver, run_jobs):
    make_profile(url=receiver.url + "/partials.php")
    response = post_events(event())
    assert response.status_code == 202
    assert response.get_json() == {"accepted": 1, "duplicates": 0, "test_orders": 0, "deliveries": 1}
    run_jobs(until=lambda: len(receiver.requests) == 1)
    req = receiver.requests[0]
    assert req.method == "GET"
    assert req.path == ("/partials.php?first_name=Jane&order_date=2026-11-27+14%3A03%3A22&list_id=400"
                        "&email_address=jane%40example.com&campaign_number=259")
    delivery = db.session.scalars(db.select(Delivery)).one()
    assert req.headers["Idempotency-Key"] == str(delivery.id)
    assert delivery.status == "delivered"
    history = db.session.scalars(db.select(HistoryEntry)).one()
    assert history.message == "Export profile 'Call center partials' fired: postback delivered (HTTP 200)"
    assert history.delivery_id == delivery.id


def test_failing_receiver_is_retried_until_it_answers(app, post_events, receiver, run_jobs):
    from ..receiver import Reply

    receiver.script = [Reply(500), Reply(503), Reply(502)]
    make_profile(url=receiver.url + "/p")
    post_events(event())
    run_jobs(until=lambda: db.session.scalars(db.select(Delivery)).one().status == "delivered", timeout=30)
    assert len(receiver.requests) == 4
    delivery = db.session.scalars(db.select(Delivery)).one()
    assert [a.status for a in delivery.attempts] == [500, 503, 502, 200]
    assert db.session.scalars(db.select(HistoryEntry)).all()[0].message.endswith("(HTTP 200)")
    assert len(db.session.scalars(db.select(HistoryEntry)).all()) == 1


def test_routing_by_type_campaign_and_product(app, post_events, receiver, run_jobs):
    make_profile(name="partials 259", url=receiver.url + "/a",
                 routes=[{"customer_types": ["partial"], "campaigns": [259], "products": []}])
    make_profile(name="sales of product 41", url=receiver.url + "/b",
                 routes=[{"customer_types": ["new_sale", "upsell"], "campaigns": [], "products": [41]}])
    make_profile(name="inactive", url=receiver.url + "/c", active=False,
                 routes=[{"customer_types": ["partial"], "campaigns": [], "products": []}])
    counts = [post_events(e).get_json()["deliveries"] for e in (
        event("p259"),                                  # /a
        event("p260", campaignId=260),                  # nobody
        # sales of other customers, so that they do not convert the partial above
        event("s33", type="new_sale", customerId=2, orderId=2),  # nobody: product 33
        event("s41", type="new_sale", customerId=3, orderId=3,
              products=[{"productId": 33}, {"productId": 41}]),  # /b
        event("r41", type="refund", products=[{"productId": 41}]),                     # nobody: refund
    )]
    assert counts == [1, 0, 0, 1, 0]
    run_jobs(until=lambda: len(receiver.requests) == 2)
    assert sorted(r.path.split("?")[0] for r in receiver.requests) == ["/a", "/b"]


def test_one_delivery_per_profile_when_two_routes_match(app, post_events, receiver, run_jobs):
    make_profile(url=receiver.url, routes=[{"customer_types": ["partial"], "campaigns": [], "products": []},
                                           {"customer_types": ["partial"], "campaigns": [259], "products": [33]}])
    assert post_events(event()).get_json()["deliveries"] == 1


def test_a_delayed_delivery_is_never_sent_early(app, post_events, receiver, run_jobs):
    # MINUTE_SECONDS is 1 in tests: an Export Delay of 2 minutes is 2 seconds here.
    import time
    from datetime import datetime, timezone

    make_profile(url=receiver.url, delay_minutes=2)
    now = datetime.now(timezone.utc)
    post_events(event(occurred_at=now.isoformat()))
    run_jobs()
    assert receiver.requests == []
    delivery = db.session.scalars(db.select(Delivery)).one()
    assert delivery.status == "scheduled"
    run_jobs(until=lambda: len(receiver.requests) == 1)
    sent_at = time.time()
    assert sent_at >= now.timestamp() + 2
    assert sent_at < now.timestamp() + 6  # sent within a few seconds after it is due


def test_delay_zero_sends_at_once_and_an_old_event_is_due_now(app, post_events, receiver, run_jobs):
    make_profile(url=receiver.url, delay_minutes=5)
    post_events(event(occurred_at=occurred(days=9)))  # long past its delay
    run_jobs(until=lambda: len(receiver.requests) == 1, timeout=3)


def test_connection_refused_is_retried_and_logged(app, post_events, run_jobs):
    from exporter.delivery.queue import free_port

    make_profile(url=f"http://127.0.0.1:{free_port()}/down")
    post_events(event())
    run_jobs(until=lambda: db.session.scalars(db.select(Delivery)).one().attempt_count >= 2)
    delivery = db.session.scalars(db.select(Delivery)).one()
    assert delivery.status in ("retrying", "scheduled", "sending")
    assert "ConnectionError" in delivery.attempts[0].error
    assert "Jane" not in delivery.last_error and "/down?..." in delivery.last_error  # no personal data in errors
    assert db.session.query(HistoryEntry).count() == 0


def test_retry_after_is_honoured(app, post_events, receiver, run_jobs):
    from ..receiver import Reply

    app.config["RETRY_MAX_SECONDS"] = 3600
    receiver.script = [Reply(429, headers={"Retry-After": "120"})]
    make_profile(url=receiver.url)
    post_events(event())
    run_jobs(until=lambda: len(receiver.requests) == 1)
    delivery = db.session.scalars(db.select(Delivery)).one()
    waited = (delivery.due_at - delivery.attempts[0].started_at).total_seconds()
    assert delivery.status == "retrying" and 118 <= waited <= 122


def test_backoff_doubles_with_jitter_and_is_capped(app):
    from exporter.delivery.dispatch import backoff_seconds

    app.config.update(RETRY_BASE_SECONDS=30, RETRY_MAX_SECONDS=3600)
    assert 24 <= backoff_seconds(1) <= 36
    assert 48 <= backoff_seconds(2) <= 72
    assert 192 <= backoff_seconds(4) <= 288
    assert backoff_seconds(30) <= 3600


def test_a_partial_that_converts_is_cancelled_before_it_fires(app, post_events, receiver, run_jobs):
    make_profile(url=receiver.url, delay_minutes=60)
    post_events(event("partial-1", occurred_at="2030-01-01T00:00:00Z"))
    post_events(event("sale-1", type="new_sale", occurred_at="2030-01-01T00:05:00Z"))
    delivery = db.session.scalars(db.select(Delivery)).one()
    assert (delivery.status, delivery.cancel_reason) == ("cancelled", "converted")
    messages = [h.message for h in db.session.scalars(db.select(HistoryEntry))]
    assert messages == ["Export profile 'Call center partials' cancelled: converted"]


def test_a_body_of_sales_converts_only_the_partials_of_their_orders_and_customers_stored_before_them(app, post_events):
    make_profile(delay_minutes=60)

    def partial(key, customer, order):
        return event(key, customerId=customer, orderId=order, emailAddress=f"c{customer}@example.com")

    def sale(key, customer, order, type="new_sale"):
        return event(key, type=type, customerId=customer, orderId=order, emailAddress=f"c{customer}@example.com")

    post_events(partial("earlier", 1, 10))  # a body before: its partial converts too
    post_events({"events": [
        partial("same-order", 2, 20), partial("same-customer", 3, 30), partial("untouched", 4, 40),
        sale("sale-20", 99, 20), sale("upsell-3", 3, 31, type="upsell"), sale("sale-10", 1, 11),
        partial("after-the-sale", 3, 32),  # the customer's next lead, after the sale: it waits
        sale("refund-4", 4, 40, type="refund")]})  # a refund converts nothing
    states = {d.event.event_key: (d.status, d.cancel_reason) for d in db.session.scalars(db.select(Delivery))}
    assert states == {"earlier": ("cancelled", "converted"), "same-order": ("cancelled", "converted"),
                      "same-customer": ("cancelled", "converted"), "untouched": ("scheduled", ""),
                      "after-the-sale": ("scheduled", "")}
    messages = [h.message for h in db.session.scalars(db.select(HistoryEntry))]
    assert messages == ["Export profile 'Call center partials' cancelled: converted"] * 3


def test_partials_that_convert_are_kept_when_the_profile_says_so(app, post_events):
    make_profile(delay_minutes=60, skip_converted_partials=False)
    post_events(event("partial-1", occurred_at="2030-01-01T00:00:00Z"))
    post_events(event("sale-1", type="new_sale"))
    assert db.session.scalars(db.select(Delivery)).one().status == "scheduled"


def test_a_flushed_redis_loses_no_export(app, post_events, receiver, run_jobs):
    from exporter.delivery import dispatch
    from exporter.delivery.queue import connect

    make_profile(url=receiver.url)
    post_events(event())
    connect(app.config["REDIS_URL"]).flushdb()  # Redis loses the job between intake and send
    run_jobs()
    assert receiver.requests == []
    assert dispatch.sweep() == {"released": 0, "due": 1, "woke": True}
    run_jobs(until=lambda: len(receiver.requests) == 1)
    assert dispatch.sweep() == {"released": 0, "due": 0, "woke": False}


def test_the_sweeper_releases_a_dead_workers_claim(app, post_events, receiver, run_jobs):
    from datetime import timedelta

    from exporter.delivery import dispatch
    from exporter.models import utcnow

    make_profile(url=receiver.url)
    post_events(event())
    delivery = db.session.scalars(db.select(Delivery)).one()
    assert claim_one()  # a worker took it, then died
    run_jobs()
    assert receiver.requests == []
    assert dispatch.sweep()["released"] == 0  # not yet stale
    assert dispatch.sweep(now=utcnow() + timedelta(seconds=app.config["CLAIM_TIMEOUT_SECONDS"] + 1)) == {
        "released": 1, "due": 1, "woke": True}
    run_jobs(until=lambda: len(receiver.requests) == 1)
    db.session.refresh(delivery)
    assert delivery.status == "delivered"


def test_admin_cancel_and_retry_now(app, post_events, receiver, run_jobs):
    from exporter.delivery import dispatch

    make_profile(url=receiver.url, delay_minutes=60)
    post_events(event(occurred_at="2030-01-01T00:00:00Z"))
    delivery = db.session.scalars(db.select(Delivery)).one()
    assert dispatch.cancel(delivery, "cancelled by admin@example.com")
    assert not dispatch.cancel(delivery, "twice")
    assert dispatch.retry_now(delivery)
    run_jobs(until=lambda: len(receiver.requests) == 1)
    messages = [h.message for h in db.session.scalars(db.select(HistoryEntry).order_by(HistoryEntry.id))]
    assert messages == ["Export profile 'Call center partials' cancelled: cancelled by admin@example.com",
                        "Export profile 'Call center partials' fired: postback delivered (HTTP 200)"]


def test_a_sensitive_value_is_sent_whole_but_logged_masked(app, post_events, receiver, run_jobs):
    from ..receiver import Reply

    receiver.default = Reply(200, body="got 4012888888881881", headers={"X-Echo": "cc=4012888888881881"})
    make_profile(url=receiver.url, pci_documented=True,
                 mappings=[{"export_name": "cc", "field": "cardNumber"},
                           {"export_name": "exp", "field": "cardExpiryYear"}])
    post_events(event(cardNumber="4012888888881881", cardExpiryYear="2031"))
    run_jobs(until=lambda: len(receiver.requests) == 1)
    assert receiver.requests[0].path == "/?cc=4012888888881881&exp=2031"
    attempt = db.session.scalars(db.select(Delivery)).one().attempts[0]
    assert "4012888888881881" not in attempt.target and "401288******1881" in attempt.target
    assert "2031" not in attempt.target
    assert attempt.response_headers["X-Echo"] == "cc=401288******1881"
    assert attempt.response_body == "got 401288******1881"


def test_retry_now_never_takes_a_delivery_a_worker_is_sending(app, post_events, receiver):
    from exporter.delivery import dispatch

    make_profile(url=receiver.url)
    post_events(event())
    delivery = db.session.scalars(db.select(Delivery)).one()
    assert claim_one()
    assert not dispatch.retry_now(delivery)
    db.session.refresh(delivery)
    assert delivery.status == "sending"


def test_a_send_that_lost_its_claim_keeps_its_attempt_but_not_the_status(app, post_events, receiver):
    """The sweeper released this claim (the send outlived CLAIM_TIMEOUT) and a newer claim owns it."""
    from exporter.delivery import dispatch, record
    from exporter.export_types import Outcome
    from exporter.models import utcnow

    make_profile(url=receiver.url)
    post_events(event())
    delivery = db.session.scalars(db.select(Delivery)).one()
    first_claim = claim_one()
    app.config["CLAIM_TIMEOUT_SECONDS"] = 0
    dispatch.sweep()  # released, and claimed again by another worker
    assert claim_one()
    held = record.record(delivery, Outcome(ok=True, status=200, summary="late"), utcnow(), [], first_claim)
    db.session.refresh(delivery)
    assert not held and delivery.status == "sending" and len(delivery.attempts) == 1
    assert db.session.query(HistoryEntry).count() == 0


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "soon", None])
def test_an_unreadable_retry_after_falls_back_to_backoff(app, value):
    from exporter.delivery.dispatch import backoff_seconds

    app.config.update(RETRY_BASE_SECONDS=30, RETRY_MAX_SECONDS=3600)
    assert 24 <= backoff_seconds(1, value) <= 36


def test_a_secret_this_key_cannot_decrypt_is_a_failed_attempt_not_a_stuck_delivery(app, post_events, receiver,
                                                                                    run_jobs):
    from exporter import security

    profile = make_profile(url=receiver.url)
    profile.settings = {**profile.settings, "signing_secret": security.encrypt("another key", "whsec_x")}
    db.session.commit()
    post_events(event())
    run_jobs(until=lambda: db.session.scalars(db.select(Delivery)).one().attempt_count >= 1)
    delivery = db.session.scalars(db.select(Delivery)).one()
    assert delivery.status == "retrying" and "cannot be decrypted" in delivery.attempts[0].error
    assert receiver.requests == []


def test_a_send_uses_the_mappings_as_they_are_now(app, post_events, receiver, run_jobs):
    """Re-importing a profile between two sends changes what the next one sends."""
    from ..factories import profile_data
    from exporter.profiles import as_code as profiles_io

    make_profile(url=receiver.url, mappings=[{"export_name": "a", "field": "firstName"}])
    post_events(event("one"))
    run_jobs(until=lambda: len(receiver.requests) == 1)
    profiles_io.import_all({"version": 1, "profiles": [
        profile_data(url=receiver.url, mappings=[{"export_name": "b", "field": "lastName"}])]})
    post_events(event("two", customerId=2, orderId=2))
    run_jobs(until=lambda: len(receiver.requests) == 2)
    assert [r.path for r in receiver.requests] == ["/?a=Jane", "/?b=Doe"]


def test_a_conversion_is_one_round_trip_on_postgresql_however_many_sales_and_partials(app, post_events):
    from sqlalchemy import event as sa_event

    make_profile(delay_minutes=60)
    post_events({"events": [event(f"partial-{n}", customerId=n, orderId=n) for n in range(1, 6)]})
    sales = [event(f"sale-{n}", type="new_sale", customerId=n, orderId=100 + n) for n in range(1, 5)]
    statements = []
    count = lambda *args: statements.append(args[2])
    sa_event.listen(db.engine, "before_cursor_execute", count)
    try:
        assert post_events({"events": sales}).status_code == 202
    finally:
        sa_event.remove(db.engine, "before_cursor_execute", count)
    waiting = {d.event.event_key: d.status for d in db.session.scalars(db.select(Delivery))}
    assert waiting == {**{f"partial-{n}": "cancelled" for n in range(1, 5)}, "partial-5": "scheduled"}
    assert len(db.session.scalars(db.select(HistoryEntry)).all()) == 4
    touching = [s for s in statements if ("UPDATE deliveries" in s.replace("UPDATE deliveries AS", "UPDATE deliveries")
                                          or "FROM deliveries" in s or "INSERT INTO history_entries" in s)]
    # the partials' read, their update and the history: one statement on PostgreSQL, three on SQLite
    assert len(touching) == (1 if db.engine.dialect.name == "postgresql" else 3), touching
