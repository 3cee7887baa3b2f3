"""Alerts against a real SMTP server on loopback (aiosmtpd) and a real HTTP receiver: one message
when an incident has held its grace time, one when it ends, never a flood; each condition a check
in the registry."""
import json
from datetime import timedelta

import pytest

from exporter.extensions import db
from exporter.models import AlertIncident, AuditEntry, Delivery, Host, Worker, utcnow
from exporter.ops import alerts

from ..factories import make_profile
from .smtp_server import SMTPServer


@pytest.fixture
def smtp():
    server = SMTPServer(username="mailer", password="s3cret pass").start()
    yield server
    server.stop()


@pytest.fixture
def configured(app, admin, smtp, receiver):
    """SMTP on loopback with a login, the webhook on the receiver, the admin opted in, a live worker."""
    alerts.save_settings({"smtp_host": "127.0.0.1", "smtp_port": smtp.port, "smtp_security": "none",
                          "smtp_username": "mailer", "mail_from": "exporter@example.com",
                          "webhook_url": receiver.url + "/hook", "host_down_minutes": 15, "no_worker_minutes": 5},
                         app.config["SECRET_KEY"], new_password="s3cret pass")
    alerts.set_opt_in(admin, True)
    db.session.add(Worker(name="here:1", seen_at=utcnow()))
    db.session.commit()
    return app.config


def tick(config, at):
    """The cron's pass at a later time, the worker still beating then."""
    db.session.get(Worker, "here:1").seen_at = at
    db.session.commit()
    return alerts.tick(config, now=at)


def down_host(name="api.partner.example", minutes=0):
    db.session.merge(Host(name=name, failures=5, down_since=utcnow() - timedelta(minutes=minutes),
                        last_error="HTTP 503 Service Unavailable"))
    db.session.commit()


def test_a_host_down_is_told_once_after_its_minutes_and_once_when_it_is_back(configured, smtp, receiver):
    down_host()
    now = utcnow()
    assert tick(configured, now) == []  # down, but not 15 minutes yet
    sent = tick(configured, now + timedelta(minutes=16))
    assert sent == [("Partner host api.partner.example is down", "email"),
                    ("Partner host api.partner.example is down", "webhook")]
    rcpts, mail = smtp.wait_for(1)[0]
    assert rcpts == ["admin@example.com"] and smtp.logins == [True]
    assert mail["Subject"] == "[Exporter] Partner host api.partner.example is down"
    assert "HTTP 503 Service Unavailable" in mail.get_content()
    hook = json.loads(receiver.requests[0].body)
    assert hook["text"].startswith("*Partner host api.partner.example is down*")

    for minutes in (17, 18, 30, 90):  # still down: nothing more
        assert tick(configured, now + timedelta(minutes=minutes)) == []
    assert len(smtp.messages) == 1 and len(receiver.requests) == 1

    db.session.get(Host, "api.partner.example").down_since = None
    db.session.commit()
    sent = tick(configured, now + timedelta(minutes=95))
    assert [s for s, _ in sent] == ["Resolved: Partner host api.partner.example is down"] * 2
    assert smtp.wait_for(2)[1][1]["Subject"] == "[Exporter] Resolved: Partner host api.partner.example is down"
    assert "after 1 h 35 min" in smtp.messages[1][1].get_content()
    assert tick(configured, now + timedelta(minutes=96)) == []

    down_host(minutes=20)  # down again: a new incident, told again
    assert len(tick(configured, now + timedelta(minutes=97))) == 2
    assert db.session.query(AlertIncident).count() == 2


def test_a_host_back_before_its_minutes_is_never_told(configured, smtp):
    down_host()
    alerts.tick(configured)
    db.session.get(Host, "api.partner.example").down_since = None
    db.session.commit()
    assert tick(configured, utcnow() + timedelta(minutes=30)) == []
    assert smtp.messages == [] and db.session.query(AlertIncident).count() == 0


def test_a_failed_daily_file_is_told_at_once_and_when_it_is_sent(configured, smtp):
    profile = make_profile(name="Nightly file")
    route = profile.routes[0]
    day = (utcnow() - timedelta(days=1)).date()
    delivery = Delivery(profile_id=profile.id, route_id=route.id, file_date=day, status="retrying",
                        due_at=utcnow(), attempt_count=2, last_error="could not log in to the FTP server\n530")
    db.session.add(delivery)
    db.session.commit()
    sent = alerts.tick(configured)
    assert sent[0][0] == f"The daily file of Nightly file for {day:%Y-%m-%d} failed"
    assert "2 attempts so far" in smtp.wait_for(1)[0][1].get_content()
    assert "could not log in to the FTP server" in smtp.messages[0][1].get_content()
    delivery.status = "delivered"
    db.session.commit()
    assert alerts.tick(configured)[0][0].startswith("Resolved: The daily file of Nightly file")


def test_no_live_worker_for_its_minutes(configured, smtp):
    worker = db.session.get(Worker, "here:1")
    worker.seen_at = utcnow() - timedelta(minutes=2)
    db.session.commit()
    assert alerts.tick(configured) == []  # silent for 2 minutes: under the 5
    sent = alerts.tick(configured, now=utcnow() + timedelta(minutes=4))
    assert [s for s, _ in sent] == ["No worker is alive: nothing is sent"] * 2
    assert "last seen" in smtp.wait_for(1)[0][1].get_content()
    worker.seen_at = utcnow() + timedelta(minutes=5)  # a heartbeat again
    db.session.commit()
    assert [s for s, _ in alerts.tick(configured, now=utcnow() + timedelta(minutes=5))] == [
        "Resolved: No worker is alive: nothing is sent"] * 2


def test_no_worker_ever_counts_from_when_it_was_first_seen(configured):
    db.session.query(Worker).delete()  # stopped cleanly: a farewell removes the row
    db.session.commit()
    now = utcnow()
    assert alerts.tick(configured, now=now) == []
    assert alerts.tick(configured, now=now + timedelta(minutes=4)) == []
    assert len(alerts.tick(configured, now=now + timedelta(minutes=5))) == 2


def test_a_message_no_channel_took_is_tried_again_next_time(configured, smtp, receiver):
    smtp.stop()
    receiver.default.status = 500
    down_host(minutes=20)
    assert alerts.tick(configured) == []
    incident = db.session.query(AlertIncident).one()
    assert incident.told_at is None
    assert "email: ConnectionRefusedError" in incident.last_error and "HTTP 500" in incident.last_error
    receiver.default.status = 200
    assert alerts.tick(configured) == [("Partner host api.partner.example is down", "webhook")]
    assert alerts.tick(configured) == []


def test_two_crons_at_once_tell_it_once(configured, smtp, app):
    down_host(minutes=20)
    first = alerts.tick(configured)
    second = alerts.tick(configured)  # a second cron's pass: the incident is open and told
    assert len(first) == 2 and second == []
    with pytest.raises(Exception):  # the open key is unique: a second open incident cannot be stored
        db.session.add(AlertIncident(key="host_down:api.partner.example", open_key="host_down:api.partner.example",
                                     kind="host_down", title="", detail=""))
        db.session.commit()
    db.session.rollback()


def test_the_password_is_stored_encrypted_and_audited_masked(configured):
    settings = alerts.current_settings()
    assert settings.smtp_password.startswith("enc:") and "s3cret" not in settings.smtp_password
    entry = db.session.query(AuditEntry).filter_by(action="alerts.update").one()
    assert entry.after["SMTP Password"] == "****"
    assert "s3cret" not in json.dumps(entry.after)


def test_a_new_check_is_one_function(configured, smtp, monkeypatch):
    monkeypatch.setitem(alerts.CHECKS, "pgp_expiry", alerts.CHECKS["host_down"])  # restored after the test
    del alerts.CHECKS["pgp_expiry"]

    @alerts.alert_check("pgp_expiry", "A PGP key is about to expire")
    def keys_expiring(context):
        return [alerts.Condition("pgp_expiry:7", "The PGP key of Nightly file expires in 10 days")]

    assert alerts.tick(configured)[0][0] == "The PGP key of Nightly file expires in 10 days"


def test_a_pgp_key_that_expires_within_30_days_is_told_once_and_when_it_is_replaced(configured, smtp):
    from ..pgp import Partner

    soon, later = Partner(expires_in_days=10, name="Soon"), Partner(name="Later")
    try:
        profile = make_profile(name="Nightly file", export_type="ftp", settings={
            "host": "ftp.example.com", "username": "u", "file_name": "{date}.csv.pgp", "pgp_key": later.public_key})
        assert alerts.tick(configured) == []  # a key good for a year is no incident
        profile.settings = {**profile.settings, "pgp_key": soon.public_key}
        db.session.commit()
        sent = alerts.tick(configured)
        assert sent[0][0].startswith("The PGP key of Nightly file expires on ")
        assert soon.fingerprint in smtp.wait_for(1)[0][1].get_content()
        assert alerts.tick(configured) == []  # told once, not at every tick
        profile.settings = {**profile.settings, "pgp_key": later.public_key}
        db.session.commit()
        assert alerts.tick(configured)[0][0].startswith("Resolved: The PGP key of Nightly file")
    finally:
        soon.close()
        later.close()
