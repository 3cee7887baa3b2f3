"""Reversal postbacks end to end: a sale exported to an affiliate network that gives back a
conversion id, then its refund, which goes to the reversal profile ("Reversal of") with the
sale's captured id, send time and click id; an order never exported gets no reversal and the
history says why. And duplicate suppression: the same customer is not sent twice within N days,
whether the second comes through intake or Send past events."""
from datetime import timedelta
from urllib.parse import parse_qsl, urlsplit

from exporter.extensions import db
from exporter.flows import replay
from exporter.models import Delivery, Event, HistoryEntry, Profile, utcnow
from exporter.profiles import as_code

from ..factories import event, profile_data
from ..receiver import Reply, tune

SALE = profile_data(name="Network sales", routes=[{"customer_types": ["new_sale"], "campaigns": [259], "products": []}],
                    mappings=[{"export_name": "click_id", "field": "affId"},
                              {"export_name": "amount", "field": "totalAmount"}])


def reversal(url, **extra):
    return profile_data(name="Network reversals", routes=[], reversal_of="Network sales",
                        reversal_types=["refund", "chargeback"], settings={"url": url, "method": "GET"},
                        mappings=[{"export_name": "transaction_id", "field": "original.captured_id"},
                                  {"export_name": "click", "field": "original.click_id"},
                                  {"export_name": "sold_at", "field": "original.sent_at"},
                                  {"export_name": "type", "field": "eventType"}], **extra)


def history():
    return [h.message for h in db.session.scalars(db.select(HistoryEntry).order_by(HistoryEntry.id))]


def query(request):
    return dict(parse_qsl(urlsplit(request.path).query))


def settle(run_jobs, count):
    run_jobs(until=lambda: db.session.scalar(db.select(db.func.count()).select_from(Delivery).where(
        Delivery.status.in_(Delivery.FINISHED))) >= count)


def test_a_refund_reverses_the_sale_with_the_sales_captured_id(app, post_events, receiver, run_jobs):
    receiver.default = tune(True, conversion_id="88213")
    sale = dict(SALE, settings={"url": receiver.url + "/sale", "method": "GET", "success_rule": "regex",
                                "success_text": "success=true", "capture_rule": "regex",
                                "capture_text": r"conversion_id=(\d+)"})
    as_code.import_all({"version": 2, "profiles": [sale, reversal(receiver.url + "/reverse")]})
    post_events(event("sale-1", "new_sale", affId="click-77", totalAmount="54.07"))
    settle(run_jobs, 1)
    post_events(event("refund-1", "refund", affId="click-77"))
    settle(run_jobs, 2)
    sale_request, refund_request = receiver.requests
    assert urlsplit(refund_request.path).path == "/reverse"
    sent = query(refund_request)
    sale_delivery = db.session.scalars(db.select(Delivery).order_by(Delivery.id)).first()
    assert sent["transaction_id"] == "88213" and sent["click"] == "click-77" and sent["type"] == "refund"
    assert sent["sold_at"] == sale_delivery.delivered_at.strftime("%Y-%m-%d %H:%M:%S")
    refund_delivery = db.session.scalars(db.select(Delivery).order_by(Delivery.id.desc())).first()
    assert refund_delivery.details["original_delivery"] == sale_delivery.id
    assert history() == ["Export profile 'Network sales' fired: postback delivered (HTTP 200), partner id 88213",
                         "Export profile 'Network reversals' fired: postback delivered (HTTP 200)"]


def test_an_order_never_exported_gets_no_reversal_and_the_history_says_why(app, post_events, receiver, run_jobs):
    as_code.import_all({"version": 2, "profiles": [dict(SALE, settings={"url": receiver.url + "/s", "method": "GET"}),
                                                   reversal(receiver.url + "/reverse")]})
    post_events(event("refund-9", "refund", orderId=999))
    settle(run_jobs, 1)
    delivery = db.session.scalars(db.select(Delivery)).one()
    assert (delivery.status, delivery.cancel_reason) == ("cancelled", "never exported by 'Network sales'")
    assert history() == ["Not reversed by 'Network reversals': order 999 was never exported by 'Network sales'"]
    assert receiver.requests == []


def test_a_reversal_waits_for_a_sale_still_being_retried(app, post_events, receiver, run_jobs):
    receiver.default = Reply(200, "ERROR: list full")  # the sale is retried, its host stays up
    as_code.import_all({"version": 2, "profiles": [dict(SALE, settings={"url": receiver.url + "/s", "method": "GET",
                                                                        "success_text": "SUCCESS"}),
                                                   reversal(receiver.url + "/reverse")]})
    post_events(event("sale-1", "new_sale"))
    run_jobs(until=lambda: receiver.requests)
    post_events(event("refund-1", "refund"))
    run_jobs(until=lambda: db.session.scalar(db.select(db.func.count()).select_from(Delivery).where(
        Delivery.status == "retrying")) == 2)
    waiting = db.session.scalars(db.select(Delivery).order_by(Delivery.id.desc())).first()
    assert waiting.last_error.startswith("waiting for the original export (delivery #")
    # The sale may have been tried again meanwhile (its retries come seconds apart in tests);
    # the reversal was not sent.
    assert {urlsplit(r.path).path for r in receiver.requests} == {"/s"}


# --- duplicate suppression -------------------------------------------------------------------------

def call_center(url, days=30, by="email"):
    return profile_data(name="Call center", settings={"url": url, "method": "GET"},
                        duplicate_suppression={"days": days, "by": by})


def test_the_same_customer_is_not_sent_twice_within_the_days(app, post_events, receiver, run_jobs):
    as_code.import_all({"version": 2, "profiles": [call_center(receiver.url + "/cc")]})
    post_events(event("p1", customerId=1, orderId=1))
    settle(run_jobs, 1)
    post_events({"events": [event("p2", customerId=2, orderId=2, emailAddress=" JANE@example.com"),
                            event("p3", customerId=3, orderId=3, emailAddress="other@example.com")]})
    settle(run_jobs, 3)
    statuses = {d.event.event_key: (d.status, d.cancel_reason) for d in db.session.scalars(db.select(Delivery))}
    assert statuses["p1"][0] == statuses["p3"][0] == "delivered"
    assert statuses["p2"][0] == "cancelled" and statuses["p2"][1].startswith(
        "duplicate: this customer was sent to this profile within 30 days (delivery #")
    assert len(receiver.requests) == 2
    assert ("Not exported to 'Call center': the same email was sent to it within the last 30 days "
            "(duplicate suppression)") in history()


def test_a_send_older_than_the_days_does_not_suppress(app, post_events, receiver, run_jobs):
    as_code.import_all({"version": 2, "profiles": [call_center(receiver.url + "/cc", days=2, by="phone")]})
    post_events(event("p1", customerId=1, orderId=1))
    settle(run_jobs, 1)
    db.session.execute(db.update(Delivery).values(delivered_at=utcnow() - timedelta(days=3)))
    db.session.commit()
    post_events(event("p2", customerId=2, orderId=2, phoneNumber="(555) 201-3344"))
    settle(run_jobs, 2)
    assert len(receiver.requests) == 2


def test_send_past_events_honours_duplicate_suppression(app, post_events, receiver, run_jobs):
    as_code.import_all({"version": 2, "profiles": [call_center(receiver.url + "/cc")]})
    post_events(event("p1", customerId=1, orderId=1))
    settle(run_jobs, 1)
    profile = db.session.scalar(db.select(Profile).where(Profile.name == "Call center"))
    profile.active = False
    db.session.commit()
    post_events(event("p2", customerId=2, orderId=2))  # stored, not routed: the profile is off
    profile.active = True
    db.session.commit()
    days = [e.occurred_at.date() for e in db.session.scalars(db.select(Event))]
    result = replay.replay(profile, min(days).isoformat(), max(days).isoformat())
    assert result.created == 1
    settle(run_jobs, 2)
    assert len(receiver.requests) == 1
    suppressed = db.session.scalars(db.select(Delivery).where(Delivery.status == "cancelled")).one()
    assert suppressed.cancel_reason.startswith("duplicate:")
