"""Partners beyond the GET postback, end to end (intake, a real worker, a real receiver on
loopback answering as each kind of partner does): a JSON lead API that nests the lead and gives
back its id, a TUNE-style text answer, an XML dialer, 200 with an error inside, and a duplicate
rejection that ends the retries with status rejected."""
import json
import xml.etree.ElementTree as ET

from exporter.extensions import db
from exporter.models import Delivery, HistoryEntry

from ..factories import event, make_profile
from ..receiver import Reply, json_lead, tune, xml_lead

LEAD_MAPPINGS = [
    {"export_name": "lead.contact.first_name", "field": "firstName"},
    {"export_name": "lead.contact.email", "field": "emailAddress"},
    {"export_name": "lead.phones[0]", "field": "phoneNumber"},
    {"export_name": "lead.order_id", "field": "orderId", "format": "number"},
    {"export_name": "lead.test", "field": "static", "static_value": "no", "format": "boolean"},
]
JSON_API = {"method": "POST_NESTED_JSON", "success_rule": "json", "success_text": '$.status == "accepted"',
            "reject_rule": "json", "reject_text": '$.reason == "duplicate"',
            "capture_rule": "json", "capture_text": "$.lead_id"}


def the_delivery():
    return db.session.scalars(db.select(Delivery)).one()


def history():
    return [h.message for h in db.session.scalars(db.select(HistoryEntry).order_by(HistoryEntry.id))]


def finished(check=lambda d: d.status in Delivery.FINISHED):
    return lambda: all(check(d) for d in db.session.scalars(db.select(Delivery))) and db.session.scalar(
        db.select(db.func.count()).select_from(Delivery)) > 0


def test_a_json_lead_api_gets_nested_json_and_its_lead_id_reaches_the_history(app, post_events, receiver, run_jobs):
    receiver.default = json_lead("accepted", lead_id=88213)
    make_profile(name="Lead API", settings={"url": receiver.url + "/leads", **JSON_API}, mappings=LEAD_MAPPINGS)
    post_events(event())
    run_jobs(until=finished())
    req = receiver.requests[0]
    assert req.headers["Content-Type"] == "application/json"
    assert json.loads(req.body) == {"lead": {"contact": {"first_name": "Jane", "email": "jane@example.com"},
                                             "phones": ["5552013344"], "order_id": 104233, "test": False}}
    delivery = the_delivery()
    assert (delivery.status, delivery.captured_id) == ("delivered", "88213")
    assert history() == ["Export profile 'Lead API' fired: postback delivered (HTTP 200), partner id 88213"]


def test_a_duplicate_rejection_ends_the_retries_with_status_rejected(app, post_events, receiver, run_jobs, client, logged_in):
    receiver.default = json_lead("rejected", reason="duplicate")
    make_profile(name="Lead API", settings={"url": receiver.url + "/leads", **JSON_API}, mappings=LEAD_MAPPINGS)
    post_events(event())
    run_jobs(until=finished())
    delivery = the_delivery()
    assert (delivery.status, delivery.attempt_count) == ("rejected", 1)
    assert delivery.last_error == "rejected by the partner: duplicate"
    assert history() == ["Export profile 'Lead API' rejected by the partner: duplicate"]
    run_jobs()
    assert len(receiver.requests) == 1  # never retried
    page = client.get(f"/deliveries/{delivery.id}").get_data(as_text=True)
    assert "rejected by the partner: duplicate" in page and 'id="rejected"' in page
    listed = client.get("/deliveries/?status=rejected").get_data(as_text=True)
    assert f"/deliveries/{delivery.id}" in listed
    assert 'data-status="rejected"' in client.get("/").get_data(as_text=True)  # the dashboard counts it


def test_a_tune_style_answer_is_judged_by_its_text_and_the_err_msg_shown_in_plain_words(
        app, post_events, receiver, run_jobs, client, logged_in):
    receiver.script = [tune(False, err_msg="Offer paused")]
    receiver.default = tune(True, conversion_id="991")
    make_profile(name="Network", settings={
        "url": receiver.url + "/aff_lsr", "method": "GET", "success_rule": "regex", "success_text": r"success=true",
        "capture_rule": "regex", "capture_text": r"conversion_id=(\d+)"})
    post_events(event())
    run_jobs(until=lambda: receiver.requests and the_delivery().status == "retrying")
    delivery = the_delivery()
    assert delivery.last_error == "not accepted by the partner: Offer paused"
    assert "not accepted by the partner: Offer paused" in client.get(f"/deliveries/{delivery.id}").get_data(as_text=True)
    client.post(f"/deliveries/{delivery.id}/retry")
    run_jobs(until=finished(), timeout=20)
    assert (the_delivery().status, the_delivery().captured_id) == ("delivered", "991")
    assert "991" in client.get(f"/deliveries/{delivery.id}").get_data(as_text=True)


def test_an_xml_dialer_gets_xml_and_is_judged_by_xpath(app, post_events, receiver, run_jobs):
    receiver.script = [xml_lead("error", error="Bad zip")]
    receiver.default = xml_lead("ok", lead_id="77")
    make_profile(name="Dialer", settings={
        "url": receiver.url + "/dialer", "method": "POST_XML", "xml_root": "request",
        "success_rule": "xpath", "success_text": '/response/status == "ok"',
        "capture_rule": "xpath", "capture_text": ".//lead/@id"},
        mappings=[{"export_name": "@list", "field": "static", "static_value": "400"},
                  {"export_name": "lead.name", "field": "firstName"},
                  {"export_name": "lead.email", "field": "emailAddress"}])
    post_events(event(firstName="Jane & <Joe>"))
    run_jobs(until=lambda: receiver.requests and the_delivery().status == "retrying")
    assert the_delivery().last_error == "not accepted by the partner: Bad zip"
    root = ET.fromstring(receiver.requests[0].body)
    assert receiver.requests[0].headers["Content-Type"] == "application/xml"
    assert (root.tag, root.get("list"), root.find("lead/name").text) == ("request", "400", "Jane & <Joe>")
    db.session.execute(db.update(Delivery).values(due_at=db.func.current_timestamp()))
    db.session.commit()
    run_jobs(until=finished(), timeout=20)
    assert the_delivery().captured_id == "77"


def test_200_with_an_error_inside_is_retried_until_it_succeeds(app, post_events, receiver, run_jobs):
    receiver.script = [Reply(200, '{"error": "database busy, try later"}')]
    receiver.default = json_lead("accepted", lead_id=5)
    make_profile(name="Lead API", settings={"url": receiver.url + "/leads", **JSON_API}, mappings=LEAD_MAPPINGS)
    post_events(event())
    run_jobs(until=lambda: receiver.requests and the_delivery().status == "retrying")
    assert the_delivery().last_error == "not accepted by the partner: database busy, try later"
    db.session.execute(db.update(Delivery).values(due_at=db.func.current_timestamp()))
    db.session.commit()
    run_jobs(until=finished(), timeout=20)
    assert (the_delivery().status, the_delivery().captured_id) == ("delivered", "5")


def test_a_partner_that_refuses_a_repeated_email_is_answered_per_request(app, post_events, receiver, run_jobs):
    seen = set()

    def partner(request):
        email = json.loads(request.body)["lead"]["contact"]["email"]
        if email in seen:
            return json_lead("rejected", reason="duplicate")
        seen.add(email)
        return json_lead("accepted", lead_id=len(seen))

    receiver.answer = partner
    make_profile(name="Lead API", settings={"url": receiver.url + "/leads", **JSON_API}, mappings=LEAD_MAPPINGS)
    post_events({"events": [event("e1", customerId=1, orderId=1), event("e2", customerId=2, orderId=2)]})
    run_jobs(until=finished())
    assert sorted(d.status for d in db.session.scalars(db.select(Delivery))) == ["delivered", "rejected"]
