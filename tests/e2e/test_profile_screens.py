"""The issue's "Done when", in a real browser: build the model's example profile on the screens,
see its preview URL, download the profiles JSON, delete the profile, upload the JSON back."""
import json
import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

POSTBACK_URL = "https://postingmydata.com/partials.php"
PREVIEW_URL = ("https://postingmydata.com/partials.php?first_name=Jane&order_date=2026-11-27+14%3A03%3A22"
               "&list_id=400&email_address=jane%40example.com&campaign_number=259")
MAPPINGS = [("first_name", "firstName", None), ("order_date", "orderDate", None), ("list_id", "static", "400"),
            ("email_address", "emailAddress", None), ("campaign_number", "campaignId", None)]
NAME = "Call center partials"


@pytest.fixture
def app_config(app_config):
    """CSRF on, as in production: every form on these screens must carry its token."""
    return {**app_config, "WTF_CSRF_ENABLED": True}


def add_mapping(page, export_name, field, static_value):
    page.click("#add-mapping")
    dialog = page.locator("#mapping-dialog")
    expect(dialog).to_be_visible()
    dialog.locator("input[name=export_name]").fill(export_name)
    dialog.locator("select[name=field]").select_option(field)
    if static_value is not None:
        dialog.locator("input[name=static_value]").fill(static_value)
    else:
        expect(dialog.locator("input[name=static_value]")).to_be_hidden()
    dialog.locator("button[type=submit]").click()
    expect(page.locator(".flash.success")).to_have_text(f"Mapping '{export_name}' added.")


def expect_the_model_profile(page):
    expect(page.locator("#mappings td.export-name")).to_have_text([name for name, _, _ in MAPPINGS])
    expect(page.locator("#preview")).to_contain_text(PREVIEW_URL)


def test_admin_builds_exports_deletes_and_imports_the_model_profile(admin_page, live_server, tmp_path):
    page = admin_page

    # The green + on Export Profiles: Profile Name and Export Type, then the edit page.
    page.click("nav.top >> text=Export Profiles")
    page.click("details.add-profile summary")
    page.fill("#new-profile input[name=name]", NAME)
    page.select_option("#new-profile select[name=export_type]", label="Postback")
    page.click("#new-profile button[type=submit]")
    page.wait_for_url(re.compile(r"/profiles/\d+$"))
    edit_url = page.url

    # General Settings: a bad Postback URL is refused beside the field, a good one is saved.
    page.fill("input[name=settings-url]", "ftp://postingmydata.com/partials.php")
    page.click("#general-form button.primary")
    expect(page.locator("#field-settings-url .error")).to_have_text(
        "Postback URL must be an http:// or https:// URL")
    page.fill("input[name=settings-url]", POSTBACK_URL)
    page.click("#general-form button.primary")
    expect(page.locator(".flash.success")).to_have_text("General Settings saved.")

    # Field Mappings through the + dialog; Static without a value is refused in the dialog.
    page.click("#add-mapping")
    page.fill("#mapping-dialog input[name=export_name]", "list_id")
    page.select_option("#mapping-dialog select[name=field]", "static")
    page.click("#mapping-dialog button[type=submit]")
    expect(page.locator("#field-static_value .error")).to_have_text("Static needs a Static Value")
    page.goto(edit_url)
    for export_name, field, static_value in MAPPINGS:
        add_mapping(page, export_name, field, static_value)
    expect_the_model_profile(page)

    # Campaign 259 "Test Lander" on the Campaigns & Products page.
    page.click("nav.top >> text=Campaigns & Products")
    page.fill("input[name=campaign-crm_id]", "259")
    page.fill("input[name=campaign-name]", "Test Lander")
    page.click("#add-campaigns button[type=submit]")
    expect(page.locator("#campaigns")).to_contain_text("Test Lander")

    # A Partial route for campaign 259, from the Profile Routing panel beside the list.
    page.click("nav.top >> text=Export Profiles")
    expect(page.locator("#routing h2")).to_have_text(f"Profile Routing: {NAME}")
    page.click("#routing >> text=+ Add route")
    page.check("input[name=customer_types][value=partial]")
    page.select_option("select[name=campaigns]", "259")
    page.click("#route-form button.primary")
    expect(page.locator("#routes tr[data-route-id] td").nth(0)).to_have_text("Partial")
    expect(page.locator("#routes tr[data-route-id] td").nth(1)).to_have_text("259 Test Lander")
    expect(page.locator("#routes tr[data-route-id] td").nth(2)).to_have_text("All")

    # The preview URL on the edit page.
    page.click(f"#profiles >> text={NAME}")
    expect_the_model_profile(page)

    # Download the profiles JSON.
    page.click("nav.top >> text=Export Profiles")
    with page.expect_download() as download:
        page.click("#download-profiles")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    exported = json.loads(saved.read_text())
    assert [p["name"] for p in exported["profiles"]] == [NAME]
    assert exported["profiles"][0]["routes"] == [{"customer_types": ["partial"], "campaigns": [259], "products": []}]

    # Delete the profile (accepting the confirm).
    page.goto(edit_url)
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#delete-profile button")
    page.wait_for_url(live_server + "/profiles/")
    expect(page.locator(".flash.success")).to_have_text(f"Profile '{NAME}' deleted.")
    expect(page.locator("#profiles")).not_to_contain_text(NAME)

    # Upload the JSON back: the profile is there again with its mappings and route.
    page.set_input_files("#upload input[type=file]", str(saved))
    page.click("#upload button[type=submit]")
    expect(page.locator(".flash.success")).to_have_text("Profiles imported: 1 created, 0 updated.")
    expect(page.locator("#routing h2")).to_have_text(f"Profile Routing: {NAME}")
    expect(page.locator("#routes tr[data-route-id] td").nth(0)).to_have_text("Partial")
    expect(page.locator("#routes tr[data-route-id] td").nth(1)).to_have_text("259 Test Lander")
    page.click(f"#profiles >> text={NAME}")
    expect_the_model_profile(page)
    expect(page.locator("input[name=settings-url]")).to_have_value(POSTBACK_URL)


def test_changing_export_type_shows_its_settings_and_edit_reuses_the_dialog(admin_page, live_server):
    from ..factories import make_profile

    profile = make_profile()
    page = admin_page
    page.goto(f"{live_server}/profiles/{profile.id}")
    page.select_option("#general-form select[name=export_type]", "ftp")
    expect(page.locator("input[name=settings-host]")).to_be_visible()
    expect(page.locator("input[name=settings-url]")).to_have_count(0)
    page.goto(f"{live_server}/profiles/{profile.id}")
    page.locator("#mappings tr[data-mapping-id]").nth(1).locator("text=Edit").click()
    dialog = page.locator("#mapping-dialog")
    expect(dialog.locator("#mapping-dialog-title")).to_have_text("Edit field mapping")
    expect(dialog.locator("input[name=export_name]")).to_have_value("order_date")
    dialog.locator("select[name=format]").select_option("date")
    dialog.locator("input[name=format_arg]").fill("%m/%d/%Y")
    dialog.locator("button[type=submit]").click()
    expect(page.locator("#preview")).to_contain_text("order_date=11%2F27%2F2026")
    page.locator("#mappings tr[data-mapping-id]").nth(4).locator("button.move-up").click()
    expect(page.locator("#mappings td.export-name")).to_have_text(
        ["first_name", "order_date", "list_id", "campaign_number", "email_address"])
    expect(page.locator("#preview")).to_contain_text("list_id=400&campaign_number=259&email_address=")


def test_mappings_and_export_type_work_without_javascript(browser, live_server, admin):
    from ..conftest import PASSWORD
    from exporter import catalog

    from ..factories import make_profile

    profile = make_profile(mappings=[])
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.set_default_timeout(10000)
    try:
        page.goto(live_server + "/login")
        page.fill("input[name=email]", admin.email)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.goto(f"{live_server}/profiles/{profile.id}")
        expect(page.locator("#mapping-dialog")).to_be_hidden()
        page.click("#add-mapping")  # a link: the page comes back with the dialog open
        expect(page.locator("#mapping-dialog")).to_be_visible()
        page.fill("#mapping-dialog input[name=export_name]", "list_id")
        page.select_option("#mapping-dialog select[name=field]", "static")
        page.fill("#mapping-dialog input[name=static_value]", "400")
        page.click("#mapping-dialog button[type=submit]")
        expect(page.locator("#mappings td.export-name")).to_have_text(["list_id"])
        expect(page.locator("#preview")).to_contain_text("partials.php?list_id=400")
        page.select_option("#general-form select[name=export_type]", "ftp")
        page.click("button[name=refresh_type]")
        expect(page.locator("input[name=settings-host]")).to_be_visible()
    finally:
        context.close()


def test_the_preview_follows_the_unsaved_form_as_the_admin_types(admin_page, live_server):
    """Change the URL, the method and a mapping in the dialog without saving: the preview
    shows each change within a moment, and nothing is stored."""
    from exporter.extensions import db
    from exporter.models import Profile

    from ..factories import make_profile

    profile = make_profile(url=POSTBACK_URL, mappings=[{"export_name": "first_name", "field": "firstName"}])
    page = admin_page
    page.goto(f"{live_server}/profiles/{profile.id}")
    preview = page.locator("#preview")
    expect(preview).to_contain_text(POSTBACK_URL + "?first_name=Jane")

    page.fill("input[name=settings-url]", "https://dialer.example.com/leads")
    expect(preview).to_contain_text("https://dialer.example.com/leads?first_name=Jane")

    page.select_option("select[name=settings-method]", "POST")
    expect(preview).to_contain_text("POST https://dialer.example.com/leads")
    expect(preview).to_contain_text("first_name=Jane")

    page.click("#mappings a:has-text('Edit')")
    dialog = page.locator("#mapping-dialog")
    expect(dialog).to_be_visible()
    dialog.locator("input[name=export_name]").fill("fname")
    expect(preview).to_contain_text("fname=Jane")
    dialog.locator("select[name=format]").select_option("upper")
    expect(preview).to_contain_text("fname=JANE")

    # A mapping the engine refuses shows its problem instead of a stale preview.
    dialog.locator("input[name=export_name]").fill("")
    expect(page.locator("#preview-problem")).to_be_visible()

    # Nothing was saved.
    db.session.expire_all()
    stored = db.session.get(Profile, profile.id)
    assert stored.settings["url"] == POSTBACK_URL and stored.settings["method"] == "GET"
    assert [m.export_name for m in stored.mappings] == ["first_name"] and stored.mappings[0].format == ""


def test_the_mapping_dialog_works_with_the_keyboard_alone(admin_page, live_server):
    from ..factories import make_profile

    profile = make_profile(url=POSTBACK_URL, mappings=[])
    page = admin_page
    page.goto(f"{live_server}/profiles/{profile.id}")
    page.focus("#add-mapping")
    page.keyboard.press("Enter")
    dialog = page.locator("#mapping-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("input[name=export_name]")).to_be_focused()
    page.keyboard.type("list_id")
    page.keyboard.press("Tab")
    expect(dialog.locator("#field_search")).to_be_focused()  # the Field list's search, then the list
    page.keyboard.press("Tab")
    expect(dialog.locator("select[name=field]")).to_be_focused()
    dialog.locator("select[name=field]").select_option("static")  # a select's value, as arrow keys would
    page.keyboard.press("Tab")
    page.keyboard.type("400")
    page.keyboard.press("Escape")  # Escape closes the dialog without saving
    expect(dialog).to_be_hidden()
    page.focus("#add-mapping")
    page.keyboard.press("Enter")
    page.keyboard.type("list_id")
    dialog.locator("select[name=field]").select_option("static")
    dialog.locator("input[name=static_value]").focus()
    page.keyboard.type("400")
    page.keyboard.press("Enter")  # Enter submits the form
    expect(page.locator(".flash.success")).to_have_text("Mapping 'list_id' added.")


def test_the_mapping_dialogs_fields_can_be_searched(admin_page, live_server):
    from exporter import catalog

    from ..factories import make_profile

    profile = make_profile(mappings=[])
    page = admin_page
    page.goto(f"{live_server}/profiles/{profile.id}")
    page.click("#add-mapping")
    dialog = page.locator("#mapping-dialog")
    expect(dialog.locator("label[for=field_search]")).to_have_text(f"Search the {len(catalog.FIELDS)} fields")
    dialog.locator("#field_search").fill("phone")
    expect(dialog.locator("#field-search-count")).to_contain_text("match")
    visible = dialog.locator("select[name=field] option:not([hidden])")
    keys = visible.evaluate_all("options => options.map(o => o.value)")
    assert "phoneNumber" in keys and "firstName" not in keys and len(keys) < 10
    assert dialog.locator("select[name=field]").input_value() == keys[0]  # the first match is chosen
    dialog.locator("#field_search").fill("shipping postal")  # every word, in the key or what it holds
    keys = visible.evaluate_all("options => options.map(o => o.value)")
    assert keys == ["shipPostalCode"]
    dialog.locator("#field_search").press("Enter")  # picks, does not save the dialog
    expect(dialog).to_be_visible()
    dialog.locator("input[name=export_name]").fill("zip")
    dialog.locator("button[type=submit]").click()
    expect(page.locator(".flash.success")).to_have_text("Mapping 'zip' added.")
    expect(page.locator("#field-mappings tr").filter(has_text="zip")).to_contain_text("shipPostalCode")
