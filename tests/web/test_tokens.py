"""Intake Tokens page: a token is shown once and opens the intake; the list shows name, created
and last used; revoking it makes the intake answer 401; a bad name gets a form error."""
import re
from html import unescape

from exporter import security
from exporter.extensions import db
from exporter.models import IntakeToken

from ..factories import event


def intake(client, token):
    return client.post("/intake/events", json=event(), headers={"Authorization": f"Bearer {token}"})


def token_rows(html):
    table = re.search(r"<table>(.*?)</table>", html, re.S).group(1)
    return [re.findall(r"<td>(.*?)</td>", row, re.S) for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)
            if "<td>" in row]


def test_tokens_page_needs_a_login(client, app):
    for method, url in (("get", "/tokens/"), ("post", "/tokens/"), ("post", "/tokens/1/revoke")):
        response = getattr(client, method)(url, data={"name": "sneaky"})
        assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert db.session.query(IntakeToken).count() == 0


def test_a_new_token_is_shown_once_and_opens_the_intake(logged_in):
    response = logged_in.post("/tokens/", data={"name": "CRM live"})
    html = response.get_data(as_text=True)
    assert "Token created. Copy it now: it is not shown again." in html
    token = re.search(r'<code id="new-token">([^<]+)</code>', html).group(1)
    assert token.startswith("exp_")
    assert token not in logged_in.get("/tokens/").get_data(as_text=True)  # once only
    stored = db.session.scalars(db.select(IntakeToken)).one()
    assert stored.name == "CRM live" and stored.token_hash == security.hash_token(token)  # kept only as a hash
    response = intake(logged_in, token)
    assert response.status_code == 202 and response.get_json()["accepted"] == 1


def test_the_list_shows_name_created_and_last_used(logged_in):
    html = logged_in.post("/tokens/", data={"name": "CRM live"}).get_data(as_text=True)
    token = re.search(r'<code id="new-token">([^<]+)</code>', html).group(1)
    created = db.session.scalars(db.select(IntakeToken)).one().created_at.strftime("%Y-%m-%d %H:%M")
    [row] = token_rows(logged_in.get("/tokens/").get_data(as_text=True))
    assert row[:4] == ["CRM live", created, "never", "active"]
    intake(logged_in, token)
    db.session.expire_all()
    used = db.session.scalars(db.select(IntakeToken)).one().last_used_at
    [row] = token_rows(logged_in.get("/tokens/").get_data(as_text=True))
    assert row[:4] == ["CRM live", created, used.strftime("%Y-%m-%d %H:%M"), "active"]


def test_revoking_a_token_closes_the_intake_to_it(logged_in):
    html = logged_in.post("/tokens/", data={"name": "old CRM"}).get_data(as_text=True)
    token = re.search(r'<code id="new-token">([^<]+)</code>', html).group(1)
    keep = re.search(r'<code id="new-token">([^<]+)</code>',
                     logged_in.post("/tokens/", data={"name": "new CRM"}).get_data(as_text=True)).group(1)
    old = db.session.scalars(db.select(IntakeToken).where(IntakeToken.name == "old CRM")).one()
    assert intake(logged_in, token).status_code == 202
    response = logged_in.post(f"/tokens/{old.id}/revoke", follow_redirects=True)
    page = unescape(response.get_data(as_text=True))
    assert "Token 'old CRM' revoked." in page
    rows = {row[0]: row[3] for row in token_rows(page)}
    assert rows == {"old CRM": "revoked", "new CRM": "active"}
    refused = intake(logged_in, token)
    assert refused.status_code == 401
    assert "intake token" in refused.get_json()["error"]
    assert intake(logged_in, keep).status_code == 202  # the other token still works


def test_revoking_an_unknown_token_is_404(logged_in):
    assert logged_in.post("/tokens/999/revoke").status_code == 404


def test_an_empty_name_gets_an_error_beside_the_field_and_no_token(logged_in):
    for name in ("", "   "):
        html = logged_in.post("/tokens/", data={"name": name}).get_data(as_text=True)
        assert '<div class="field has-error" id="field-name">' in html
        assert '<span class="error">Token Name is required</span>' in html
        assert 'id="new-token"' not in html
    assert db.session.query(IntakeToken).count() == 0


def test_too_long_a_name_gets_an_error_and_no_token(logged_in):
    html = logged_in.post("/tokens/", data={"name": "x" * 101}).get_data(as_text=True)
    assert '<div class="field has-error" id="field-name">' in html
    assert "Field cannot be longer than 100 characters." in html
    assert db.session.query(IntakeToken).count() == 0
