"""The Export Types page: installed types with package and version, and broken plugins with why.

Broken plugins are real distributions: a *.dist-info folder on sys.path declaring entry
points at small modules in tests/plugins, found by importlib.metadata as pip's would be.
"""
import re
from html import unescape

import pytest

from exporter import export_types
from exporter.extensions import db
from exporter.models import Profile

from ..factories import make_profile


def install_dist(root, name, version, entry_points):
    """Write a minimal installed distribution (what pip leaves in site-packages) under root."""
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = [f"{key} = {value}" for key, value in entry_points.items()]
    (info / "entry_points.txt").write_text(f"[{export_types.GROUP}]\n" + "\n".join(lines) + "\n")


@pytest.fixture
def app(tmp_path, monkeypatch, app):
    """The test app built with three more plugin distributions installed: one fails to import,
    two register one key."""
    first, second = tmp_path / "site-a", tmp_path / "site-b"
    install_dist(first, "exporter-twin-one", "1.0.0", {"twin": "tests.plugins.twin_one:TwinType"})
    install_dist(second, "exporter-extras", "2.3.1", {"crm": "tests.plugins.broken_type:CrmType",
                                                     "twin": "tests.plugins.twin_two:TwinType"})
    monkeypatch.syspath_prepend(str(second))
    monkeypatch.syspath_prepend(str(first))  # first on sys.path: its twin is found first
    from exporter import create_app

    built = create_app(app.config)  # the factory itself must survive the broken plugins
    app.extensions["export_types"] = built.extensions["export_types"]
    return app


def rows(html):
    """The Export Types table as {(type, package): [cell texts]}."""
    table = html[html.index('id="export-types"'):html.index("</table>")]
    found = {}
    for row in re.findall(r"<tr [^>]*>(.*?)</tr>", table, re.S):
        cells = [" ".join(unescape(re.sub(r"<[^>]+>", " ", cell)).split())
                 for cell in re.findall(r"<td>(.*?)</td>", row, re.S)]
        found[(cells[0], cells[3])] = cells
    return found


def test_page_lists_each_type_with_label_schedule_package_version_and_status(logged_in):
    response = logged_in.get("/export-types/")
    assert response.status_code == 200
    table = rows(response.get_data(as_text=True))
    assert table[("postback", "exporter-postback")] == ["postback", "Postback", "per event", "exporter-postback",
                                                        "0.1.0", "0", "ok"]
    assert table[("ftp", "exporter-ftp")][1:] == ["FTP", "daily file", "exporter-ftp", "0.1.0", "0", "ok"]
    assert table[("jsonlines", "exporter-jsonlines")][1:] == ["JSON Lines file", "per event", "exporter-jsonlines",
                                                              "0.1.0", "0", "ok"]
    assert table[("twin", "exporter-twin-one")][1:] == ["Twin (one)", "per event", "exporter-twin-one", "1.0.0",
                                                        "0", "ok"]


def test_a_plugin_that_fails_to_import_is_shown_with_the_reason_and_not_offered(logged_in):
    table = rows(logged_in.get("/export-types/").get_data(as_text=True))
    assert table[("crm", "exporter-extras")] == [
        "crm", "—", "—", "exporter-extras", "2.3.1", "—",
        "not available failed to import: ModuleNotFoundError: "
        "No module named 'exporter_crm_sdk_that_is_not_installed'"]
    choices = dict(logged_in.application.extensions["export_types"].choices())
    assert "crm" not in choices


def test_two_plugins_with_one_key_show_which_one_is_used_and_why_the_other_is_not(logged_in):
    table = rows(logged_in.get("/export-types/").get_data(as_text=True))
    assert table[("twin", "exporter-extras")][-1] == (
        "not available duplicate key: exporter-twin-one already registers 'twin'")
    assert dict(logged_in.application.extensions["export_types"].choices())["twin"] == "Twin (one)"


def test_the_broken_plugins_do_not_stop_the_other_pages(logged_in):
    assert logged_in.get("/profiles/").status_code == 200
    assert logged_in.get("/").status_code == 200


def test_profiles_count_per_type_and_profiles_whose_type_is_gone_are_named(logged_in):
    make_profile(name="Dialer")
    make_profile(name="Dialer 2")
    orphan = make_profile(name="Old CRM push")
    orphan.export_type = "crm"
    db.session.commit()
    html = logged_in.get("/export-types/").get_data(as_text=True)
    assert rows(html)[("postback", "exporter-postback")][5] == "2"
    stranded = html[html.index('id="stranded"'):]
    assert "Old CRM push" in stranded and "<code>crm</code>" in stranded and "Dialer" not in stranded
    assert f'/profiles/{orphan.id}"' in stranded


def test_the_page_needs_a_login(client):
    response = client.get("/export-types/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_the_nav_links_to_the_page(logged_in):
    assert 'href="/export-types/"' in logged_in.get("/").get_data(as_text=True)


def test_no_profile_rows_when_every_type_is_available(logged_in):
    make_profile()
    assert db.session.scalar(db.select(Profile.export_type)) == "postback"
    assert 'id="stranded"' not in logged_in.get("/export-types/").get_data(as_text=True)
