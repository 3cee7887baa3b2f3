"""The profile edit page (General Settings, deleting, the actions area, Field Mappings, the live
preview), through the test client. The Export Profiles list and the JSON upload: test_profiles.py."""
import re

import pytest
from flask import current_app

from exporter.profiles import as_code as profiles_io
from exporter import security
from exporter.extensions import db
from exporter.models import FieldMapping, Profile, Route

from ..factories import event, make_profile
from ..pages import error_beside, text

MODEL_URL = ("https://postingmydata.com/partials.php?first_name=Jane&order_date=2026-11-27+14%3A03%3A22"
             "&list_id=400&email_address=jane%40example.com&campaign_number=259")
FTP_SETTINGS = {"host": "ftp.example.org", "port": 21, "username": "partner", "directory": "/in"}


def type_settings(type_key, settings):
    """The type's own settings fields as the edit page posts them (prefixed, defaults filled in)."""
    form = current_app.extensions["export_types"].get(type_key).settings_form(data=settings, prefix="settings-")
    data = {}
    for f in form:
        if f.type == "BooleanField":
            if f.data:
                data[f.name] = "y"
        elif f.data is not None:
            data[f.name] = str(f.data)
    return data


def general(profile, **changes):
    """The General Settings form as the page would post it for this profile."""
    data = {"name": profile.name, "export_type": profile.export_type,
            "delay_minutes": str(profile.delay_minutes), **type_settings(profile.export_type, profile.settings)}
    for flag in ("pci_documented", "active", "skip_converted_partials"):
        if getattr(profile, flag):
            data[flag] = "y"
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def reload(profile):
    db.session.expire_all()
    return db.session.get(Profile, profile.id)


# --- the edit page: General Settings -------------------------------------------------------------

def test_edit_page_shows_general_settings_mappings_and_the_preview(logged_in):
    profile = make_profile()
    page = text(logged_in.get(f"/profiles/{profile.id}"))
    for label in ("General Settings", "Profile Name", "Export Type", "Postback URL", "Export Delay (minutes)",
                  "PCI Documentation", "Active", "Skip partials that convert before the export fires",
                  "Field Mappings", "Export Name", "Field", "Static Value"):
        assert label in page
    assert re.search(r'<input id="settings-url" name="settings-url"[^>]*value="https://postingmydata.com/partials.php"', page)
    names = re.findall(r"<td class=\"export-name\"><code>(.*?)</code></td>", page)
    assert names == ["first_name", "order_date", "list_id", "email_address", "campaign_number"]
    preview = re.search(r'<pre id="preview"[^>]*>(.*?)</pre>', page, re.S).group(1)
    assert MODEL_URL.replace("&", "&amp;") in preview


def test_unknown_profile_is_404(logged_in):
    assert logged_in.get("/profiles/999").status_code == 404
    assert logged_in.post("/profiles/999", data={"name": "x"}).status_code == 404
    assert logged_in.get("/profiles/999/preview").status_code == 404
    assert logged_in.post("/profiles/999/delete").status_code == 404
    assert logged_in.post("/profiles/999/mappings", data={"export_name": "a", "field": "city"}).status_code == 404


def test_a_profile_whose_type_is_no_longer_installed_can_be_opened_and_fixed(logged_in):
    profile = Profile(name="Old", export_type="telex", settings={"line": "7"})
    db.session.add(profile)
    db.session.commit()
    assert "<td>telex (not installed)</td>" in text(logged_in.get("/profiles/"))
    response = logged_in.get(f"/profiles/{profile.id}")
    assert response.status_code == 200
    assert "Export type telex is not installed" in text(response)
    assert "Export type &#39;telex&#39; is not installed." in text(response)  # the preview's word
    data = {"name": "Old", "export_type": "postback", "delay_minutes": "0",
            "settings-url": "https://example.org/in", "settings-method": "GET"}
    assert logged_in.post(f"/profiles/{profile.id}", data=data).status_code == 302
    profile = reload(profile)
    assert profile.export_type == "postback" and profile.settings["url"] == "https://example.org/in"
    assert "line" not in profile.settings


def test_saving_general_settings(logged_in):
    profile = make_profile()
    response = logged_in.post(f"/profiles/{profile.id}", data=general(
        profile, name="Renamed", delay_minutes="15", active=None, pci_documented="y",
        skip_converted_partials=None, **{"settings-url": "http://example.org/in?x=1", "settings-method": "POST"}))
    assert response.status_code == 302
    profile = reload(profile)
    assert (profile.name, profile.delay_minutes, profile.active, profile.pci_documented,
            profile.skip_converted_partials) == ("Renamed", 15, False, True, False)
    assert profile.settings["url"] == "http://example.org/in?x=1"
    assert profile.settings["method"] == "POST"


@pytest.mark.parametrize("changes, field, message", [
    ({"name": ""}, "name", "Profile Name is required"),
    ({"name": "Other"}, "name", "A profile named &#39;Other&#39; already exists"),
    ({"settings-url": "ftp://postingmydata.com/x"}, "settings-url",
     "Postback URL must be an http:// or https:// URL"),
    ({"settings-url": "javascript:alert(1)"}, "settings-url", "Postback URL must be an http:// or https:// URL"),
    ({"delay_minutes": "-5"}, "delay_minutes", "Export Delay is a whole number of minutes, 0 or more"),
    ({"delay_minutes": "1.5"}, "delay_minutes", "Export Delay is a whole number of minutes, 0 or more"),
    ({"delay_minutes": ""}, "delay_minutes", "Export Delay is a whole number of minutes, 0 or more"),
    ({"export_type": "telex"}, "export_type", "Export type &#39;telex&#39; is not installed"),
])
def test_general_settings_refuse_bad_input_beside_the_field(logged_in, changes, field, message):
    profile = make_profile()
    make_profile(name="Other")
    before = profiles_io.export_all()
    response = logged_in.post(f"/profiles/{profile.id}", data=general(profile, **changes))
    assert response.status_code == 422
    [shown] = error_beside(response, field)
    assert shown.startswith(message)
    db.session.expire_all()
    assert profiles_io.export_all() == before


def test_changing_export_type_shows_that_types_settings_without_saving(logged_in):
    profile = make_profile()
    response = logged_in.post(f"/profiles/{profile.id}", data=general(profile, export_type="ftp", refresh_type="1"))
    assert response.status_code == 200
    page = text(response)
    assert 'name="settings-host"' in page and "Postback URL" not in page
    assert '<option selected value="ftp">FTP</option>' in page
    assert '<span class="error">' not in page
    assert reload(profile).export_type == "postback"


def test_switching_to_ftp_needs_its_settings_then_saves_them(logged_in):
    profile = make_profile()
    response = logged_in.post(f"/profiles/{profile.id}", data=general(profile, export_type="ftp"))
    assert response.status_code == 422
    assert error_beside(response, "settings-host")[0].endswith("is required")
    assert reload(profile).export_type == "postback"
    data = {k: v for k, v in general(profile, export_type="ftp").items() if not k.startswith("settings-")}
    data.update(type_settings("ftp", {**FTP_SETTINGS, "password": "s3cret!"}))
    response = logged_in.post(f"/profiles/{profile.id}", data=data)
    assert response.status_code == 302, error_beside(response, "settings-host")
    profile = reload(profile)
    assert profile.export_type == "ftp"
    assert profile.settings["host"] == "ftp.example.org" and "url" not in profile.settings
    assert profile.settings["password"].startswith(security.ENCRYPTED_PREFIX)
    assert security.decrypt("test-secret", profile.settings["password"]) == "s3cret!"


def test_a_secret_setting_is_never_shown_and_blank_keeps_it(logged_in):
    profile = make_profile(export_type="ftp", settings={**FTP_SETTINGS, "password": "first-pass"})
    stored = profile.settings["password"]
    page = text(logged_in.get(f"/profiles/{profile.id}"))
    assert "first-pass" not in page and stored not in page
    assert re.search(r'<input [^>]*name="settings-password" type="password" value=""', page)
    assert "is stored (encrypted): leave blank to keep it" in page
    data = general(profile, **{"settings-host": "ftp2.example.org", "settings-password": ""})
    assert logged_in.post(f"/profiles/{profile.id}", data=data).status_code == 302
    profile = reload(profile)
    assert profile.settings["host"] == "ftp2.example.org"
    assert profile.settings["password"] == stored
    data["settings-password"] = "second-pass"
    assert logged_in.post(f"/profiles/{profile.id}", data=data).status_code == 302
    assert security.decrypt("test-secret", reload(profile).settings["password"]) == "second-pass"


def test_unticking_pci_documentation_with_a_sensitive_mapping_is_refused(logged_in):
    profile = make_profile(pci_documented=True, mappings=[{"export_name": "cc", "field": "cardNumber"}])
    response = logged_in.post(f"/profiles/{profile.id}", data=general(profile, pci_documented=None))
    assert response.status_code == 422
    [shown] = error_beside(response, "pci_documented")
    assert shown.startswith("cardNumber is sensitive: it needs PCI Documentation on file")
    assert reload(profile).pci_documented is True


def test_delete_profile_takes_its_mappings_and_routes(logged_in):
    profile = make_profile()
    other = make_profile(name="Other")
    response = logged_in.post(f"/profiles/{profile.id}/delete")
    assert response.status_code == 302 and response.headers["Location"] == "/profiles/"
    db.session.expire_all()
    assert db.session.scalars(db.select(Profile.name)).all() == ["Other"]
    assert {m.profile_id for m in db.session.scalars(db.select(FieldMapping))} == {other.id}
    assert {r.profile_id for r in db.session.scalars(db.select(Route))} == {other.id}


def test_delete_profile_with_deliveries(logged_in, post_events):
    from exporter.models import Delivery

    profile = make_profile(delay_minutes=60)
    assert post_events(event()).status_code == 202
    assert db.session.scalar(db.select(db.func.count()).select_from(Delivery)) == 1
    assert logged_in.post(f"/profiles/{profile.id}/delete").status_code == 302
    assert db.session.scalar(db.select(db.func.count()).select_from(Delivery)) == 0


# --- the edit page: actions area -----------------------------------------------------------------

def test_actions_area_for_a_postback_profile(logged_in, app, monkeypatch):
    cls = app.extensions["export_types"].get("postback")
    monkeypatch.setattr(cls, "test_connection", None, raising=False)
    profile = make_profile()
    page = text(logged_in.get(f"/profiles/{profile.id}"))
    assert f'action="/profiles/{profile.id}/send-test"' in page
    assert "test-connection" not in page
    assert 'name="date"' not in page
    monkeypatch.setattr(cls, "test_connection", lambda self: None)
    page = text(logged_in.get(f"/profiles/{profile.id}"))
    assert f'action="/profiles/{profile.id}/test-connection"' in page


def test_actions_area_for_a_daily_file_profile_has_rerun_a_day(logged_in):
    profile = make_profile(export_type="ftp", settings=FTP_SETTINGS)
    page = text(logged_in.get(f"/profiles/{profile.id}"))
    form = re.search(r'<form method="post" action="/files/profiles/(\d+)/rerun".*?</form>', page, re.S)
    assert form and int(form.group(1)) == profile.id
    assert 'type="date" name="date"' in form.group(0) and 'name="csrf_token"' in form.group(0)


# --- the edit page: Field Mappings ---------------------------------------------------------------

def mapping_rows(profile):
    profile = reload(profile)
    return [(m.position, m.export_name, m.field, m.static_value) for m in profile.mappings]


def test_add_a_mapping_appends_it_and_bumps_updated_at(logged_in):
    profile = make_profile()
    before = profile.updated_at
    response = logged_in.post(f"/profiles/{profile.id}/mappings", data={
        "export_name": "last_name", "field": "lastName", "format": "upper"})
    assert response.status_code == 302
    assert response.headers["Location"] == f"/profiles/{profile.id}#field-mappings"
    rows = mapping_rows(profile)
    assert rows[-1] == (5, "last_name", "lastName", "")
    profile = reload(profile)
    assert profile.mappings[-1].format == "upper"
    assert profile.updated_at > before
    page = text(logged_in.get(f"/profiles/{profile.id}"))
    assert "&amp;last_name=DOE" in page


def test_a_static_mapping(logged_in):
    profile = make_profile(mappings=[])
    logged_in.post(f"/profiles/{profile.id}/mappings", data={
        "export_name": "list_id", "field": "static", "static_value": "400"})
    assert mapping_rows(profile) == [(0, "list_id", "static", "400")]


@pytest.mark.parametrize("data, field, message", [
    ({"export_name": "", "field": "firstName"}, "export_name", "Export Name is required"),
    ({"export_name": "list_id", "field": "static", "static_value": ""}, "static_value",
     "Static needs a Static Value"),
    ({"export_name": "x", "field": "shoeSize"}, "field", "&#39;shoeSize&#39; is not in the field catalog"),
    ({"export_name": "x", "field": "firstName", "format": "rot13"}, "format", "unknown format &#39;rot13&#39;"),
    ({"export_name": "x", "field": "orderDate", "format": "date"}, "format_arg", "a date format needs a pattern"),
    ({"export_name": "cc", "field": "cardNumber"}, "field",
     "cardNumber is sensitive: it needs PCI Documentation on file"),
    ({"export_name": "exp", "field": "cardExpiryYear"}, "field",
     "cardExpiryYear is sensitive: it needs PCI Documentation on file"),
    ({"export_name": "acct", "field": "achAccountNumber"}, "field",
     "achAccountNumber is sensitive: it needs PCI Documentation on file"),
])
def test_a_bad_mapping_is_refused_beside_the_field_in_the_open_dialog(logged_in, data, field, message):
    profile = make_profile()
    before = mapping_rows(profile)
    response = logged_in.post(f"/profiles/{profile.id}/mappings", data=data)
    assert response.status_code == 422
    assert error_beside(response, field) == [message]
    assert '<dialog id="mapping-dialog" open ' in text(response)
    assert mapping_rows(profile) == before


def test_a_sensitive_field_is_allowed_with_pci_documentation(logged_in):
    profile = make_profile(pci_documented=True, mappings=[])
    response = logged_in.post(f"/profiles/{profile.id}/mappings", data={"export_name": "cc", "field": "cardNumber"})
    assert response.status_code == 302
    assert mapping_rows(profile) == [(0, "cc", "cardNumber", "")]


def test_edit_a_mapping_prefilled_then_saved(logged_in):
    profile = make_profile()
    target = profile.mappings[1]
    page = text(logged_in.get(f"/profiles/{profile.id}?mapping={target.id}"))
    assert '<dialog id="mapping-dialog" open ' in page
    assert f'action="/profiles/{profile.id}/mappings/{target.id}"' in page
    assert 'name="export_name" type="text" value="order_date"' in page
    assert '<option selected value="orderDate">orderDate: When the order was placed (CRM time)</option>' in page
    response = logged_in.post(f"/profiles/{profile.id}/mappings/{target.id}", data={
        "export_name": "order_day", "field": "orderDate", "format": "date", "format_arg": "%m/%d/%Y"})
    assert response.status_code == 302
    assert mapping_rows(profile)[1] == (1, "order_day", "orderDate", "")
    assert "order_day=11%2F27%2F2026" in logged_in.get(f"/profiles/{profile.id}/preview").get_json()["preview"]


def test_plus_without_javascript_renders_the_dialog_open(logged_in):
    profile = make_profile()
    page = text(logged_in.get(f"/profiles/{profile.id}"))
    assert '<dialog id="mapping-dialog" aria-labelledby' in page
    assert f'href="/profiles/{profile.id}?mapping=new#mapping-dialog"' in page
    page = text(logged_in.get(f"/profiles/{profile.id}?mapping=new"))
    assert '<dialog id="mapping-dialog" open ' in page
    assert f'<form method="post" action="/profiles/{profile.id}/mappings" id="mapping-form"' in page


def test_editing_a_mapping_checks_it_too(logged_in):
    profile = make_profile()
    target = profile.mappings[2]
    response = logged_in.post(f"/profiles/{profile.id}/mappings/{target.id}", data={
        "export_name": "list_id", "field": "static", "static_value": ""})
    assert response.status_code == 422
    assert error_beside(response, "static_value") == ["Static needs a Static Value"]
    assert f'action="/profiles/{profile.id}/mappings/{target.id}"' in text(response)
    assert mapping_rows(profile)[2] == (2, "list_id", "static", "400")


def test_delete_and_move_mappings(logged_in):
    profile = make_profile()
    ids = [m.id for m in profile.mappings]
    stamps = [profile.updated_at]
    assert logged_in.post(f"/profiles/{profile.id}/mappings/{ids[4]}/up").status_code == 302
    stamps.append(reload(profile).updated_at)
    assert [r[1] for r in mapping_rows(profile)] == [
        "first_name", "order_date", "list_id", "campaign_number", "email_address"]
    logged_in.post(f"/profiles/{profile.id}/mappings/{ids[0]}/down")
    logged_in.post(f"/profiles/{profile.id}/mappings/{ids[0]}/up")
    logged_in.post(f"/profiles/{profile.id}/mappings/{ids[0]}/up")  # already first: nothing moves
    logged_in.post(f"/profiles/{profile.id}/mappings/{ids[3]}/down")  # already last
    assert [r[1] for r in mapping_rows(profile)] == [
        "first_name", "order_date", "list_id", "campaign_number", "email_address"]
    assert logged_in.post(f"/profiles/{profile.id}/mappings/{ids[2]}/delete").status_code == 302
    stamps.append(reload(profile).updated_at)
    assert mapping_rows(profile) == [(0, "first_name", "firstName", ""), (1, "order_date", "orderDate", ""),
                                     (2, "campaign_number", "campaignId", ""),
                                     (3, "email_address", "emailAddress", "")]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3
    preview = logged_in.get(f"/profiles/{profile.id}/preview").get_json()["preview"]
    assert "?first_name=Jane&order_date=2026-11-27+14%3A03%3A22&campaign_number=259" \
           "&email_address=jane%40example.com" in preview


def test_unknown_or_foreign_mapping_is_404(logged_in):
    profile = make_profile()
    other = make_profile(name="Other")
    foreign = other.mappings[0].id
    base = f"/profiles/{profile.id}/mappings"
    assert logged_in.get(f"/profiles/{profile.id}?mapping={foreign}").status_code == 404
    assert logged_in.get(f"/profiles/{profile.id}?mapping=zzz").status_code == 404
    assert logged_in.post(f"{base}/{foreign}", data={"export_name": "x", "field": "city"}).status_code == 404
    assert logged_in.post(f"{base}/{foreign}/delete").status_code == 404
    assert logged_in.post(f"{base}/{foreign}/up").status_code == 404
    assert logged_in.post(f"{base}/9999/down").status_code == 404
    assert logged_in.post(f"{base}/{profile.mappings[0].id}/sideways").status_code == 404
    assert len(reload(other).mappings) == 5


# --- the live preview ----------------------------------------------------------------------------

def test_preview_json_is_the_exact_postback_url(logged_in):
    profile = make_profile()
    data = logged_in.get(f"/profiles/{profile.id}/preview").get_json()
    assert data["problem"] is None
    assert MODEL_URL in data["preview"]
    assert f"GET {MODEL_URL}" == data["preview"].splitlines()[0]


def test_preview_follows_every_mapping_change(logged_in):
    profile = make_profile(mappings=[])
    data = logged_in.get(f"/profiles/{profile.id}/preview").get_json()
    assert data["preview"].startswith("GET https://postingmydata.com/partials.php\n")  # the URL alone
    assert "Add a field mapping" in data["problem"]
    logged_in.post(f"/profiles/{profile.id}/mappings", data={"export_name": "first_name", "field": "firstName"})
    assert "partials.php?first_name=Jane" in logged_in.get(f"/profiles/{profile.id}/preview").get_json()["preview"]
    page = text(logged_in.get(f"/profiles/{profile.id}"))
    assert "partials.php?first_name=Jane" in page


def test_preview_of_a_file_type_is_the_csv_header_and_row(logged_in):
    profile = make_profile(export_type="ftp", settings={**FTP_SETTINGS, "password": "x"})
    lines = logged_in.get(f"/profiles/{profile.id}/preview").get_json()["preview"].splitlines()
    assert "first_name,order_date,list_id,email_address,campaign_number" in lines
    assert "Jane,2026-11-27 14:03:22,400,jane@example.com,259" in lines


def test_a_secret_that_a_type_previews_is_masked(logged_in, app, monkeypatch):
    cls = app.extensions["export_types"].get("ftp")
    monkeypatch.setattr(cls, "preview", lambda self, columns, row: f"password={self.settings['password']}")
    profile = make_profile(export_type="ftp", settings={**FTP_SETTINGS, "password": "hunter22"})
    assert logged_in.get(f"/profiles/{profile.id}/preview").get_json()["preview"] == "password=****"
    assert "hunter22" not in text(logged_in.get(f"/profiles/{profile.id}"))


def test_a_preview_that_fails_says_so_instead_of_breaking_the_page(logged_in, app, monkeypatch):
    cls = app.extensions["export_types"].get("postback")

    def broken(self, columns, row):
        raise ValueError("no good")

    monkeypatch.setattr(cls, "preview", broken)
    profile = make_profile()
    response = logged_in.get(f"/profiles/{profile.id}")
    assert response.status_code == 200
    assert "The Postback type could not make a preview: no good" in text(response)


def test_live_preview_renders_the_unsaved_form_and_stores_nothing(logged_in):
    profile = make_profile(mappings=[{"export_name": "first_name", "field": "firstName"}])
    before = profiles_io.export_all()
    form = {"name": profile.name, "export_type": "postback", "delay_minutes": "0",
            "settings-url": "https://dialer.example.com/leads", "settings-method": "GET"}
    answer = logged_in.post(f"/profiles/{profile.id}/preview", data=form).get_json()
    assert answer == {"preview": answer["preview"], "problem": None}
    assert answer["preview"].startswith("GET https://dialer.example.com/leads?first_name=Jane\n")

    # the mapping open in the dialog replaces the saved one it edits, or is added
    edited = {**form, "editing": str(profile.mappings[0].id), "export_name": "fname", "field": "firstName",
              "format": "upper"}
    assert "leads?fname=JANE\n" in logged_in.post(f"/profiles/{profile.id}/preview", data=edited).get_json()["preview"]
    added = {**form, "editing": "new", "export_name": "list_id", "field": "static", "static_value": "400"}
    assert "?first_name=Jane&list_id=400\n" in logged_in.post(f"/profiles/{profile.id}/preview",
                                                              data=added).get_json()["preview"]

    # problems in words, never a 500
    bad_url = logged_in.post(f"/profiles/{profile.id}/preview", data={**form, "settings-url": "ftp://x"}).get_json()
    assert bad_url["preview"] is None and bad_url["problem"].startswith("Postback URL: ")
    bad_mapping = logged_in.post(f"/profiles/{profile.id}/preview", data={**added, "static_value": ""}).get_json()
    assert bad_mapping["preview"] is None and "Static Value" in bad_mapping["problem"]
    unknown = logged_in.post(f"/profiles/{profile.id}/preview", data={**form, "export_type": "telex"}).get_json()
    assert unknown["problem"] == "Export type 'telex' is not installed."
    assert profiles_io.export_all() == before


def test_the_preview_shows_the_typed_url_before_any_mapping_exists(logged_in):
    profile = make_profile(mappings=[])
    form = {"name": profile.name, "export_type": "postback", "delay_minutes": "0",
            "settings-url": "https://dialer.example.com/leads", "settings-method": "GET"}
    answer = logged_in.post(f"/profiles/{profile.id}/preview", data=form).get_json()
    assert answer["preview"].startswith("GET https://dialer.example.com/leads")
    assert answer["problem"] == "Add a field mapping to see the fields this profile sends."
