"""Alerts: tell the admins who opt in (email) and a chat channel (a Slack-compatible webhook)
when something needs a person: a partner host down N minutes, a daily file that failed, no
worker alive for N minutes, a partner's PGP key that expires within 30 days.

A condition is found by a check, one small function in CHECKS (`@alert_check`): it returns the
conditions that hold now, each with a key ("host_down:api.partner.com"). `tick()` (cron, every
SWEEP_INTERVAL_SECONDS) keeps one AlertIncident per key while it holds: the incident is told
once when it has held its check's grace time, and once when it ends; a condition gone before
its grace time is forgotten untold. Two crons tell it once: the open incident's key is unique,
and each message is claimed with a conditional UPDATE before it is sent. A message that could
not be sent on any channel is tried again at the next tick.

Adding a condition is one function, as pgp_keys_expiring below:

    @alert_check("kind", "What it is")
    def find_them(context):
        return [Condition("kind:" + key, "One line for the subject", "The details") for key in ...]

No Flask here: the caller passes the app's config.
"""
import smtplib
import ssl
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Callable

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from .. import audit, security
from . import stats
from ..extensions import db, writing
from ..models import AlertIncident, AlertRecipient, AlertSettings, Delivery, Host, ROLE_ADMIN, User, Worker, utcnow

SEND_TIMEOUT_SECONDS = 10
RETRY_END_DAYS = 1  # an "ended" message that cannot be sent is retried this long
SECURITY_MODES = ("starttls", "ssl", "none")


# --- the checks -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Condition:
    key: str  # the same key while it holds, e.g. "host_down:api.partner.com"
    title: str  # one line: the message's subject
    detail: str = ""
    since: datetime | None = None  # when it began, when the check knows; else when first seen


@dataclass
class Context:
    now: datetime
    settings: AlertSettings
    config: dict


@dataclass(frozen=True)
class AlertCheck:
    kind: str
    label: str
    find: Callable[[Context], list[Condition]]
    grace_minutes: Callable[[AlertSettings], int] = lambda settings: 0


CHECKS: dict[str, AlertCheck] = {}


def alert_check(kind, label, grace_minutes=lambda settings: 0):
    """Register a check: a function of a Context returning the Conditions that hold now."""
    def register(find):
        CHECKS[kind] = AlertCheck(kind, label, find, grace_minutes)
        return find
    return register


@alert_check("host_down", "A partner host is down", lambda settings: settings.host_down_minutes)
def hosts_down(context):
    hosts = db.session.scalars(select(Host).where(Host.down_since.is_not(None))).all()
    waiting = dict(db.session.execute(
        select(Delivery.target, func.count()).where(Delivery.status.in_(Delivery.WAITING),
                                                   Delivery.target.in_([h.name for h in hosts]))
        .group_by(Delivery.target)).all()) if hosts else {}
    return [Condition(f"host_down:{host.name}", f"Partner host {host.name} is down",
                      f"Down since {host.down_since:%Y-%m-%d %H:%M} UTC; {_count(waiting.get(host.name, 0), 'delivery', 'deliveries')} "
                      f"waiting for it. Last error: {(host.last_error or 'none').splitlines()[0]}",
                      since=host.down_since) for host in hosts]


@alert_check("daily_file_failed", "A daily file failed")
def daily_files_failed(context):
    files = db.session.scalars(select(Delivery).where(Delivery.file_date.is_not(None),
                                                      Delivery.status == "retrying")).all()
    return [Condition(f"daily_file:{d.id}", f"The daily file of {d.profile.name} for {d.file_date:%Y-%m-%d} failed",
                      f"Delivery {d.id}, {_count(d.attempt_count, 'attempt')} so far; it is retried. "
                      f"Last error: {(d.last_error or 'none').splitlines()[0]}") for d in files]


@alert_check("no_worker", "No worker is alive", lambda settings: settings.no_worker_minutes)
def no_live_worker(context):
    stale = context.now - timedelta(seconds=float(context.config.get("WORKER_STALE_SECONDS", 20)))
    last_seen = db.session.scalar(select(func.max(Worker.seen_at)))
    if isinstance(last_seen, str):  # SQLite's max() of a datetime column
        last_seen = datetime.fromisoformat(last_seen)
    if last_seen is not None and last_seen >= stale:
        return []
    seen = f"last seen {last_seen:%Y-%m-%d %H:%M} UTC" if last_seen else "none has beaten since"
    return [Condition("no_worker", "No worker is alive: nothing is sent",
                      f"No `exporter worker` has sent a heartbeat ({seen}). Deliveries wait; none is lost. "
                      "Start a worker (`exporter run` restarts its own).", since=last_seen)]


@alert_check("pgp_expiry", "A PGP key is about to expire")
def pgp_keys_expiring(context):
    """A partner's PGP Public Key that expires within the dashboard's 30 days (or has): one incident
    per profile and key, ended when the key is replaced."""
    return [Condition(f"pgp_expiry:{k.profile.id}:{k.fingerprint}",
                      f"The PGP key of {k.profile.name} " + (f"expires on {k.expires:%Y-%m-%d}" if k.days_left > 0
                                                           else f"expired on {k.expires:%Y-%m-%d}"),
                      f"Key {k.fingerprint}. Its daily files cannot be encrypted once it has expired: paste the "
                      "partner's new key in the profile's General Settings.")
            for k in stats.expiring_pgp_keys(context.now)]


def _count(n, one, many=None):
    return f"{n} {one if n == 1 else many or one + 's'}"


# --- settings and recipients ------------------------------------------------------------------

def current_settings():
    """The saved settings, or the defaults (not stored) before the first save."""
    return db.session.scalar(select(AlertSettings).order_by(AlertSettings.id).limit(1)) or _defaults()


def _defaults():
    return AlertSettings(smtp_host="", smtp_port=587, smtp_security="starttls", smtp_username="",
                         smtp_password="", mail_from="", webhook_url="", host_down_minutes=15, no_worker_minutes=5)


SETTING_LABELS = {"smtp_host": "SMTP Host", "smtp_port": "SMTP Port", "smtp_security": "Security",
                  "smtp_username": "SMTP Username", "smtp_password": "SMTP Password", "mail_from": "From",
                  "webhook_url": "Alert Webhook URL", "host_down_minutes": "Host down for",
                  "no_worker_minutes": "No worker for"}


def _snapshot(settings):
    return {label: getattr(settings, name) for name, label in SETTING_LABELS.items()}


def save_settings(values, secret_key, new_password=None, clear_password=False):
    """Store the settings (the password encrypted; None keeps the stored one), audited."""
    settings = current_settings()
    before = _snapshot(settings) if settings.id else None
    for name, value in values.items():
        setattr(settings, name, value)
    if clear_password:
        settings.smtp_password = ""
    elif new_password:
        settings.smtp_password = security.encrypt(secret_key, new_password)
    db.session.add(settings)
    after = _snapshot(settings)
    changed = [k for k in after if (before or {}).get(k) != after[k]]
    if changed:
        audit.record("alerts.update", "alerts", None, "Alerts", summary="Alerts saved: " + ", ".join(changed),
                     before=before, after=after)
    db.session.commit()
    return settings


def recipients():
    """The enabled admins who opted in."""
    return db.session.scalars(select(User).join(AlertRecipient, AlertRecipient.user_id == User.id)
                              .where(User.disabled_at.is_(None), User.role == ROLE_ADMIN)
                              .order_by(User.email)).all()


def opted_in(user):
    return db.session.get(AlertRecipient, user.id) is not None


def set_opt_in(user, wanted):
    if wanted == opted_in(user):
        return
    if wanted:
        db.session.add(AlertRecipient(user_id=user.id))
    else:
        db.session.execute(delete(AlertRecipient).where(AlertRecipient.user_id == user.id))
    audit.record("alerts.opt_in" if wanted else "alerts.opt_out", "admin", user.id, user.email,
                 summary=f"{user.email} {'gets' if wanted else 'no longer gets'} alert emails")
    db.session.commit()


# --- the tick ---------------------------------------------------------------------------------

def tick(config, now=None):
    """Open, tell and end incidents for the conditions that hold now. Returns what was sent."""
    now = now or utcnow()
    settings = current_settings()
    context = Context(now, settings, config)
    found = {}
    for check in CHECKS.values():
        for condition in check.find(context):
            found[condition.key] = (check, condition)
    db.session.rollback()  # the checks only read: end their transaction before the writes
    sent = []
    open_now = {i.key: i for i in db.session.scalars(select(AlertIncident).where(AlertIncident.ended_at.is_(None)))}
    for key, (check, condition) in found.items():
        incident = open_now.get(key) or _open(check, condition, now)
        if incident and incident.told_at is None and incident.started_at <= now - timedelta(
                minutes=check.grace_minutes(settings)):
            sent += _tell(incident, config, settings, ended=False)
    for key, incident in open_now.items():
        if key not in found and _end(incident, now):
            sent += _tell(incident, config, settings, ended=True)
    for incident in _ends_to_retry(now):
        sent += _tell(incident, config, settings, ended=True)
    return sent


def _open(check, condition, now):
    incident = AlertIncident(key=condition.key, open_key=condition.key, kind=check.kind, title=condition.title,
                             detail=condition.detail, started_at=min(condition.since or now, now))
    try:
        with writing():
            db.session.add(incident)
            db.session.commit()
    except IntegrityError:  # another cron opened it this moment: it tells it
        db.session.rollback()
        return None
    return incident


def _end(incident, now):
    """End an open incident; an untold one is forgotten. True when this call ended a told one."""
    with writing():
        if incident.told_at is None:
            db.session.execute(delete(AlertIncident).where(AlertIncident.id == incident.id,
                                                           AlertIncident.told_at.is_(None)))
            db.session.commit()
            return False
        ended = db.session.execute(update(AlertIncident).where(AlertIncident.id == incident.id,
                                                               AlertIncident.ended_at.is_(None))
                                   .values(ended_at=now, open_key=None)
                                   .execution_options(synchronize_session=False)).rowcount
        db.session.commit()
    return bool(ended)


def _ends_to_retry(now):
    return db.session.scalars(select(AlertIncident).where(
        AlertIncident.ended_at.is_not(None), AlertIncident.told_at.is_not(None), AlertIncident.told_end_at.is_(None),
        AlertIncident.ended_at >= now - timedelta(days=RETRY_END_DAYS), AlertIncident.ended_at < now)).all()


def _tell(incident, config, settings, ended):
    """Claim the message (one cron sends it), send it on every channel; given back when none took it."""
    column = AlertIncident.told_end_at if ended else AlertIncident.told_at
    with writing():
        claimed = db.session.execute(update(AlertIncident).where(AlertIncident.id == incident.id, column.is_(None))
                                     .values({column.key: utcnow()})
                                     .execution_options(synchronize_session=False)).rowcount
        db.session.commit()
    if not claimed:
        return []
    db.session.refresh(incident)
    subject, body = message(incident, ended)
    sent, errors = send(config, settings, subject, body)
    with writing():
        values = {"last_error": "; ".join(errors)}
        if not sent and errors:
            values[column.key] = None  # nobody was told: the next tick tries again
        db.session.execute(update(AlertIncident).where(AlertIncident.id == incident.id).values(values)
                           .execution_options(synchronize_session=False))
        db.session.commit()
    return [(subject, channel) for channel in sent]


def message(incident, ended):
    if ended:
        lasted = _duration(incident.ended_at - incident.started_at)
        return (f"Resolved: {incident.title}",
                f"{incident.title}: resolved at {incident.ended_at:%Y-%m-%d %H:%M} UTC, after {lasted}.\n")
    return (incident.title, f"{incident.title}\n\n{incident.detail}\n\nSince {incident.started_at:%Y-%m-%d %H:%M} UTC. "
                            "You will get one more message when it ends.\n")


def _duration(delta):
    minutes = max(int(delta.total_seconds() // 60), 0)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


# --- the channels -----------------------------------------------------------------------------

def send(config, settings, subject, body):
    """Send to every configured channel: (channels that took it, errors by channel)."""
    sent, errors = [], []
    emails = [user.email for user in recipients()]
    if settings.smtp_host and emails:
        try:
            send_email(config, settings, emails, subject, body)
            sent.append("email")
        except (OSError, smtplib.SMTPException, ValueError) as exc:
            errors.append(f"email: {type(exc).__name__}: {exc}")
    if settings.webhook_url:
        try:
            send_webhook(config, settings.webhook_url, subject, body)
            sent.append("webhook")
        except (OSError, ValueError) as exc:  # requests' errors are OSErrors; a refused target a ValueError
            errors.append(f"webhook: {type(exc).__name__}: {exc}")
    if not sent and not errors:
        errors.append("nobody to tell: set the SMTP settings and opt in, or an alert webhook, on the Alerts page")
    return sent, errors


def send_email(config, settings, to, subject, body):
    mail = EmailMessage()
    mail["Subject"] = f"[Exporter] {subject}"
    mail["From"] = settings.mail_from or f"exporter@{settings.smtp_host}"
    mail["To"] = ", ".join(to)
    mail.set_content(body)
    password = security.decrypt(config["SECRET_KEY"], settings.smtp_password) if settings.smtp_password else ""
    smtp_class = smtplib.SMTP_SSL if settings.smtp_security == "ssl" else smtplib.SMTP
    with smtp_class(settings.smtp_host, settings.smtp_port, timeout=SEND_TIMEOUT_SECONDS) as smtp:
        if settings.smtp_security == "starttls":
            smtp.starttls(context=ssl.create_default_context())
        if settings.smtp_username:
            smtp.login(settings.smtp_username, password)
        smtp.send_message(mail)


def send_webhook(config, url, subject, body):
    """A Slack-compatible incoming webhook: {"text": ...}; any 2xx is taken."""
    session = security.pinned_session(allow_private=bool(config.get("ALLOW_PRIVATE_TARGETS")))
    with session:
        response = session.post(url, json={"text": f"*{subject}*\n{body}"}, timeout=SEND_TIMEOUT_SECONDS)
    if not 200 <= response.status_code < 300:
        raise ValueError(f"the webhook answered HTTP {response.status_code}")


def recent_incidents(limit=20):
    """Open incidents first, then the latest ended ones (told ones only)."""
    return db.session.scalars(select(AlertIncident).where(AlertIncident.told_at.is_not(None))
                              .order_by(AlertIncident.ended_at.is_not(None), AlertIncident.started_at.desc())
                              .limit(limit)).all()
