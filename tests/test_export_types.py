"""The plugin registry and the contract's defaults: discover() with real entry points."""
from importlib.metadata import EntryPoint

from exporter_postback import PostbackType

from exporter.export_types import DAILY_FILE, GROUP, PER_EVENT, Batch, ExportType, Outcome, discover

from .plugins.twin_one import TwinSettings


def ep(name, value):
    return EntryPoint(name=name, value=value, group=GROUP)


def statuses(registry):
    return {(e.key, e.package): e.status for e in registry.entries}


def test_installed_types_are_found_through_their_distributions_entry_points():
    registry = discover()
    found = {e.key: (e.package, e.version, e.status) for e in registry.entries}
    assert found["postback"] == ("exporter-postback", "0.1.0", "ok")
    assert found["ftp"] == ("exporter-ftp", "0.1.0", "ok")
    assert found["s3"] == ("exporter-s3", "0.1.0", "ok")
    assert found["jsonlines"] == ("exporter-jsonlines", "0.1.0", "ok")  # the sample third party's
    assert ("jsonlines", "JSON Lines file") in registry.choices()
    assert registry.get("postback") is PostbackType


def test_a_plugin_that_fails_to_import_is_reported_and_the_others_still_load():
    registry = discover([ep("postback", "exporter_postback:PostbackType"),
                         ep("crm", "tests.plugins.broken_type:CrmType")])
    assert statuses(registry) == {
        ("crm", "tests.plugins.broken_type"):
            "failed to import: ModuleNotFoundError: No module named 'exporter_crm_sdk_that_is_not_installed'",
        ("postback", "exporter_postback"): "ok",
    }
    assert registry.get("crm") is None
    assert registry.choices() == [("postback", "Postback")]


def test_two_plugins_with_one_key_keep_the_first_and_report_the_second():
    registry = discover([ep("twin", "tests.plugins.twin_one:TwinType"), ep("twin", "tests.plugins.twin_two:TwinType")])
    assert statuses(registry) == {
        ("twin", "tests.plugins.twin_one"): "ok",
        ("twin", "tests.plugins.twin_two"): "duplicate key: tests.plugins.twin_one already registers 'twin'",
    }
    assert registry.get("twin").label == "Twin (one)"
    assert registry.choices() == [("twin", "Twin (one)")]


def test_entry_points_that_load_but_break_the_contract_are_refused_with_the_reason():
    registry = discover([ep("plain", "tests.plugins.odd_types:NotAType"),
                         ep("wrong", "tests.plugins.odd_types:WrongKey"),
                         ep("hourly", "tests.plugins.odd_types:HourlyType"),
                         ep("noform", "tests.plugins.odd_types:NoFormType"),
                         ep("missing", "tests.plugins.odd_types:NoSuchClass")])
    reasons = {e.key: e.status for e in registry.entries}
    assert reasons == {
        "plain": "does not subclass exporter.export_types.ExportType",
        "wrong": "its key 'other' differs from the entry-point name 'wrong'",
        "hourly": "unknown schedule 'hourly'",
        "noform": "settings_form is not a WTForms Form",
        "missing": "failed to import: AttributeError: module 'tests.plugins.odd_types' has no attribute 'NoSuchClass'",
    }
    assert registry.types == {}


class Minimal(ExportType):
    key = "minimal"
    label = "Minimal"
    settings_form = TwinSettings

    def send(self, batch):
        return Outcome(ok=True)


def test_the_contracts_defaults():
    export_type = Minimal({"name": "x"})
    assert export_type.settings == {"name": "x"}
    assert Minimal.schedule == PER_EVENT and Minimal.secret_settings == ()
    assert Minimal.test_connection is None  # optional: the page offers Test connection only when defined
    assert export_type.describe() == ""
    # The default preview is a CSV header and row, quoted as needed.
    assert export_type.preview(["name", "note"], [("name", "Jane"), ("note", "a, b")]) == 'name,note\r\nJane,"a, b"\r\n'
    batch = Batch(columns=["name"], rows=[[("name", "Jane")]], profile_name="p", idempotency_key="1")
    assert (batch.is_test, batch.allow_private_targets, batch.file_date, batch.route_id) == (False, False, None, None)
    assert DAILY_FILE == "daily_file"
