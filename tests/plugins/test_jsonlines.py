"""A third-party export type, end to end: the sample distribution in tests/plugins/jsonlines
(installed by `make install`, its own pyproject.toml and entry point) is offered in the
Export Type select, its settings form validates on the profile page, and events routed to
it are delivered through it with attempts and history, with nothing about it in exporter/."""
import json
import pathlib
import re
import sys
from importlib.metadata import distribution

import exporter_jsonlines
import pytest
from exporter_jsonlines import JsonLinesType

from exporter.profiles import as_code as profiles_io
from exporter.extensions import db
from exporter.models import Delivery, HistoryEntry, Profile

from ..factories import event, make_profile
from ..pages import error_beside, text

SAMPLE = pathlib.Path(__file__).parent / "jsonlines"
EXPORTER = pathlib.Path(__file__).parents[2] / "exporter"



def jsonlines_profile(path, **settings):
    return make_profile(name="Lines", export_type="jsonlines", settings={"path": str(path), **settings})


def the_delivery():
    return db.session.scalars(db.select(Delivery)).one()


def test_the_sample_is_installed_from_its_own_directory_with_its_entry_point():
    dist = distribution("exporter-jsonlines")
    [ep] = [e for e in dist.entry_points if e.group == "exporter.export_types"]
    assert (ep.name, ep.value) == ("jsonlines", "exporter_jsonlines:JsonLinesType")
    assert ep.load() is JsonLinesType
    # Built by pip from its own directory for this test run (tests/conftest.py), not kept in the virtualenv.
    installed = pathlib.Path(exporter_jsonlines.__file__)
    assert installed.read_text() == (SAMPLE / "exporter_jsonlines" / "__init__.py").read_text()
    assert not installed.is_relative_to(pathlib.Path(sys.prefix))


def test_exporter_names_no_plugin_in_its_code():
    mentions = [str(p) for p in EXPORTER.rglob("*") if p.is_file() and p.suffix in (".py", ".html", ".js")
                and re.search(r"jsonlines|exporter_jsonlines|exporter_postback|exporter_ftp|exporter_s3", p.read_text())]
    assert mentions == []


# --- the profile screens ----------------------------------------------------------------------------

def test_the_type_is_offered_in_the_export_type_select(logged_in):
    page = text(logged_in.get("/profiles/"))
    select = page[page.index('name="export_type"'):]
    select = select[:select.index("</select>")]
    assert '<option value="jsonlines">JSON Lines file</option>' in select


def test_creating_a_profile_of_the_type_opens_its_own_settings_form(logged_in):
    response = logged_in.post("/profiles/new", data={"name": "Lines", "export_type": "jsonlines"})
    assert response.status_code == 302
    page = text(logged_in.get(response.headers["Location"]))
    assert re.search(r'<option selected value="jsonlines">|<option value="jsonlines" selected>', page)
    assert "JSON Lines file settings" in page
    assert 'id="field-settings-path"' in page and ">File Path</label>" in page
    assert 'id="field-settings-id_field"' in page and ">Idempotency Key Field</label>" in page


def general_settings(profile, **settings):
    return {"name": profile.name, "export_type": "jsonlines", "delay_minutes": "0", "active": "y",
            **{f"settings-{k}": v for k, v in settings.items()}}




@pytest.mark.parametrize("path, error", [
    ("", "File Path is required"),
    ("relative/out.jsonl", "File Path must be absolute, e.g. /var/exports/partials.jsonl"),
    ("{tmp}", "File Path names a directory; add a file name"),
    ("{tmp}/missing/out.jsonl", "the directory {tmp}/missing does not exist"),
])
def test_the_settings_form_validates_on_the_profile_page(logged_in, tmp_path, path, error):
    profile = jsonlines_profile(tmp_path / "ok.jsonl")
    response = logged_in.post(f"/profiles/{profile.id}", data=general_settings(profile, path=path.format(tmp=tmp_path)))
    assert response.status_code == 422
    assert error_beside(text(response), "settings-path") == [error.format(tmp=tmp_path)]
    db.session.expire_all()
    assert db.session.get(Profile, profile.id).settings == {"path": str(tmp_path / "ok.jsonl")}


def test_good_settings_are_saved_from_the_profile_page(logged_in, tmp_path):
    profile = jsonlines_profile(tmp_path / "ok.jsonl")
    response = logged_in.post(f"/profiles/{profile.id}",
                              data=general_settings(profile, path=str(tmp_path / "new.jsonl"), id_field="event_id"))
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(Profile, profile.id).settings == {"path": str(tmp_path / "new.jsonl"), "id_field": "event_id"}


def test_the_settings_form_validates_in_the_profiles_json_too(app, tmp_path):
    with pytest.raises(profiles_io.ImportProblem) as problem:
        jsonlines_profile("out.jsonl")
    assert str(problem.value) == ("profile 'Lines': settings.path: "
                                  "File Path must be absolute, e.g. /var/exports/partials.jsonl")
    with pytest.raises(profiles_io.ImportProblem, match="settings.id_field: letters, digits and _ only"):
        jsonlines_profile(tmp_path / "out.jsonl", id_field="event id")


# --- events routed to it ----------------------------------------------------------------------------

def test_events_are_delivered_through_the_type_with_attempts_and_history(app, post_events, run_jobs, tmp_path):
    out = tmp_path / "partials.jsonl"
    jsonlines_profile(out, id_field="delivery")
    response = post_events({"events": [event("evt-1", firstName="José & Co"), event("evt-2", firstName="Ann")]})
    assert response.get_json()["deliveries"] == 2
    run_jobs(until=lambda: all(d.status == "delivered" for d in db.session.scalars(db.select(Delivery))))
    deliveries = {d.event.event_key: d for d in db.session.scalars(db.select(Delivery))}
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert sorted(lines, key=lambda r: r["delivery"]) == [
        {"first_name": "José & Co", "order_date": "2026-11-27 14:03:22", "list_id": "400",
         "email_address": "jane@example.com", "campaign_number": "259", "delivery": str(deliveries["evt-1"].id)},
        {"first_name": "Ann", "order_date": "2026-11-27 14:03:22", "list_id": "400",
         "email_address": "jane@example.com", "campaign_number": "259", "delivery": str(deliveries["evt-2"].id)}]
    assert list(lines[0]) == ["first_name", "order_date", "list_id", "email_address", "campaign_number", "delivery"]
    [attempt] = deliveries["evt-1"].attempts
    assert (attempt.ok, attempt.method, attempt.target, attempt.is_test) == (True, "APPEND", str(out), False)
    assert json.loads(attempt.request_body)["first_name"] == "José & Co"
    assert deliveries["evt-1"].details == {"file": str(out), "lines": 1}
    history = db.session.scalars(db.select(HistoryEntry).order_by(HistoryEntry.id)).all()
    assert [h.message for h in history] == ["Export profile 'Lines' fired: appended 1 JSON line to partials.jsonl"] * 2
    assert {h.delivery_id for h in history} == {d.id for d in deliveries.values()}


def test_a_failed_append_is_retried_like_any_export_until_it_succeeds(app, post_events, run_jobs, tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    jsonlines_profile(folder / "out.jsonl")
    folder.rmdir()  # the mount went away after the profile was saved
    post_events(event())
    run_jobs(until=lambda: the_delivery().attempt_count >= 1 and the_delivery().status == "retrying")
    delivery = the_delivery()
    assert delivery.last_error == f"cannot append to {folder / 'out.jsonl'}: No such file or directory"
    assert db.session.scalars(db.select(HistoryEntry)).all() == []
    folder.mkdir()
    run_jobs(until=lambda: the_delivery().status == "delivered")
    oks = [a.ok for a in the_delivery().attempts]
    assert oks[-1] and not any(oks[:-1]) and len(oks) >= 2
    assert len((folder / "out.jsonl").read_text().splitlines()) == 1
    assert len(db.session.scalars(db.select(HistoryEntry)).all()) == 1
