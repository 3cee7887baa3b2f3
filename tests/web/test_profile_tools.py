"""Send test and Test connection: one sample sent through the profile's export type, shown
with its request and response, logged as a test attempt, never in a customer's history."""
from importlib.metadata import EntryPoint
from urllib.parse import parse_qsl, urlsplit

import pytest

from exporter import export_types
from exporter.extensions import db
from exporter.models import Attempt, Delivery, HistoryEntry

from ..factories import make_profile
from ..receiver import Reply
from ..pages import text



def only_attempt():
    return db.session.scalars(db.select(Attempt)).one()


def nothing_exported():
    return (db.session.scalar(db.select(db.func.count()).select_from(Delivery)) == 0
            and db.session.scalar(db.select(db.func.count()).select_from(HistoryEntry)) == 0)


# --- Send test -----------------------------------------------------------------------------------

def test_send_test_sends_the_rendered_sample_once_and_shows_request_and_response(logged_in, receiver):
    receiver.default = Reply(200, "SUCCESS: lead 991 added")
    profile = make_profile(url=receiver.url + "/partials.php")
    response = logged_in.post(f"/profiles/{profile.id}/send-test")
    assert response.status_code == 200
    req = receiver.requests[0]
    assert len(receiver.requests) == 1
    # The sample order is the catalog's examples, through the profile's mappings in order.
    assert parse_qsl(urlsplit(req.path).query) == [
        ("first_name", "Jane"), ("order_date", "2026-11-27 14:03:22"), ("list_id", "400"),
        ("email_address", "jane@example.com"), ("campaign_number", "259")]
    assert req.headers["Idempotency-Key"].startswith("test-")
    page = text(response)
    assert "Send test: Call center partials" in page and ">succeeded<" in page
    assert f"GET {receiver.url}/partials.php?first_name=Jane&amp;order_date=" in page
    assert "Idempotency-Key: test-" in page
    assert '<strong class="response-status">200</strong>' in page
    assert "SUCCESS: lead 991 added" in page
    assert "postback delivered (HTTP 200)" in page
    assert f'href="/profiles/{profile.id}"' in page


def test_send_test_is_logged_as_a_test_attempt_without_delivery_or_history(logged_in, receiver):
    profile = make_profile(url=receiver.url + "/p")
    logged_in.post(f"/profiles/{profile.id}/send-test")
    attempt = only_attempt()
    assert (attempt.is_test, attempt.profile_id, attempt.delivery_id, attempt.ok, attempt.status) == (
        True, profile.id, None, True, 200)
    assert attempt.method == "GET" and attempt.target.startswith(receiver.url + "/p?first_name=Jane")
    assert nothing_exported()


def test_a_failing_send_test_shows_why_and_is_not_retried(logged_in, receiver, run_jobs):
    receiver.default = Reply(500, "database is down")
    profile = make_profile(url=receiver.url + "/p")
    response = logged_in.post(f"/profiles/{profile.id}/send-test")
    assert response.status_code == 200
    page = text(response)
    assert ">failed<" in page and '<p class="error attempt-error">HTTP 500</p>' in page
    assert "database is down" in page
    run_jobs()
    assert len(receiver.requests) == 1
    assert not only_attempt().ok and nothing_exported()


def test_send_test_masks_sensitive_values_and_secret_settings_as_attempts_do(logged_in, receiver):
    secret = "hush-signing-key-77"
    receiver.default = Reply(200, f"echo: secret={secret} card=4111111111111111")
    profile = make_profile(url=receiver.url + "/p", pci_documented=True,
                           settings={"url": receiver.url + "/p", "method": "POST", "signing_secret": secret},
                           mappings=[{"export_name": "cc", "field": "cardNumber"},
                                     {"export_name": "name", "field": "firstName"}])
    page = text(logged_in.post(f"/profiles/{profile.id}/send-test"))
    assert receiver.requests[0].body == b"cc=4111111111111111&name=Jane"  # the partner gets the real value
    attempt = only_attempt()
    stored = " ".join([attempt.target, attempt.request_body, attempt.response_body, str(attempt.request_headers)])
    for shown in (page, stored):
        assert "4111111111111111" not in shown and secret not in shown
    assert attempt.request_body == "cc=411111******1111&name=Jane"
    assert '<pre class="request-body">cc=411111******1111&amp;name=Jane</pre>' in page
    assert "echo: secret=**** card=411111******1111" in page


def test_send_test_through_a_third_party_type(logged_in, tmp_path):
    out = tmp_path / "partials.jsonl"
    profile = make_profile(export_type="jsonlines", settings={"path": str(out)})
    response = logged_in.post(f"/profiles/{profile.id}/send-test")
    assert response.status_code == 200 and ">succeeded<" in text(response)
    assert out.read_text(encoding="utf-8") == (
        '{"first_name": "Jane", "order_date": "2026-11-27 14:03:22", "list_id": "400", '
        '"email_address": "jane@example.com", "campaign_number": "259"}\n')
    assert f"APPEND {out}" in text(response)
    assert only_attempt().is_test and nothing_exported()


@pytest.fixture
def faulty(app):
    """The registry with a type whose send() raises and whose test_connection() returns no Outcome."""
    installed = list(app.extensions["export_types"].entries)
    extra = export_types.discover([EntryPoint("faulty", "tests.plugins.faulty_type:FaultyType", export_types.GROUP)])
    app.extensions["export_types"] = export_types.Registry(installed + extra.entries)
    return make_profile(export_type="faulty", settings={"name": "x"})


def test_a_plugin_that_raises_in_send_gives_a_failed_result_not_a_500(logged_in, faulty):
    response = logged_in.post(f"/profiles/{faulty.id}/send-test")
    assert response.status_code == 200
    assert "RuntimeError: the plugin&#39;s bug" in text(response)
    assert only_attempt().error == "RuntimeError: the plugin's bug"


def test_send_test_needs_mappings_and_an_installed_type(logged_in):
    bare = make_profile(name="Bare", mappings=[])
    response = logged_in.post(f"/profiles/{bare.id}/send-test")
    assert response.status_code == 422
    assert "Add a field mapping first" in text(response)
    gone = make_profile(name="Gone")
    gone.export_type = "crm"
    db.session.commit()
    response = logged_in.post(f"/profiles/{gone.id}/send-test")
    assert response.status_code == 409
    assert "Export type &#39;crm&#39; is not installed." in text(response)
    assert db.session.scalars(db.select(Attempt)).all() == []


def test_send_test_refuses_a_private_target_unless_allowed(logged_in, app, receiver):
    profile = make_profile(url=receiver.url + "/p")  # saved while allowed
    app.config["ALLOW_PRIVATE_TARGETS"] = False
    page = text(logged_in.post(f"/profiles/{profile.id}/send-test"))
    assert "a private address (loopback); set EXPORTER_ALLOW_PRIVATE_TARGETS=true to allow private targets" in page
    assert receiver.requests == []


# --- Test connection -------------------------------------------------------------------------------

def test_test_connection_calls_the_types_hook_and_stores_nothing(logged_in, tmp_path):
    profile = make_profile(export_type="jsonlines", settings={"path": str(tmp_path / "out.jsonl")})
    response = logged_in.post(f"/profiles/{profile.id}/test-connection")
    assert response.status_code == 200
    page = text(response)
    assert "Test connection: Call center partials" in page and ">succeeded<" in page
    assert f"{tmp_path / 'out.jsonl'} can be appended to" in page
    assert not (tmp_path / "out.jsonl").exists()
    assert db.session.scalars(db.select(Attempt)).all() == []


def test_test_connection_failing_shows_the_reason(logged_in, tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    profile = make_profile(export_type="jsonlines", settings={"path": str(folder / "out.jsonl")})
    folder.rmdir()
    page = text(logged_in.post(f"/profiles/{profile.id}/test-connection"))
    assert ">failed<" in page and f"{folder / 'out.jsonl'} cannot be written by Exporter" in page


def test_test_connection_of_a_type_without_the_hook_is_404(logged_in, receiver):
    profile = make_profile(url=receiver.url + "/p")
    assert logged_in.post(f"/profiles/{profile.id}/test-connection").status_code == 404
    assert receiver.requests == []


def test_test_connection_that_returns_no_outcome_is_reported(logged_in, faulty):
    page = text(logged_in.post(f"/profiles/{faulty.id}/test-connection"))
    assert "faulty.test_connection() returned str, not an Outcome" in page


# --- the usual guards ---------------------------------------------------------------------------------

@pytest.mark.parametrize("action", ["send-test", "test-connection"])
def test_unknown_profile_is_404(logged_in, action):
    assert logged_in.post(f"/profiles/999/{action}").status_code == 404


@pytest.mark.parametrize("action", ["send-test", "test-connection"])
def test_tools_need_a_login(client, receiver, action):
    profile = make_profile(url=receiver.url + "/p")
    response = client.post(f"/profiles/{profile.id}/{action}")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert receiver.requests == []


def test_tools_need_the_csrf_token(logged_in, app, receiver):
    profile = make_profile(url=receiver.url + "/p")
    app.config["WTF_CSRF_ENABLED"] = True
    response = logged_in.post(f"/profiles/{profile.id}/send-test")
    assert response.status_code == 400
    assert receiver.requests == []


def test_tools_only_take_post(logged_in, receiver):
    profile = make_profile(url=receiver.url + "/p")
    assert logged_in.get(f"/profiles/{profile.id}/send-test").status_code == 405
    assert receiver.requests == []
