"""The profile edit page for partners beyond the GET postback (issue 24): the live preview shows
the exact nested JSON, XML or template body before saving, with a template error naming its
line; response rules, capture, Reversal of and Duplicate Suppression saved from the screen, bad
values refused beside the field, and audited."""
import json

from exporter.extensions import db
from exporter.models import AuditEntry, Profile

from ..factories import make_profile
from .test_profile_edit import general, reload

LEAD = [{"export_name": "lead.contact.email", "field": "emailAddress"},
        {"export_name": "lead.phones[0]", "field": "phoneNumber"},
        {"export_name": "lead.order", "field": "orderId", "format": "number"},
        {"export_name": "lead.card", "field": "cardNumber"}]


def preview(client, profile, **settings):
    form = {"name": profile.name, "export_type": "postback", "delay_minutes": "0",
            "settings-url": "https://leads.example.com/api", **{f"settings-{k}": v for k, v in settings.items()}}
    return client.post(f"/profiles/{profile.id}/preview", data=form).get_json()


def test_the_live_preview_shows_the_exact_nested_json_body_with_the_card_masked(logged_in):
    profile = make_profile(mappings=LEAD, pci_documented=True)
    answer = preview(logged_in, profile, method="POST_NESTED_JSON")
    head, body = answer["preview"].split("\n\n", 1)
    assert head.startswith("POST https://leads.example.com/api\n") and "Content-Type: application/json" in head
    lead = json.loads(body)["lead"]
    assert lead["contact"] == {"email": "jane@example.com"} and lead["phones"] == ["5552013344"]
    assert lead["order"] == 104233 and lead["card"] == "411111******1111"


def test_the_live_preview_shows_xml_and_a_template_error_naming_its_line(logged_in):
    profile = make_profile(mappings=LEAD[:2])
    xml = preview(logged_in, profile, method="POST_XML", xml_root="request")["preview"]
    assert "<request><lead><contact><email>jane@example.com</email></contact><phones>5552013344</phones></lead></request>" in xml
    template = '{\n  "email": "{{ lead.contact.email }}",\n  "oops": {{ lead.nope }}\n}'
    answer = preview(logged_in, profile, method="POST_TEMPLATE", body_template=template)
    assert answer["preview"] is None and answer["problem"] == (
        "The Postback type could not make a preview: line 3: 'dict object' has no attribute 'nope'")
    broken = preview(logged_in, profile, method="POST_TEMPLATE", body_template="{\n{{ lead.contact.email }\n}")
    assert broken["problem"].startswith("Body Template: Body Template line 2: ")


def test_rules_capture_reversal_and_suppression_save_from_the_screen_and_are_audited(logged_in):
    sales = make_profile(name="Sales")
    profile = make_profile(name="Reversals")
    form = general(profile, **{"settings-success_rule": "json", "settings-success_text": '$.status == "accepted"',
                               "settings-capture_rule": "json", "settings-capture_text": "$.lead_id",
                               "settings-reject_rule": "contains", "settings-reject_text": "duplicate",
                               "reversal_of_id": str(sales.id), "reversal_types": ["refund", "chargeback"],
                               "dedupe_days": "30", "dedupe_by": "phone"})
    response = logged_in.post(f"/profiles/{profile.id}", data=form)
    assert response.status_code == 302
    saved = reload(profile)
    assert saved.settings["success_text"] == '$.status == "accepted"' and saved.settings["capture_text"] == "$.lead_id"
    assert (saved.reversal_of_id, saved.reversal_types, saved.dedupe_days, saved.dedupe_by) == (
        sales.id, "refund,chargeback", 30, "phone")
    entry = db.session.scalars(db.select(AuditEntry).where(AuditEntry.action == "profile.update")).one()
    assert entry.after["reversal_of"] == "Sales" and entry.after["dedupe_days"] == 30
    assert entry.after["settings"]["capture_text"] == "$.lead_id"


def test_bad_partner_settings_are_refused_beside_the_field(logged_in):
    profile = make_profile(name="P")
    cases = [({"settings-success_rule": "json", "settings-success_text": "status"}, "a JSON path starts with $"),
             ({"settings-capture_rule": "regex", "settings-capture_text": "(("}, "not a regular expression"),
             ({"settings-method": "POST_TEMPLATE", "settings-body_template": "{% for %}"}, "Body Template line 1:"),
             ({"settings-xml_root": "1bad"}, "is not an XML element name"),
             ({"reversal_of_id": str(profile.id)}, "cannot be the reversal of itself"),
             ({"dedupe_days": "0"}, "from 1 to 365"),
             ({"dedupe_days": "5", "dedupe_by": "cardNumber"}, "not sensitive")]
    for changes, message in cases:
        response = logged_in.post(f"/profiles/{profile.id}", data=general(profile, **changes))
        assert response.status_code == 422, changes
        assert message in response.get_data(as_text=True), changes
    assert reload(profile).dedupe_days is None and db.session.scalar(
        db.select(Profile.reversal_of_id).where(Profile.id == profile.id)) is None
