"""The Audit page, an entry's before and after, and the History of a profile: a change made by
the form, by the profiles JSON upload and by the command line each show who and how; secrets
never show; the filters, and a bad filter's 400 beside its field; tokens, campaigns, products,
Retry now, Retry all and cancel."""
import getpass
import io
import json
import re
import time
from html import unescape

from exporter import security
from exporter.extensions import db
from exporter.models import AuditEntry, Delivery, Profile

from ..factories import event, make_profile, profile_data
from ..pages import error_beside, text
from .test_deliveries import closed_port_url, deliveries, now_iso
from .test_profile_edit import FTP_SETTINGS, general, type_settings


def rows(response):
    """The Audit page's rows as a user reads them: (who, via, action, target, what)."""
    html = text(response)
    table = re.search(r'<table class="audit-entries">(.*?)</table>', html, re.S).group(1)
    found = []
    for row in re.findall(r'<tr data-id="\d+">(.*?)</tr>', table, re.S):
        row = re.sub(r'<br><small class="changes">.*?</small>', "", row, flags=re.S)  # changes(): apart
        cells = [unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        found.append(tuple(cells[1:6]) if len(cells) == 7 else tuple(cells[1:4]) + ("", cells[4]))
    return found


def changes(response):
    """What each row of the list says changed, under its summary."""
    return [unescape(words) for words in re.findall(r'<small class="changes">(.*?)</small>', text(response))]


def test_before_and_after_read_as_the_form_shows_them(logged_in):
    profile = make_profile()
    data = {**general(profile, window_start="08:00", window_end="20:00", window_days=["mon", "tue", "wed", "thu", "fri", "sat", "sun"]),
            "settings-method": "POST_JSON"}
    assert logged_in.post(f"/profiles/{profile.id}", data=data).status_code == 302
    assert changes(logged_in.get("/audit/"))[0] == "Method GET (query string) → POST (JSON); From — → 08:00; To — → 20:00"
    page = text(logged_in.get(f"/audit/{entry(action='profile.update').id}"))
    for key, label, old, new in (("window_start", "From", "", "08:00"), ("settings.method", "Method",
                                                                          "GET (query string)", "POST (JSON)")):
        row = re.search(rf'<tr class="changed" data-key="{key}">(.*?)</tr>', page, re.S).group(1)
        assert row.strip().startswith(f'<th scope="row">{label} <span class="changed-mark">')
        assert re.findall(r"<pre>(.*?)</pre>", row) == [old, new]
    assert "480" not in page and "POST_JSON" not in page


def entry(**where):
    db.session.expire_all()
    return db.session.scalars(db.select(AuditEntry).filter_by(**where).order_by(AuditEntry.id.desc())).first()


def upload(client, body):
    return client.post("/profiles/import", data={"file": (io.BytesIO(json.dumps(body).encode()), "p.json")},
                       content_type="multipart/form-data")


def test_the_audit_pages_need_a_login(client, app):
    for url in ("/audit/", "/audit/1", "/audit/profiles/1"):
        response = client.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_a_change_by_the_form_shows_who_and_what_changed(logged_in):
    profile = make_profile()
    response = logged_in.post(f"/profiles/{profile.id}", data=general(profile, delay_minutes="15"))
    assert response.status_code == 302
    assert rows(logged_in.get("/audit/"))[0] == (
        "admin@example.com", "web form", "profile.update", "Call center partials", "General Settings saved")
    assert changes(logged_in.get("/audit/"))[0] == "Export Delay (minutes) 0 → 15"
    e = entry(action="profile.update")
    page = text(logged_in.get(f"/audit/{e.id}"))
    changed = re.findall(r'<tr class="changed" data-key="([^"]+)">', page)
    assert changed == ["delay_minutes"]
    row = re.search(r'<tr class="changed" data-key="delay_minutes">(.*?)</tr>', page, re.S).group(1)
    assert re.findall(r"<pre>(.*?)</pre>", row) == ["0", "15"]
    assert 'data-key="mappings"' in page and 'data-key="routes"' in page  # the whole profile, unchanged rows too


def test_a_change_by_the_upload_shows_as_the_upload(logged_in):
    make_profile(delay_minutes=1)
    response = upload(logged_in, {"version": 1, "profiles": [profile_data(delay_minutes=7)]})
    assert response.status_code == 302
    assert rows(logged_in.get("/audit/"))[0] == (
        "admin@example.com", "profiles JSON upload", "profile.import", "Call center partials",
        "Updated by the profiles JSON")
    e = entry(action="profile.import", via="upload")
    assert json.loads(json.dumps(e.after))["delay_minutes"] == 7 and e.before["delay_minutes"] == 1


def test_a_change_by_the_command_line_shows_as_the_command_line(logged_in, app, tmp_path):
    make_profile()
    path = tmp_path / "profiles.json"
    path.write_text(json.dumps({"version": 1, "profiles": [profile_data(active=False)]}))
    assert app.test_cli_runner().invoke(args=["profiles", "import", str(path)]).exit_code == 0
    assert rows(logged_in.get("/audit/"))[0] == (
        f"cli:{getpass.getuser()}", "command line", "profile.import", "Call center partials",
        "Updated by the profiles JSON")
    page = text(logged_in.get(f"/audit/{entry(via='cli').id}"))
    assert re.findall(r'<tr class="changed" data-key="([^"]+)">', page) == ["active"]


def test_mappings_and_routes_changes_each_have_an_entry(logged_in):
    profile = make_profile()
    first = profile.mappings[0]
    logged_in.post(f"/profiles/{profile.id}/mappings", data={"export_name": "last_name", "field": "lastName"})
    logged_in.post(f"/profiles/{profile.id}/mappings/{first.id}/down")
    logged_in.post(f"/profiles/{profile.id}/mappings/{first.id}/delete")
    logged_in.post(f"/profiles/{profile.id}/routes/new", data={"customer_types": ["decline"]})
    actions = [(r[2], r[4]) for r in rows(logged_in.get("/audit/"))]
    assert actions[:4] == [("route.add", "Route added"), ("mapping.delete", "Mapping 'first_name' deleted"),
                           ("mapping.move", "Mapping 'first_name' moved down"),
                           ("mapping.add", "Mapping 'last_name' added")]
    moved = entry(action="mapping.move")
    assert [m["export_name"] for m in moved.after["mappings"]][:2] == ["order_date", "first_name"]
    route = entry(action="route.add")
    assert route.after["routes"][-1] == {"customer_types": ["decline"], "campaigns": [], "products": []}


def test_secrets_never_show_on_the_audit_pages(logged_in):
    profile = make_profile(name="Nightly", export_type="ftp", settings={**FTP_SETTINGS, "password": "first-pass"})
    data = general(profile, **type_settings("ftp", {**FTP_SETTINGS, "password": "second-pass"}))
    assert logged_in.post(f"/profiles/{profile.id}", data=data).status_code == 302
    db.session.expire_all()
    stored = db.session.get(Profile, profile.id).settings["password"]
    e = entry(action="profile.update")
    assert e.summary == "General Settings saved; new secret: password"
    for url in ("/audit/", f"/audit/{e.id}", f"/audit/profiles/{profile.id}", f"/profiles/{profile.id}"):
        page = text(logged_in.get(url))
        assert "first-pass" not in page and "second-pass" not in page
        assert stored not in page and security.ENCRYPTED_PREFIX not in page


def test_the_filters_narrow_the_log(logged_in, app, tmp_path):
    one = make_profile(name="One")
    make_profile(name="Two")  # recorded as the system (no request, no command)
    logged_in.post(f"/profiles/{one.id}", data=general(one, delay_minutes="3"))
    logged_in.post("/tokens/", data={"name": "CRM"})
    assert {r[0] for r in rows(logged_in.get("/audit/"))} == {"admin@example.com", "system"}
    assert {r[0] for r in rows(logged_in.get("/audit/?who=ADMIN@"))} == {"admin@example.com"}
    assert [r[2] for r in rows(logged_in.get("/audit/?target_type=token"))] == ["token.create"]
    assert [r[2] for r in rows(logged_in.get("/audit/?action=profile.update"))] == ["profile.update"]
    assert {r[3] for r in rows(logged_in.get(f"/audit/?profile={one.id}"))} == {"One"}
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert len(rows(logged_in.get(f"/audit/?since={today}&until={today}"))) == 5  # with the login
    page = text(logged_in.get("/audit/?until=2000-01-01"))
    assert rows(logged_in.get("/audit/?until=2000-01-01")) == [] and "No entries match these filters." in page


def test_a_bad_filter_gets_a_400_beside_its_field(logged_in):
    make_profile()
    for query, field, message in (
            ("action=profile.explode", "action", "Choose an action from the list"),
            ("target_type=planet", "target_type", "Choose what changed from the list"),
            ("profile=999", "profile", "No such profile in the log"),
            ("since=27/11/2026", "since", "Give the date as YYYY-MM-DD"),
            ("since=2026-11-27&until=2026-11-01", "until", "To is before From"),
            ("who=" + "x" * 300, "who", "Who is at most 255 characters")):
        response = logged_in.get(f"/audit/?{query}")
        assert response.status_code == 400, query
        assert error_beside(response, field) == [message]
    response = logged_in.get("/audit/?page=0")
    assert response.status_code == 400 and "Page: Page starts at 1" in text(response)


def test_the_history_of_a_profile_stays_after_it_is_deleted(logged_in):
    profile = make_profile()
    other = make_profile(name="Other")
    logged_in.post(f"/profiles/{profile.id}", data=general(profile, delay_minutes="2"))
    logged_in.post(f"/profiles/{other.id}", data=general(other, delay_minutes="4"))
    edit = text(logged_in.get(f"/profiles/{profile.id}"))
    card = re.search(r'<section class="card" id="profile-history">(.*?)</section>', edit, re.S).group(1)
    assert "General Settings saved" in card and "by admin@example.com" in card
    assert f'href="/audit/profiles/{profile.id}"' in card and f'href="/deliveries/?profile={profile.id}"' in card
    history = logged_in.get(f"/audit/profiles/{profile.id}")
    assert [r[2] for r in rows(history)] == ["profile.update", "profile.import"]  # not Other's
    assert "Deliveries of this profile" in text(history)
    logged_in.post(f"/profiles/{profile.id}/delete")
    history = logged_in.get(f"/audit/profiles/{profile.id}")
    assert history.status_code == 200
    assert [r[2] for r in rows(history)] == ["profile.delete", "profile.update", "profile.import"]
    assert "History of this profile: Call center partials" in unescape(text(history))
    assert "This profile was deleted; its history stays." in text(history)
    deleted = entry(action="profile.delete")
    assert "Call center partials (deleted)" in text(logged_in.get("/audit/"))  # the Profile filter offers it
    assert [r[2] for r in rows(logged_in.get(f"/audit/?profile={profile.id}"))][0] == "profile.delete"
    page = text(logged_in.get(f"/audit/{deleted.id}"))
    assert 'data-key="mappings"' in page and "first_name" in page  # what it was, kept
    assert logged_in.get("/audit/profiles/987654").status_code == 404


def test_tokens_campaigns_and_products_are_in_the_log(logged_in):
    logged_in.post("/tokens/", data={"name": "CRM live"})
    token_id = entry(action="token.create").target_id
    logged_in.post(f"/tokens/{token_id}/revoke")
    logged_in.post("/campaigns/add-campaign", data={"campaign-crm_id": "259", "campaign-name": "Test Lander"})
    logged_in.post("/campaigns/add-product", data={"product-crm_id": "33", "product-name": "Keto 30ct"})
    assert [(r[2], r[4]) for r in rows(logged_in.get("/audit/"))] == [
        ("product.add", "Product 33 added"), ("campaign.add", "Campaign 259 added"),
        ("token.revoke", "Intake token 'CRM live' revoked"), ("token.create", "Intake token 'CRM live' created"),
        ("admin.login", "Logged in from 127.0.0.1")]
    assert entry(action="campaign.add").after == {"id": 259, "name": "Test Lander"}


def test_cancel_and_retry_now_are_in_the_log_and_link_the_delivery(logged_in, post_events, receiver):
    profile = make_profile(url=receiver.url + "/p", delay_minutes=3600)
    post_events(event(occurred_at=now_iso()))
    delivery = deliveries()[0]
    logged_in.post(f"/deliveries/{delivery.id}/cancel")
    logged_in.post(f"/deliveries/{delivery.id}/retry")
    retried, cancelled = rows(logged_in.get(f"/audit/?profile={profile.id}"))[:2]
    assert (cancelled[2], cancelled[4]) == ("delivery.cancel", "Cancelled: cancelled by admin@example.com")
    assert (retried[0], retried[2], retried[4]) == ("admin@example.com", "delivery.retry", "Retry now")
    e = entry(action="delivery.cancel")
    assert (e.before["status"], e.after["status"]) == ("scheduled", "cancelled")
    assert f'href="/deliveries/{delivery.id}"' in text(logged_in.get("/audit/?target_type=delivery"))


def test_retry_all_is_in_the_log_with_its_count(logged_in, app, post_events, run_jobs):
    app.config["RETRY_BASE_SECONDS"] = app.config["RETRY_MAX_SECONDS"] = 60
    profile = make_profile(name="Broken partner", url=closed_port_url())
    post_events({"events": [event("evt-1"), event("evt-2", customerId=7, emailAddress="john@example.com")]})
    run_jobs(until=lambda: len(deliveries(status="retrying")) == 2)
    logged_in.post(f"/deliveries/profiles/{profile.id}/retry-all")
    assert rows(logged_in.get("/audit/?action=delivery.retry_all"))[0][2:] == (
        "delivery.retry_all", "Broken partner", "Retry all: 2 retrying deliveries sent again now")
    assert entry(action="delivery.retry_all").after == {"count": 2}
    assert db.session.scalar(db.select(db.func.count()).select_from(Delivery)) == 2


def test_creating_editing_and_deleting_by_the_forms_each_have_an_entry(logged_in):
    response = logged_in.post("/profiles/new", data={"name": "Dialer", "export_type": "postback"})
    assert response.status_code == 302
    profile = db.session.scalar(db.select(Profile).where(Profile.name == "Dialer"))
    logged_in.post(f"/profiles/{profile.id}/routes/new", data={"customer_types": ["partial"]})
    route_id = db.session.scalar(db.select(Profile).where(Profile.id == profile.id)).routes[0].id
    logged_in.post(f"/profiles/{profile.id}/routes/{route_id}", data={"customer_types": ["partial", "decline"]})
    logged_in.post(f"/profiles/{profile.id}/routes/{route_id}/delete")
    assert [r[2] for r in rows(logged_in.get(f"/audit/profiles/{profile.id}"))] == [
        "route.delete", "route.edit", "route.add", "profile.create"]
    edited = entry(action="route.edit")
    assert (edited.before["routes"][0]["customer_types"], edited.after["routes"][0]["customer_types"]) == (
        ["partial"], ["partial", "decline"])
    created = entry(action="profile.create")
    assert (created.actor, created.via, created.before, created.after["export_type"]) == (
        "admin@example.com", "web", None, "postback")


def test_a_daily_file_re_run_is_in_the_log(logged_in):
    profile = make_profile(name="Nightly", export_type="ftp", settings=FTP_SETTINGS)
    response = logged_in.post(f"/files/profiles/{profile.id}/rerun", data={"date": "2026-01-05"})
    assert response.status_code == 302
    e = entry(action="file.rerun")
    assert (e.actor, e.target_name, e.summary) == ("admin@example.com", "Nightly",
                                                   "Re-run of the file of 2026-01-05: 1 file queued")
    assert e.after["date"] == "2026-01-05" and len(e.after["deliveries"]) == 1


# --- acts that change nothing stored but reach out, or open a session (issue 21, point 12) -------

def test_send_test_test_connection_and_probe_now_are_in_the_log(logged_in, receiver, tmp_path):
    from datetime import timedelta

    from exporter.models import Host, utcnow

    postback = make_profile(url=receiver.url + "/partials.php")
    assert logged_in.post(f"/profiles/{postback.id}/send-test").status_code == 200
    jsonl = make_profile(name="File drop", export_type="jsonlines", settings={"path": str(tmp_path / "out.jsonl")})
    assert logged_in.post(f"/profiles/{jsonl.id}/test-connection").status_code == 200
    db.session.add(Host(name="dialer.example.com", failures=7, down_since=utcnow() - timedelta(hours=1),
                        probe_at=utcnow() + timedelta(minutes=20)))
    db.session.commit()
    assert logged_in.post("/hosts/probe", data={"host": "dialer.example.com"}).status_code == 302

    found = [row for row in rows(logged_in.get("/audit/")) if row[0] != "system"]  # not make_profile's
    assert found[0][:4] == ("admin@example.com", "web form", "host.probe", "host dialer.example.com")
    assert "Probe now: dialer.example.com" in found[0][4]
    assert found[1][:4] == ("admin@example.com", "web form", "profile.test_connection", "File drop")
    assert found[1][4].startswith("Test connection succeeded")
    assert found[2][:4] == ("admin@example.com", "web form", "profile.send_test", "Call center partials")
    assert found[2][4].startswith(f"Send test succeeded (GET {receiver.url}/partials.php?")
    history = rows(logged_in.get(f"/audit/profiles/{postback.id}"))
    assert any("profile.send_test" in row for row in history)


def test_logins_failed_logins_and_logouts_are_in_the_log(app, client, admin):
    from flask import g

    def post(url, **data):
        g.pop("_login_user", None)
        return client.post(url, data=data)

    assert post("/login", email="admin@example.com", password="wrong password").status_code == 200
    assert post("/login", email="correct horse battery", password="x").status_code == 200  # a password in the box
    assert post("/login", email="Admin@Example.com", password="correct horse battery").status_code == 302
    assert post("/logout").status_code == 302
    entries = db.session.scalars(db.select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [(e.actor, e.via, e.action, e.target_name) for e in entries] == [
        ("admin@example.com", "web", "admin.login_failed", "admin@example.com"),
        ("anonymous", "web", "admin.login_failed", ""),
        ("admin@example.com", "web", "admin.login", "admin@example.com"),
        ("admin@example.com", "web", "admin.logout", "admin@example.com")]
    assert entries[0].summary == "Login failed from 127.0.0.1"
    assert "horse" not in " ".join(e.summary + e.target_name for e in entries)
    assert entries[3].summary == "Logged out from 127.0.0.1: every session ended"
