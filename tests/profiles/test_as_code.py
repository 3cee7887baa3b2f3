"""Profiles as code: the whole file is checked before anything changes."""
import pytest

from exporter.profiles import as_code as profiles_io
from exporter import security
from exporter.extensions import db
from exporter.models import Profile

from ..factories import make_profile, profile_data


def imported(*profiles):
    return profiles_io.import_all({"version": 1, "profiles": list(profiles)})


@pytest.mark.parametrize("change,field,message", [
    (dict(name=""), "name", "Profile Name is required"),
    (dict(export_type="carrier-pigeon"), "export_type", "is not installed"),
    (dict(delay_minutes=-1), "delay_minutes", "0 or more"),
    (dict(delay_minutes=1.5), "delay_minutes", "whole number"),
    (dict(settings={"url": "ftp://example.com/x"}), "settings.url", "http:// or https://"),
    (dict(settings={}), "settings.url", "Postback URL is required"),
    (dict(mappings=[{"export_name": "x", "field": "static"}]), "mappings[0].static_value", "Static Value"),
    (dict(mappings=[{"export_name": "cc", "field": "cardNumber"}]), "mappings", "PCI Documentation"),
    (dict(routes=[{"customer_types": []}]), "routes[0].customer_types", "at least one"),
    (dict(routes=[{"customer_types": ["lead"]}]), "routes[0].customer_types", "unknown customer type 'lead'"),
    (dict(routes=[{"customer_types": ["partial"], "campaigns": ["259"]}]), "routes[0].campaigns", "ids"),
    # An Export Delay over the edit page's limit (a year) would make every matching event fail.
    (dict(delay_minutes=10**9), "delay_minutes", "at most 525,600"),
    (dict(delay_minutes=525_601), "delay_minutes", "at most 525,600"),
    # A switch is a JSON true or false: bool("false") is True.
    (dict(active="false"), "active", "must be true or false, not 'false'"),
    (dict(pci_documented="false"), "pci_documented", "must be true or false"),
    (dict(skip_converted_partials=0), "skip_converted_partials", "must be true or false, not 0"),
    (dict(active=None), "active", "must be true or false"),
    # A value of the wrong JSON type is named, never an AttributeError or TypeError.
    (dict(name=5), "name", "Profile Name must be a string"),
    (dict(name="x" * 121), "name", "at most 120 characters"),
    (dict(export_type=["postback"]), "export_type", "is not installed"),
    (dict(settings="x"), "settings", "must be an object"),
    (dict(settings={"url": "https://example.com/p", "signing_secret": 5}), "settings.signing_secret",
     "must be a string"),
    (dict(settings={"url": "https://example.com/p", "signing_secret": "whsec_!!"}), "settings.signing_secret",
     "base64"),
    (dict(mappings="x"), "mappings", "must be a list"),
    (dict(mappings=["first_name"]), "mappings[0]", "must be an object"),
    (dict(mappings=[{"export_name": 5, "field": "firstName"}]), "mappings[0].export_name", "must be a string, not 5"),
    (dict(mappings=[{"export_name": "x", "field": ["firstName"]}]), "mappings[0].field", "must be a string"),
    (dict(mappings=[{"export_name": "x" * 121, "field": "firstName"}]), "mappings[0].export_name",
     "at most 120 characters"),
    (dict(routes="x"), "routes", "must be a list"),
    (dict(routes=[1]), "routes[0]", "must be an object"),
    (dict(routes=[{"customer_types": [["partial"]]}]), "routes[0].customer_types", "unknown customer type"),
])
def test_each_bad_profile_names_its_field(app, change, field, message):
    with pytest.raises(profiles_io.ImportProblem) as exc:
        imported(profile_data(**change))
    assert exc.value.field == field and message in exc.value.message
    assert db.session.query(Profile).count() == 0


def test_a_duplicate_name_in_one_file_is_refused(app):
    with pytest.raises(profiles_io.ImportProblem, match="appears twice"):
        imported(profile_data(), profile_data())


def test_import_updates_by_name_and_replaces_mappings_and_routes(app):
    profile = make_profile()
    imported(profile_data(mappings=[{"export_name": "e", "field": "emailAddress", "format": "lower"}],
                          routes=[{"customer_types": ["decline"], "campaigns": [], "products": [33]}]))
    db.session.refresh(profile)
    assert [(m.export_name, m.format) for m in profile.mappings] == [("e", "lower")]
    assert [(r.customer_types, r.products) for r in profile.routes] == [(["decline"], [33])]
    assert db.session.query(Profile).count() == 1


def test_secret_settings_are_encrypted_on_import_and_never_exported(app):
    data = profile_data(name="Files", export_type="ftp",
                        settings={"host": "ftp.example.com", "port": 21, "username": "u", "password": "hunter22"},
                        mappings=[{"export_name": "email", "field": "emailAddress"}])
    imported(data)
    profile = db.session.scalar(db.select(Profile).where(Profile.name == "Files"))
    assert profile.settings["password"].startswith(security.ENCRYPTED_PREFIX)
    assert security.decrypt(app.config["SECRET_KEY"], profile.settings["password"]) == "hunter22"
    exported = profiles_io.export_all()
    assert exported["profiles"][0]["settings"]["password"] == security.MASK
    # Importing the export back keeps the stored secret.
    imported(exported["profiles"][0])
    db.session.refresh(profile)
    assert security.decrypt(app.config["SECRET_KEY"], profile.settings["password"]) == "hunter22"


def test_a_profile_that_is_not_an_object_is_named_by_its_place(app):
    with pytest.raises(profiles_io.ImportProblem) as exc:
        imported(profile_data(), "Second")
    assert str(exc.value) == "profiles[1]: must be an object"
    assert db.session.query(Profile).count() == 0


def test_a_pci_switch_of_false_as_text_does_not_let_a_card_number_through(app):
    data = profile_data(pci_documented="false", mappings=[{"export_name": "cc", "field": "cardNumber"}])
    with pytest.raises(profiles_io.ImportProblem, match="profile 'Call center partials': pci_documented: "):
        imported(data)
    assert db.session.query(Profile).count() == 0


FTP_SETTINGS = {"host": "ftp.example.com", "username": "u", "password": "hunter22"}


def test_settings_are_stored_as_the_types_form_reads_them(app):
    """"false" is off where the form says so, a number in text is a number, a setting left out
    takes the form's default, and a key the form does not know is not kept."""
    imported(profile_data(name="Files", export_type="ftp", settings={
        **FTP_SETTINGS, "port": "2121", "send_empty": "false", "verify_tls": False, "colour": "red"}))
    [exported] = profiles_io.export_all()["profiles"]
    settings = exported["settings"]
    assert (settings["port"], settings["send_empty"], settings["verify_tls"]) == (2121, False, False)
    assert (settings["header_row"], settings["time_zone"], settings["directory"]) == (True, "UTC", "/")
    assert "colour" not in settings and settings["password"] == security.MASK  # never in clear
    imported(profile_data(name="Files", export_type="ftp", settings={**FTP_SETTINGS, "send_empty": True}))
    assert profiles_io.export_all()["profiles"][0]["settings"]["send_empty"] is True


def test_the_edit_pages_delay_limit_is_the_imports(app):
    imported(profile_data(delay_minutes=profiles_io.MAX_DELAY_MINUTES))
    assert db.session.scalar(db.select(Profile.delay_minutes)) == 525_600


# --- send windows and daily caps (issue 12) ------------------------------------------------------

WINDOW = {"days": ["mon", "tue", "wed", "thu", "fri"], "from": "08:00", "to": "20:00"}


def test_the_send_window_and_daily_cap_go_out_and_come_back(app):
    make_profile(send_window=WINDOW, time_zone="America/New_York", daily_cap=500, over_cap="skip")
    exported = profiles_io.export_all()["profiles"][0]
    assert {k: exported[k] for k in ("send_window", "time_zone", "daily_cap", "over_cap")} == {
        "send_window": WINDOW, "time_zone": "America/New_York", "daily_cap": 500, "over_cap": "skip"}
    imported({**exported, "send_window": None, "daily_cap": None})
    profile = db.session.scalar(db.select(Profile))
    assert (profile.window_start, profile.daily_cap, profile.window_time_zone) == (None, None, "America/New_York")
    imported(exported)
    assert profiles_io.export_all()["profiles"][0] == exported


def test_a_file_without_them_has_no_window_and_no_cap(app):
    profile = make_profile()
    assert (profile.window_start, profile.window_end, profile.daily_cap, profile.window_time_zone,
            profile.over_cap) == (None, None, None, "UTC", "wait")


@pytest.mark.parametrize("change,field,message", [
    (dict(send_window="8-20"), "send_window", '"from": "HH:MM"'),
    (dict(send_window={**WINDOW, "from": "8am"}), "send_window.from", "HH:MM"),
    (dict(send_window={**WINDOW, "to": None}), "send_window.to", "HH:MM"),
    (dict(send_window={**WINDOW, "to": "25:00"}), "send_window.to", "HH:MM"),
    (dict(send_window={**WINDOW, "to": "08:00"}), "send_window.to", "whole day"),
    (dict(send_window={**WINDOW, "days": []}), "send_window.days", "at least one day"),
    (dict(send_window={**WINDOW, "days": ["monday"]}), "send_window.days", "'monday' is not a day"),
    (dict(send_window={**WINDOW, "days": "mon"}), "send_window.days", "list of days"),
    (dict(time_zone="Eastern"), "time_zone", "not a time zone"),
    (dict(time_zone=5), "time_zone", "not a time zone"),
    (dict(time_zone="a" * 300), "time_zone", "at most 64 characters"),
    (dict(time_zone="../" * 20 + "etc"), "time_zone", "not a time zone"),
    (dict(daily_cap=0), "daily_cap", "from 1 to"),
    (dict(daily_cap="500"), "daily_cap", "whole number"),
    (dict(daily_cap=True), "daily_cap", "whole number"),
    (dict(over_cap="drop"), "over_cap", '"wait" or "skip"'),
])
def test_a_bad_window_or_cap_names_the_field_and_stores_nothing(app, change, field, message):
    with pytest.raises(profiles_io.ImportProblem) as problem:
        imported(profile_data(**change))
    assert problem.value.field == field and message in problem.value.message
    db.session.rollback()
    assert db.session.scalar(db.select(db.func.count()).select_from(Profile)) == 0


def test_an_import_that_removes_the_window_moves_deliveries_waiting_for_it(app, post_events):
    from datetime import timedelta

    from exporter import windows
    from exporter.models import Delivery, utcnow

    from ..factories import event

    opens = utcnow().replace(second=0, microsecond=0) + timedelta(hours=6)
    window = {"days": list(windows.DAYS), "from": f"{opens:%H:%M}", "to": f"{opens + timedelta(hours=1):%H:%M}"}
    make_profile(send_window=window)
    post_events(event(occurred_at=utcnow().isoformat() + "Z"))
    assert db.session.scalars(db.select(Delivery.due_at)).one() == opens
    imported(profile_data(send_window=None))
    db.session.expire_all()
    assert db.session.scalars(db.select(Delivery.due_at)).one() <= utcnow()  # due at once, not at 6 hours on


# --- version 2 (issue 24): reversals and duplicate suppression ---------------------------------

def test_a_version_1_file_still_imports_and_export_writes_version_2(app):
    from exporter.profiles import as_code
    as_code.import_all({"version": 1, "profiles": [profile_data()]})
    exported = as_code.export_all()
    assert exported["version"] == 2
    assert exported["profiles"][0]["reversal_of"] is None
    assert exported["profiles"][0]["duplicate_suppression"] is None


def test_reversal_and_duplicate_suppression_round_trip_through_the_json(app):
    from exporter.profiles import as_code
    data = {"version": 2, "profiles": [
        profile_data(name="Reversals", routes=[], reversal_of="Sales", reversal_types=["refund"],
                     duplicate_suppression={"days": 30, "by": "phone"}),
        profile_data(name="Sales")]}  # named before it appears in the file
    as_code.import_all(data)
    exported = {p["name"]: p for p in as_code.export_all()["profiles"]}
    assert exported["Reversals"]["reversal_of"] == "Sales"
    assert exported["Reversals"]["reversal_types"] == ["refund"]
    assert exported["Reversals"]["duplicate_suppression"] == {"days": 30, "by": "phone"}
    assert as_code.import_all(as_code.export_all()) == (0, 2)


@pytest.mark.parametrize("overrides, field, message", [
    ({"reversal_of": "Nobody"}, "reversal_of", "no profile named 'Nobody'"),
    ({"reversal_of": "Bad"}, "reversal_of", "cannot be the reversal of itself"),
    ({"reversal_of": "Sales", "reversal_types": ["partial"]}, "reversal_types", "'partial' cannot be reversed"),
    ({"reversal_of": "Sales", "reversal_types": []}, "reversal_types", "choose what to reverse"),
    ({"duplicate_suppression": {"days": 0}}, "duplicate_suppression.days", "from 1 to 365"),
    ({"duplicate_suppression": {"days": 5, "by": "cardNumber"}}, "duplicate_suppression.by", "not sensitive"),
    ({"duplicate_suppression": 30}, "duplicate_suppression", "must be"),
])
def test_bad_reversal_or_suppression_names_the_field_and_changes_nothing(app, overrides, field, message):
    from exporter.profiles import as_code
    with pytest.raises(as_code.ImportProblem) as exc:
        as_code.import_all({"version": 2, "profiles": [profile_data(name="Sales"), profile_data(name="Bad", **overrides)]})
    assert exc.value.field == field and message in exc.value.message
    assert db.session.scalar(db.select(db.func.count()).select_from(Profile)) == 0
