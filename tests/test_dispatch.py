"""Events in, exports out: intake to a real HTTP receiver through real RQ workers."""
from exporter.extensions import db
from exporter.models import Delivery, HistoryEntry

from .factories import event, make_profile


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
    from .receiver import Reply

    receiver.script = [Reply(500), Reply(503), Reply(502)]
    make_profile(url=receiver.url + "/p")
    post_events(event())
    run_jobs(until=lambda: db.session.scalars(db.select(Delivery)).one().status == "delivered", timeout=30)
    assert len(receiver.requests) == 4
    delivery = db.session.scalars(db.select(Delivery)).one()
    assert [a.status for a in delivery.attempts] == [500, 503, 502, 200]
    assert db.session.scalars(db.select(HistoryEntry)).all()[0].message.endswith("(HTTP 200)")
    assert len(db.session.scalars(db.select(HistoryEntry)).all()) == 1
