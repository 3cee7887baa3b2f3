"""The Export Profiles page (the list, Profile Routing beside it, creating a profile) and the
profiles JSON download and upload, through the test client. The edit page: test_profile_edit.py."""
import io
import json
import re

import pytest

from exporter.profiles import as_code as profiles_io
from exporter import security
from exporter.extensions import db
from exporter.models import Profile

from ..factories import make_profile, profile_data
from ..pages import error_beside, text


def count_profiles():
    return db.session.scalar(db.select(db.func.count()).select_from(Profile))


# --- login ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/profiles/", "/profiles/1", "/profiles/1/preview", "/profiles/export.json"])
def test_pages_need_a_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


@pytest.mark.parametrize("path", ["/profiles/new", "/profiles/import", "/profiles/1", "/profiles/1/delete",
                                  "/profiles/1/mappings", "/profiles/1/mappings/1/up"])
def test_actions_need_a_login(client, path):
    response = client.post(path, data={"name": "x", "export_type": "postback"})
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    assert count_profiles() == 0


# --- the Export Profiles page --------------------------------------------------------------------

def list_rows(response):
    """Each profile's row of the list as its cells' text joined by |."""
    rows = re.findall(r"<tr[^>]*data-profile-id.*?</tr>", text(response), re.S)
    return [re.sub(r"<[^>]+>", "", "|".join(re.findall(r"<td>(.*?)</td>", row, re.S))) for row in rows]


def test_list_shows_each_profile_with_type_target_delay_active_and_routes(logged_in):
    make_profile(delay_minutes=5)
    make_profile(name="Second", active=False, routes=[])
    cells = list_rows(logged_in.get("/profiles/"))
    assert cells[0].startswith("Call center partials|Postback|https://postingmydata.com/partials.php|5 min|Yes|1|")
    assert cells[1].startswith("Second|Postback|https://postingmydata.com/partials.php|0 min|No|0|")


FTP_SETTINGS = {"host": "ftp.example.org", "port": 21, "username": "partner", "directory": "/in"}


def test_a_type_whose_describe_fails_shows_no_target_and_the_list_still_works(logged_in, app, monkeypatch):
    def broken(self):
        raise KeyError("url")

    monkeypatch.setattr(app.extensions["export_types"].get("ftp"), "describe", broken)
    make_profile()
    make_profile(name="Files", export_type="ftp", settings=FTP_SETTINGS)
    response = logged_in.get("/profiles/")
    assert response.status_code == 200
    cells = list_rows(response)
    assert cells[0].startswith("Call center partials|Postback|https://postingmydata.com/partials.php|0 min|")
    assert cells[1].startswith("Files|FTP||0 min|Yes|1|")


def test_describe_gets_the_secrets_decrypted_and_the_list_masks_them(logged_in, app, monkeypatch):
    cls = app.extensions["export_types"].get("ftp")
    monkeypatch.setattr(cls, "describe", lambda self: f"decrypted: {self.settings['password'] == 'hunter22'}")
    make_profile(name="Files", export_type="ftp", settings={**FTP_SETTINGS, "password": "hunter22"})
    assert list_rows(logged_in.get("/profiles/"))[0].startswith("Files|FTP|decrypted: True|")
    monkeypatch.setattr(cls, "describe", lambda self: f"ftp://partner:{self.settings['password']}@ftp.example.org")
    response = logged_in.get("/profiles/")
    assert list_rows(response)[0].startswith("Files|FTP|ftp://partner:****@ftp.example.org|")
    stored = db.session.scalar(db.select(Profile)).settings["password"]
    assert stored.startswith(security.ENCRYPTED_PREFIX) and stored not in text(response)
    assert "hunter22" not in text(response)


def test_routing_panel_shows_the_first_profile_or_the_chosen_one(logged_in):
    first = make_profile(name="A profile")
    second = make_profile(name="B profile", routes=[{"customer_types": ["decline", "new_sale"],
                                                     "campaigns": [], "products": [33]}])
    page = text(logged_in.get("/profiles/"))
    assert "Profile Routing: A profile" in page
    assert re.search(r"<td>Partial</td>\s*<td>259</td>\s*<td>All</td>", page)
    page = text(logged_in.get(f"/profiles/?profile={second.id}"))
    assert "Profile Routing: B profile" in page
    assert re.search(r"<td>Decline, New Sale</td>\s*<td>All</td>\s*<td>33</td>", page)
    assert f'href="/profiles/{first.id}/routes/new"' not in page
    assert f'href="/profiles/{second.id}/routes/new"' in page


def test_routing_panel_names_known_campaigns(logged_in):
    from exporter.models import Campaign

    db.session.add(Campaign(id=259, name="Test Lander"))
    db.session.commit()
    make_profile()
    assert "<td>259 Test Lander</td>" in text(logged_in.get("/profiles/"))


def test_unknown_profile_in_the_panel_is_404(logged_in):
    make_profile()
    assert logged_in.get("/profiles/?profile=999").status_code == 404
    assert logged_in.get("/profiles/?profile=abc").status_code == 404


def test_plus_creates_a_profile_and_opens_its_edit_page(logged_in, app):
    page = text(logged_in.get("/profiles/"))
    assert '<summary class="button add"' in page
    # Postback is offered first: the model's flow and most profiles are postbacks
    assert '<option selected value="postback">Postback</option>' in page and '<option value="ftp">FTP</option>' in page
    response = logged_in.post("/profiles/new", data={"name": "  Call center partials ", "export_type": "postback"})
    assert response.status_code == 302
    profile = db.session.scalar(db.select(Profile))
    assert response.headers["Location"] == f"/profiles/{profile.id}"
    assert (profile.name, profile.export_type, profile.delay_minutes, profile.active) == (
        "Call center partials", "postback", 0, True)
    assert profile.settings["method"] == "GET" and "url" not in profile.settings
    assert "General Settings" in text(logged_in.get(response.headers["Location"]))


@pytest.mark.parametrize("data, field, message", [
    ({"name": "", "export_type": "postback"}, "name", "Profile Name is required"),
    ({"name": "   ", "export_type": "postback"}, "name", "Profile Name is required"),
    ({"name": "Call center partials", "export_type": "postback"}, "name",
     "A profile named &#39;Call center partials&#39; already exists"),
    ({"name": "New", "export_type": "telex"}, "export_type", "Export type &#39;telex&#39; is not installed"),
    ({"name": "New"}, "export_type", "Choose an Export Type"),
])
def test_create_refuses_bad_input_beside_the_field(logged_in, data, field, message):
    make_profile()
    response = logged_in.post("/profiles/new", data=data)
    assert response.status_code == 422
    assert error_beside(response, field) == [message]
    assert "<details class=\"add-profile\" open>" in text(response)
    assert count_profiles() == 1


def test_post_without_csrf_token_is_refused_and_stores_nothing(app_config, admin):
    from exporter import create_app

    app = create_app({**app_config, "WTF_CSRF_ENABLED": True})
    client = app.test_client()
    login_page = text(client.get("/login"))
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', login_page).group(1)
    from ..conftest import PASSWORD

    assert client.post("/login", data={"email": admin.email, "password": PASSWORD,
                                       "csrf_token": token}).status_code == 302
    response = client.post("/profiles/new", data={"name": "Sneaky", "export_type": "postback"})
    assert response.status_code == 400
    assert count_profiles() == 0
    page = text(client.get("/profiles/"))
    token = re.search(r'id="csrf_token" name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    response = client.post("/profiles/new", data={"name": "Honest", "export_type": "postback",
                                                  "csrf_token": token})
    assert response.status_code == 302
    assert count_profiles() == 1


# --- profiles JSON download and upload -----------------------------------------------------------

def test_download_is_the_same_json_as_the_command(logged_in, app):
    make_profile()
    response = logged_in.get("/profiles/export.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["Content-Disposition"] == "attachment; filename=exporter-profiles.json"
    assert response.get_json() == profiles_io.export_all(app.extensions["export_types"])
    assert response.get_json()["profiles"][0]["mappings"][2] == {
        "export_name": "list_id", "field": "static", "static_value": "400"}


def upload(client, body, filename="profiles.json"):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/profiles/import", data={"file": (io.BytesIO(raw), filename)},
                       content_type="multipart/form-data")


def test_upload_creates_and_updates_by_name(logged_in):
    make_profile(delay_minutes=1)
    body = {"version": 1, "profiles": [profile_data(delay_minutes=7), profile_data(name="Another")]}
    response = upload(logged_in, body)
    assert response.status_code == 302
    assert "1 created, 1 updated" in text(logged_in.get(response.headers["Location"]))
    profiles = db.session.scalars(db.select(Profile).order_by(Profile.name)).all()
    assert [(p.name, p.delay_minutes, len(p.mappings), len(p.routes)) for p in profiles] == [
        ("Another", 0, 5, 1), ("Call center partials", 7, 5, 1)]


@pytest.mark.parametrize("body, message", [
    ({"version": 1, "profiles": [profile_data(name="Good"), profile_data(
        name="Bad", mappings=[{"export_name": "x", "field": "shoeSize"}])]},
     "profile &#39;Bad&#39;: mappings[0].field: &#39;shoeSize&#39; is not in the field catalog"),
    ({"version": 1, "profiles": [profile_data(name="Bad", settings={"url": "ftp://x"})]},
     "profile &#39;Bad&#39;: settings.url: Postback URL must be an http:// or https:// URL"),
    ({"version": 1, "profiles": [profile_data(name="Bad", delay_minutes=-1)]},
     "profile &#39;Bad&#39;: delay_minutes: Export Delay is a whole number of minutes, 0 or more"),
    ({"version": 3, "profiles": []}, "version"),
    (b"{not json", "Not a JSON file"),
    # A value of the wrong JSON type is named as a wrong value is (no "Not the profiles JSON").
    ({"version": 1, "profiles": [profile_data(name="Bad", settings="x")]},
     "profile &#39;Bad&#39;: settings: must be an object"),
    ({"version": 1, "profiles": [profile_data(name="Bad", mappings=[{"export_name": 7, "field": "city"}])]},
     "profile &#39;Bad&#39;: mappings[0].export_name: must be a string, not 7"),
    ({"version": 1, "profiles": [profile_data(name="Bad", routes=[1])]},
     "profile &#39;Bad&#39;: routes[0]: must be an object"),
    ({"version": 1, "profiles": [profile_data(name="Bad", pci_documented="false")]},
     "profile &#39;Bad&#39;: pci_documented: must be true or false, not &#39;false&#39;"),
    ({"version": 1, "profiles": [profile_data(name="Bad", delay_minutes=10**9)]},
     "profile &#39;Bad&#39;: delay_minutes: Export Delay is a whole number of minutes, 0 or more (at most 525,600"),
    # ZoneInfo raises OSError (file name too long) for it: once a 500
    ({"version": 1, "profiles": [profile_data(name="Bad", time_zone="a" * 300)]},
     "profile &#39;Bad&#39;: time_zone: Time Zone is at most 64 characters"),
])
def test_a_bad_upload_names_profile_and_field_and_changes_nothing(logged_in, body, message):
    make_profile(delay_minutes=3)
    before = profiles_io.export_all()
    response = upload(logged_in, body)
    assert response.status_code == 422
    [shown] = error_beside(response, "file")
    assert message in shown
    db.session.expire_all()
    assert profiles_io.export_all() == before


def test_upload_without_a_file_asks_for_one(logged_in):
    response = logged_in.post("/profiles/import", data={}, content_type="multipart/form-data")
    assert response.status_code == 422
    assert error_beside(response, "file") == ["Choose a profiles JSON file"]


def test_download_then_upload_restores_a_deleted_profile(logged_in):
    profile = make_profile()
    exported = logged_in.get("/profiles/export.json").get_data()
    assert logged_in.post(f"/profiles/{profile.id}/delete").status_code == 302
    assert count_profiles() == 0
    assert upload(logged_in, exported).status_code == 302
    restored = db.session.scalar(db.select(Profile))
    assert [(m.export_name, m.field, m.static_value) for m in restored.mappings] == [
        ("first_name", "firstName", ""), ("order_date", "orderDate", ""), ("list_id", "static", "400"),
        ("email_address", "emailAddress", ""), ("campaign_number", "campaignId", "")]
    assert [(r.customer_types, r.campaigns, r.products) for r in restored.routes] == [(["partial"], [259], [])]
