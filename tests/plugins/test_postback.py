"""The Postback type against a real HTTP receiver on loopback: the bytes of each method's
request, header mappings and Extra Headers, Success Text, Standard Webhooks signing,
timeouts and redirects retried, and characters that must arrive intact."""
import base64
import hashlib
import hmac
import json
import time
from urllib.parse import parse_qsl, urlsplit

import pytest
from exporter_postback import PostbackType

from exporter.profiles import rules as profiles
from exporter.export_types import Batch
from exporter.extensions import db
from exporter.models import Attempt, Delivery, HistoryEntry

from ..factories import event, make_profile
from ..receiver import Reply

PAIRS = [("first_name", "Jane"), ("list_id", "400"), ("email_address", "jane@example.com")]


def send(url, pairs=PAIRS, key="17", allow_private=True, **settings):
    batch = Batch(columns=[n for n, _ in pairs], rows=[pairs], profile_name="Call center partials",
                  idempotency_key=key, allow_private_targets=allow_private)
    return PostbackType({"url": url, **settings}).send(batch)


def header_names(request):
    return [name for name, _ in request.header_items]


def utf8(header_value):
    """http.server reads header bytes as latin-1; the bytes on the wire were UTF-8."""
    return header_value.encode("latin-1").decode("utf-8")


def delivered(until_count=1):
    def check():
        return sum(d.status == "delivered" for d in db.session.scalars(db.select(Delivery))) >= until_count
    return check


def the_delivery():
    return db.session.scalars(db.select(Delivery)).one()


# --- the bytes of each method ------------------------------------------------------------------

def test_get_puts_the_pairs_in_the_query_string_and_sends_no_body(receiver):
    outcome = send(receiver.url + "/partials.php")
    assert outcome.ok and outcome.status == 200 and outcome.summary == "postback delivered (HTTP 200)"
    req = receiver.requests[0]
    assert req.raw_request_line == (
        "GET /partials.php?first_name=Jane&list_id=400&email_address=jane%40example.com HTTP/1.1")
    assert header_names(req) == ["Host", "Accept-Encoding", "User-Agent", "Idempotency-Key"]
    assert req.headers["User-Agent"] == "Exporter/0.1"
    assert req.headers["Idempotency-Key"] == "17"
    assert req.body == b""


def test_get_keeps_a_query_the_postback_url_already_has(receiver):
    send(receiver.url + "/add_lead.php?source=test&function=add_lead")
    assert receiver.requests[0].path == (
        "/add_lead.php?source=test&function=add_lead&first_name=Jane&list_id=400&email_address=jane%40example.com")


def test_post_form_encodes_the_pairs_in_the_body(receiver):
    outcome = send(receiver.url + "/leads", method="POST")
    assert outcome.ok
    req = receiver.requests[0]
    body = b"first_name=Jane&list_id=400&email_address=jane%40example.com"
    assert req.raw_request_line == "POST /leads HTTP/1.1"
    assert req.header_items[2:] == [
        ("User-Agent", "Exporter/0.1"), ("Content-Type", "application/x-www-form-urlencoded"),
        ("Idempotency-Key", "17"), ("Content-Length", str(len(body)))]
    assert req.body == body
    assert outcome.request_body == body.decode()


def test_post_json_sends_one_object_of_the_pairs_in_mapping_order(receiver):
    pairs = [("zeta", "1"), ("alpha", "2"), ("list_id", "400")]
    outcome = send(receiver.url + "/leads", pairs=pairs, method="POST_JSON")
    assert outcome.ok
    req = receiver.requests[0]
    assert req.raw_request_line == "POST /leads HTTP/1.1"
    assert req.headers["Content-Type"] == "application/json"
    assert req.body == b'{"zeta": "1", "alpha": "2", "list_id": "400"}'
    assert list(json.loads(req.body)) == ["zeta", "alpha", "list_id"]
    assert req.headers["Content-Length"] == str(len(req.body))


# --- headers --------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["GET", "POST", "POST_JSON"])
def test_header_mappings_become_request_headers_not_parameters(receiver, method):
    pairs = [("header:X-Api-Key", "k-123"), ("first_name", "Jane"), ("header:X-Campaign", "259")]
    outcome = send(receiver.url + "/leads", pairs=pairs, method=method)
    assert outcome.ok
    req = receiver.requests[0]
    assert req.headers["X-Api-Key"] == "k-123" and req.headers["X-Campaign"] == "259"
    sent = req.path + req.body.decode()
    assert "first_name" in sent and "k-123" not in sent and "header" not in sent and "X-Campaign" not in sent


def test_a_header_mapping_that_is_no_header_name_fails_without_sending(receiver):
    outcome = send(receiver.url + "/leads", pairs=[("header:X Api Key", "k"), ("first_name", "Jane")])
    assert not outcome.ok
    assert outcome.error == "Export Name 'header:X Api Key': 'X Api Key' is not a valid header name"
    assert receiver.requests == []


def test_extra_headers_go_with_every_request_and_credentials_are_masked_in_the_log(receiver):
    outcome = send(receiver.url + "/leads", method="POST",
                   headers="X-Partner: acme\r\n\r\nAuthorization: Bearer s3cr3t-t0ken\nContent-Type: text/plain")
    req = receiver.requests[0]
    assert req.headers["X-Partner"] == "acme"
    assert req.headers["Authorization"] == "Bearer s3cr3t-t0ken"
    assert req.headers["Content-Type"] == "text/plain"  # a line may override the method's default
    assert outcome.request_headers["Authorization"] == "****"
    assert outcome.request_headers["X-Partner"] == "****"  # every Extra Header is a secret (issue 9)


@pytest.mark.parametrize("text, error", [
    ("X-Partner acme", "line 1: expected 'Name: value'"),
    ("X-Ok: 1\nBad Name: x", "line 2: 'Bad Name' is not a valid header name"),
    (": x", "line 1: expected 'Name: value'"),
    ("Content-Length: 5", "line 1: Content-Length is set by Exporter"),
    ("webhook-signature: v1,forged", "line 1: webhook-signature is set by Exporter"),
    ("X-Bell: a\x07b", "line 1: the value of X-Bell has a control character"),
])
def test_extra_headers_are_validated_line_by_line(text, error):
    errors = profiles.check_settings(PostbackType, {"url": "https://example.com/p", "headers": text})
    assert errors == {"headers": error}


@pytest.mark.parametrize("settings, field, error", [
    ({}, "url", "Postback URL is required"),
    ({"url": "ftp://example.com/x"}, "url", "Postback URL must be an http:// or https:// URL"),
    ({"url": "https://example.com/p", "method": "PUT"}, "method", "Not a valid choice."),
    ({"url": "https://example.com/p", "timeout": "0"}, "timeout", "between 1 and 120 seconds"),
    ({"url": "https://example.com/p", "timeout": "soon"}, "timeout", "Not a valid integer value."),
    ({"url": "https://example.com/p", "signing_secret": "whsec_not base64!"}, "signing_secret",
     "a whsec_ secret must be base64 after the prefix"),
])
def test_settings_form_names_the_bad_field(settings, field, error):
    assert profiles.check_settings(PostbackType, settings) == {field: error}


def test_good_settings_pass_and_a_blank_timeout_means_15_seconds():
    settings = {"url": "https://example.com/p", "method": "POST_JSON", "timeout": "", "success_text": "SUCCESS",
                "headers": "X-Partner: acme", "signing_secret": "whsec_" + base64.b64encode(b"k" * 24).decode()}
    assert profiles.check_settings(PostbackType, settings) == {}
    assert PostbackType({"url": "https://example.com/p", "timeout": ""}).timeout == 15


# --- signing: an independent implementation of Standard Webhooks verification ------------------

def verify_standard_webhook(secret, headers, body, tolerance=300):
    """What a receiver does (standardwebhooks.com), written here without the plugin's code."""
    key = base64.b64decode(secret[len("whsec_"):]) if secret.startswith("whsec_") else secret.encode("utf-8")
    msg_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance:
        return False
    content = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest())
    for candidate in headers["webhook-signature"].split(" "):
        version, _, sig = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(sig.encode(), expected):
            return True
    return False


WHSEC = "whsec_" + base64.b64encode(b"0123456789abcdef0123").decode()  # as Standard Webhooks libraries make them


@pytest.mark.parametrize("method", ["GET", "POST", "POST_JSON"])
@pytest.mark.parametrize("secret", ["a plain shared secret", WHSEC])
def test_signed_requests_verify_and_one_changed_body_byte_does_not(receiver, method, secret):
    send(receiver.url + "/hook", method=method, signing_secret=secret, key="4711")
    req = receiver.requests[0]
    assert req.headers["webhook-id"] == "4711"
    assert req.headers["webhook-signature"].startswith("v1,")
    assert verify_standard_webhook(secret, req.headers, req.body)
    if method == "GET":
        assert req.body == b""  # a GET signs the empty string: the query is not covered
        assert not verify_standard_webhook(secret, req.headers, b" ")
    else:
        changed = bytearray(req.body)
        changed[5] ^= 0x01
        assert not verify_standard_webhook(secret, req.headers, bytes(changed))
    other_key = "whsec_" + base64.b64encode(b"another key entirely").decode() if "whsec_" in secret else "other"
    assert not verify_standard_webhook(other_key, req.headers, req.body)
    forged = dict(req.headers, **{"webhook-timestamp": str(int(req.headers["webhook-timestamp"]) + 1)})
    assert not verify_standard_webhook(secret, forged, req.body)


def test_unsigned_requests_carry_no_webhook_headers(receiver):
    send(receiver.url + "/hook", method="POST")
    assert not [n for n in header_names(receiver.requests[0]) if n.lower().startswith("webhook-")]


def test_signing_secret_is_encrypted_at_rest_and_masked_in_the_attempt_log(app, post_events, receiver, run_jobs):
    secret = "shh-very-secret-42"
    profile = make_profile(url=receiver.url + "/hook", settings={"url": receiver.url + "/hook", "method": "POST",
                                                                 "signing_secret": secret})
    assert profile.settings["signing_secret"].startswith("enc:")
    assert secret not in json.dumps(profile.settings)
    post_events(event())
    run_jobs(until=delivered())
    req = receiver.requests[0]
    delivery = the_delivery()
    assert req.headers["webhook-id"] == str(delivery.id)  # the idempotency key, the same on every try
    assert verify_standard_webhook(secret, req.headers, req.body)
    attempt = delivery.attempts[0]
    logged = json.dumps([attempt.target, attempt.request_headers, attempt.request_body, attempt.error])
    assert secret not in logged


# --- Success Text, timeouts and redirects: failures that are retried -----------------------------

def test_success_text_missing_is_a_failure_retried_until_the_answer_has_it(app, post_events, receiver, run_jobs):
    receiver.script = [Reply(200, "ERROR: lead rejected, list 400 is full")]
    receiver.default = Reply(200, "SUCCESS: lead added - 5551234")
    make_profile(settings={"url": receiver.url + "/non_agent_api.php", "method": "GET", "success_text": "SUCCESS"})
    post_events(event())
    run_jobs(until=delivered(), timeout=20)
    first, second = the_delivery().attempts
    assert (first.ok, first.status) == (False, 200)
    assert first.error == "response does not contain the Success Text 'SUCCESS'"
    assert first.response_body == "ERROR: lead rejected, list 400 is full"
    assert second.ok and second.response_body.startswith("SUCCESS")
    assert [h.message for h in db.session.scalars(db.select(HistoryEntry))] == [
        "Export profile 'Call center partials' fired: postback delivered (HTTP 200)"]


def test_a_slow_receiver_times_out_at_the_profile_timeout_and_is_retried(app, post_events, receiver, run_jobs):
    receiver.script = [Reply(200, "late", delay=2.5)]
    make_profile(settings={"url": receiver.url + "/slow", "method": "GET", "timeout": 1})
    post_events(event())
    run_jobs(until=delivered(), timeout=20)
    first, second = the_delivery().attempts
    assert not first.ok and first.status is None
    host = receiver.url.split("//")[1]
    assert first.error.splitlines() == [f"timed out after 1 s waiting for {host} to answer",
                                        first.error.splitlines()[1]]
    assert first.error.splitlines()[1].startswith("ReadTimeout: ")
    assert 1000 <= first.elapsed_ms < 2400
    assert second.ok and second.status == 200


def test_a_redirect_is_not_followed_and_its_location_is_logged_then_retried(app, post_events, receiver, run_jobs):
    receiver.script = [Reply(302, "", headers={"Location": "https://moved.example.com/new-endpoint"})]
    make_profile(settings={"url": receiver.url + "/old", "method": "POST"})
    post_events(event())
    run_jobs(until=delivered(), timeout=20)
    first, second = the_delivery().attempts
    assert (first.ok, first.status) == (False, 302)
    assert first.error == "HTTP 302: redirect to https://moved.example.com/new-endpoint (not followed)"
    assert second.ok
    assert [r.path for r in receiver.requests] == ["/old", "/old"]  # never to the Location


def test_retry_after_is_read_from_seconds_or_an_http_date(receiver):
    receiver.script = [Reply(503, "busy", headers={"Retry-After": "7"}),
                       Reply(429, "slow down", headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})]
    assert send(receiver.url + "/p").retry_after == 7.0
    assert send(receiver.url + "/p").retry_after == 0.0  # a date in the past: now


def test_an_unreadable_retry_after_is_ignored(receiver):
    receiver.script = [Reply(503, headers={"Retry-After": v}) for v in ("nan", "inf", "soon")]
    assert [send(receiver.url + "/p").retry_after for _ in range(3)] == [None, None, None]


def test_a_private_target_is_refused_unless_allowed(receiver):
    outcome = send(receiver.url + "/p", allow_private=False)
    assert not outcome.ok and "private address" in outcome.error
    assert receiver.requests == []


# --- characters that must arrive intact, end to end ---------------------------------------------

@pytest.mark.parametrize("method", ["GET", "POST", "POST_JSON"])
def test_unicode_and_reserved_characters_arrive_intact(app, post_events, receiver, run_jobs, method):
    mappings = [{"export_name": "first_name", "field": "firstName"},
                {"export_name": "last_name", "field": "lastName"},
                {"export_name": "a&b=c", "field": "static", "static_value": "100% sure?"},
                {"export_name": "header:X-Customer", "field": "firstName"}]
    make_profile(settings={"url": receiver.url + "/leads?src=crm", "method": method}, mappings=mappings)
    post_events(event(firstName="José & Co", lastName="a+b=c?d#e/f"))
    run_jobs(until=delivered())
    req = receiver.requests[0]
    if method == "GET":
        assert req.body == b""
        received = parse_qsl(urlsplit(req.path).query, keep_blank_values=True, strict_parsing=True)
    elif method == "POST":
        received = parse_qsl(req.body.decode("ascii"), keep_blank_values=True, strict_parsing=True)
        received = [("src", "crm")] + received
        assert urlsplit(req.path).query == "src=crm"
    else:
        received = [("src", "crm")] + list(json.loads(req.body.decode("utf-8")).items())
    assert received == [("src", "crm"), ("first_name", "José & Co"), ("last_name", "a+b=c?d#e/f"),
                        ("a&b=c", "100% sure?")]
    assert utf8(req.headers["X-Customer"]) == "José & Co"
    attempt = db.session.scalars(db.select(Attempt)).one()
    assert attempt.request_headers["X-Customer"] == "José & Co"
