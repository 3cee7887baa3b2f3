"""Profiles as code: the whole file is checked before anything changes."""
import pytest

from exporter import profiles_io, security
from exporter.extensions import db
from exporter.models import Profile

from .factories import make_profile, profile_data


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
    assert "password" not in exported["profiles"][0]["settings"]
    # Importing the export back keeps the stored secret.
    imported(exported["profiles"][0])
    db.session.refresh(profile)
    assert security.decrypt(app.config["SECRET_KEY"], profile.settings["password"]) == "hunter22"
