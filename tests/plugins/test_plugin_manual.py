"""docs/plugins.md works as written: its complete example is exactly the sample plugin the
suite installs (tests/plugins/jsonlines), and a newcomer who types it into a fresh directory
under names of their own gets a working type in the Export Type select, with no change to
Exporter."""
import json
import pathlib
import re
import subprocess
import sys

import pytest

from exporter import create_app
from exporter.extensions import db
from exporter.models import Delivery, HistoryEntry

from ..factories import event, make_profile

ROOT = pathlib.Path(__file__).parents[2]
MANUAL = ROOT / "docs" / "plugins.md"
SAMPLE = ROOT / "tests" / "plugins" / "jsonlines"


def manual_files():
    """{path: text} of each code block the manual introduces with `<!-- file: PATH -->`."""
    found = re.findall(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```\n", MANUAL.read_text(encoding="utf-8"), re.S)
    return dict(found)


def test_the_manuals_example_is_exactly_the_sample_the_suite_installs():
    files = manual_files()
    assert sorted(files) == ["exporter-jsonlines/exporter_jsonlines/__init__.py", "exporter-jsonlines/pyproject.toml"]
    for path, text in files.items():
        assert (SAMPLE / path.split("/", 1)[1]).read_text(encoding="utf-8") == text, f"{path} differs from the sample"


def test_the_manual_documents_every_part_of_the_contract():
    manual = MANUAL.read_text(encoding="utf-8")
    for name in ("`key`", "`label`", "`schedule`", "`settings_form`", "`secret_settings`", "`thread_safe`", "`__init__(self", "`close(self)`",
                 "`send(self, batch: Batch) -> Outcome`", "`preview(self", "`test_connection(self", "`describe(self",
                 "`columns:", "`rows:", "`profile_name:", "`idempotency_key:", "`route_id:", "`file_date:",
                 "`is_test:", "`allow_private_targets:", "`ok:", "`method: str`", "`request_headers:", "`status:",
                 "`response_headers:", "`elapsed_ms:", "`error:", "`retry_after:", "`summary:", "`details:",
                 "`rejected:", "`captured:", "build_body(", "BodyTemplate(", "ResponseRules(", "BodyTemplateFields",
                 "ResponseRuleSettings"):
        assert name in manual, f"{name} is not documented"


NEWCOMER_NAMES = [("exporter-jsonlines", "exporter-acme-lines"), ("exporter_jsonlines", "exporter_acme_lines"),
                  ('key = "jsonlines"', 'key = "acme_lines"'), ("\njsonlines = ", "\nacme_lines = "),
                  ("JSON Lines file", "Acme lines")]


def pip_install(project, site):
    """A real `pip install PROJECT` into a directory, offline: the newcomer's own build of the plugin."""
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps", "--no-index",
                    "--target", str(site), str(project)], check=True, capture_output=True)


@pytest.fixture
def newcomer_plugin(tmp_path, monkeypatch):
    """The manual's files typed into a fresh directory under the newcomer's own names, installed."""
    project, site = tmp_path / "exporter-acme-lines", tmp_path / "site-packages"
    site.mkdir()
    for path, text in manual_files().items():
        for old, new in NEWCOMER_NAMES:
            path, text = path.replace(old, new), text.replace(old, new)
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    pip_install(project, site)
    monkeypatch.syspath_prepend(str(site))
    yield
    sys.modules.pop("exporter_acme_lines", None)


def test_a_newcomer_following_the_manual_gets_a_working_type(newcomer_plugin, logged_in, app, post_events,
                                                               run_jobs, tmp_path):
    # Exporter as it starts after the install: the same factory, nothing changed in its code.
    app.extensions["export_types"] = create_app(app.config).extensions["export_types"]
    [entry] = [e for e in app.extensions["export_types"].entries if e.key == "acme_lines"]
    assert (entry.package, entry.version, entry.status) == ("exporter-acme-lines", "0.1.0", "ok")
    page = logged_in.get("/profiles/").get_data(as_text=True)
    assert '<option value="acme_lines">Acme lines</option>' in page
    assert "<code>acme_lines</code>" in logged_in.get("/export-types/").get_data(as_text=True)

    out = tmp_path / "leads.jsonl"
    make_profile(name="Acme", export_type="acme_lines", settings={"path": str(out)})
    post_events(event())
    run_jobs(until=lambda: db.session.scalars(db.select(Delivery)).one().status == "delivered")
    assert json.loads(out.read_text())["first_name"] == "Jane"
    assert db.session.scalars(db.select(HistoryEntry.message)).all() == [
        "Export profile 'Acme' fired: appended 1 JSON line to leads.jsonl"]
