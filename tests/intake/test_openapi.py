"""The intake as documented: /intake/openapi.json (no login) describes POST /intake/events, and
schemathesis, generating bodies from that document, finds no 500 against the real endpoint;
every rejection says what was wrong, a 422 names the field of each problem."""
import collections

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from exporter import config
from exporter.intake import openapi as intake_api
from exporter.extensions import db
from exporter.models import Event

from ..factories import event


def test_the_document_is_served_without_a_login(client):
    response = client.get("/intake/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    doc = response.get_json()
    post = doc["paths"]["/intake/events"]["post"]
    assert doc["openapi"].startswith("3.1") and set(post["responses"]) >= {"202", "400", "401", "413", "415", "422"}
    event_schema = doc["components"]["schemas"]["Event"]
    assert event_schema["required"] == ["id", "type", "order"]
    assert "partial" in event_schema["properties"]["type"]["enum"]


# The document as the app serves it with the default limits (the first test checks they are the same).
DOCUMENT = intake_api.document(config.DEFAULT_INTAKE_MAX_EVENTS, config.DEFAULT_INTAKE_MAX_BYTES)
schema = schemathesis.openapi.from_dict(DOCUMENT)
# Bodies that fit the document and bodies that break it: both must get an answer, never a 500.
schema.config.generation.update(modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
SEEN = collections.Counter()


def test_the_served_document_is_the_one_schemathesis_reads(client, post_events):
    assert client.get("/intake/openapi.json").get_json() == DOCUMENT
    assert post_events(event()).status_code == 202  # the model's example, as docs/intake.md shows it


# A bounded number of generated bodies keeps the suite fast; derandomized, so a run is repeatable.
@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_generated_bodies_never_get_a_500_and_every_rejection_names_the_field(case, app, intake_token):
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {intake_token}"}  # not a generated one
    response = case.call(app=app)
    assert response.status_code < 500, (case.body, response.text)
    if case.method.upper() != "POST":  # schemathesis also tries the methods the document does not name
        assert response.status_code in (200, 405), (case.method, response.status_code)  # OPTIONS: 200
        return
    body = response.json()
    SEEN[response.status_code] += 1
    if response.status_code == 202:
        assert set(body) == {"accepted", "duplicates", "test_orders", "deliveries"}
        return
    assert response.status_code in (400, 413, 415, 422), response.status_code
    assert body["error"]
    if response.status_code == 422:
        assert body["problems"] and all(p["field"] and p["message"] for p in body["problems"]), body
    db.session.rollback()
    assert db.session.scalar(db.select(db.func.count()).select_from(Event)) >= 0


def test_the_generated_bodies_were_both_accepted_and_rejected():
    """Runs after the generated test (file order): it exercised both answers."""
    if not SEEN:
        pytest.skip("runs after the generated test only")
    assert SEEN[202] and SEEN[422], SEEN
