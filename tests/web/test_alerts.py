"""The Alerts page: SMTP settings (the password encrypted, never shown, kept when left blank),
the webhook, thresholds, each admin's opt-in, a test message to a real SMTP server on loopback;
bad input gets its error beside the field; viewers read it and change nothing."""
import pytest

from exporter.extensions import db
from exporter.models import AlertSettings
from exporter.ops import alerts

from ..ops.smtp_server import SMTPServer
from .test_roles import fresh, viewer, viewing  # noqa: F401 - fixtures

GOOD = {"smtp_host": "127.0.0.1", "smtp_port": "2525", "smtp_security": "none", "smtp_username": "mailer",
        "smtp_password": "p4ss word", "mail_from": "exporter@example.com", "webhook_url": "",
        "host_down_minutes": "10", "no_worker_minutes": "3"}


@pytest.fixture
def smtp():
    server = SMTPServer().start()
    yield server
    server.stop()


def test_saved_settings_keep_the_password_encrypted_and_never_show_it(logged_in, app):
    response = logged_in.post("/alerts/", data=GOOD)
    assert response.status_code == 302
    stored = db.session.scalar(db.select(AlertSettings))
    assert stored.smtp_password.startswith("enc:") and stored.host_down_minutes == 10
    page = logged_in.get("/alerts/").get_data(as_text=True)
    assert "p4ss word" not in page and stored.smtp_password not in page
    assert "A password is stored (encrypted): leave blank to keep it." in page

    logged_in.post("/alerts/", data={**GOOD, "smtp_password": "", "host_down_minutes": "20"})
    db.session.expire_all()
    stored = db.session.scalar(db.select(AlertSettings))
    assert stored.host_down_minutes == 20
    assert alerts.security.decrypt(app.config["SECRET_KEY"], stored.smtp_password) == "p4ss word"

    logged_in.post("/alerts/", data={**GOOD, "smtp_password": "", "clear_password": "y"})
    db.session.expire_all()
    assert db.session.scalar(db.select(AlertSettings)).smtp_password == ""


@pytest.mark.parametrize("field, value, error", [
    ("smtp_port", "0", "Give a port from 1 to 65535"),
    ("smtp_port", "smtp", "Give a port from 1 to 65535"),
    ("smtp_port", "", "SMTP Port is required"),
    ("host_down_minutes", "0", "Give 1 to 1440 minutes"),
    ("no_worker_minutes", "", "No worker for (minutes) is required"),
    ("mail_from", "not an address", "Give an email address, e.g. exporter@example.com"),
    ("webhook_url", "ftp://hooks.example.com/x", "the URL must be http:// or https:// with a host"),
])
def test_bad_input_is_refused_beside_its_field_and_nothing_is_stored(logged_in, field, value, error):
    response = logged_in.post("/alerts/", data={**GOOD, field: value})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Alerts not saved: see the errors below." in page
    assert f'id="field-{field}"' in page and error in page.split(f'id="field-{field}"')[1].split("</div>")[0]
    assert db.session.scalar(db.select(AlertSettings)) is None


def test_a_private_webhook_is_refused_unless_private_targets_are_allowed(logged_in, app):
    app.config["ALLOW_PRIVATE_TARGETS"] = False
    response = logged_in.post("/alerts/", data={**GOOD, "webhook_url": "http://127.0.0.1:9/hook"})
    assert response.status_code == 422
    assert "EXPORTER_ALLOW_PRIVATE_TARGETS" in response.get_data(as_text=True)


def test_an_admin_opts_in_and_a_test_alert_reaches_them(logged_in, admin, smtp):
    logged_in.post("/alerts/", data={**GOOD, "smtp_port": str(smtp.port), "smtp_username": "", "smtp_password": ""})
    response = logged_in.post("/alerts/test", follow_redirects=True)
    assert "nobody to tell" in response.get_data(as_text=True)  # nobody opted in yet

    response = logged_in.post("/alerts/me", data={"wanted": "y"}, follow_redirects=True)
    assert "You get alert emails." in response.get_data(as_text=True)
    assert [u.email for u in alerts.recipients()] == ["admin@example.com"]
    response = logged_in.post("/alerts/test", follow_redirects=True)
    assert "Test alert sent by email." in response.get_data(as_text=True)
    rcpts, mail = smtp.wait_for(1)[0]
    assert rcpts == ["admin@example.com"] and mail["Subject"] == "[Exporter] Test alert"

    logged_in.post("/alerts/me", data={"wanted": ""})
    assert alerts.recipients() == []


def test_a_viewer_reads_the_page_and_changes_nothing(logged_in, viewing):
    logged_in.post("/alerts/", data=GOOD)
    page = fresh(viewing, "GET", "/alerts/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Save Alerts" not in html and "Email me alerts" not in html and "p4ss" not in html
    for url in ("/alerts/", "/alerts/me", "/alerts/test"):
        assert fresh(viewing, "POST", url, data=GOOD).status_code == 403
