"""Alerts page: the SMTP settings (password encrypted at rest, never shown), the alert webhook,
the thresholds, each admin's own opt-in, a test message, and the incidents told. The rules and
the checks live in ops/alerts.py; this is only HTTP."""
import re

from flask import Blueprint, current_app, flash, redirect, render_template, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField, PasswordField, SelectField, StringField
from wtforms.validators import InputRequired, Length, Optional, ValidationError

from .. import security
from ..ops import alerts
from . import admin_blueprint, choices, strip

bp = admin_blueprint(Blueprint("alerts", __name__, url_prefix="/alerts"))

SECURITY_CHOICES = [("starttls", "STARTTLS (port 587)"), ("ssl", "SSL/TLS (port 465)"), ("none", "None (port 25)")]


class WholeNumberField(IntegerField):
    """A whole number from low to high; anything else is refused beside the field in our words."""

    def __init__(self, label, low, high, message, **kwargs):
        super().__init__(label, validators=[InputRequired(f"{label} is required")], **kwargs)
        self.low, self.high, self.message = low, high, message

    def process_formdata(self, valuelist):
        text = valuelist[0].strip() if valuelist else ""
        self.data = None
        if text:
            if not re.fullmatch(r"[0-9]{1,6}", text) or not self.low <= int(text) <= self.high:
                raise ValueError(self.message)
            self.data = int(text)


def _minutes(label):
    return WholeNumberField(label, 1, 1440, "Give 1 to 1440 minutes")


class SettingsForm(FlaskForm):
    smtp_host = StringField("SMTP Host", filters=[strip], validators=[Optional(), Length(max=255)],
                            description="Your mail server, e.g. smtp.example.com. Empty: no email.")
    smtp_port = WholeNumberField("SMTP Port", 1, 65535, "Give a port from 1 to 65535", default=587)
    smtp_security = SelectField("Security", choices=choices(SECURITY_CHOICES), default="starttls")
    smtp_username = StringField("SMTP Username", filters=[strip], validators=[Optional(), Length(max=255)])
    smtp_password = PasswordField("SMTP Password", validators=[Optional(), Length(max=500)],
                                  description="Stored encrypted, never shown.")
    clear_password = BooleanField("Remove the stored password")
    mail_from = StringField("From", filters=[strip], validators=[Optional(), Length(max=255)],
                            description="The sender address, e.g. exporter@example.com.")
    webhook_url = StringField("Alert Webhook URL", filters=[strip], validators=[Optional(), Length(max=2000)],
                              description="Optional: a Slack-compatible incoming webhook; gets {\"text\": ...}.")
    host_down_minutes = _minutes("Host down for (minutes)")
    no_worker_minutes = _minutes("No worker for (minutes)")

    def validate_mail_from(self, field):
        if field.data and ("@" not in field.data or " " in field.data):
            raise ValidationError("Give an email address, e.g. exporter@example.com")

    def validate_webhook_url(self, field):
        if field.data:
            try:
                security.check_target_url(field.data, current_app.config.get("ALLOW_PRIVATE_TARGETS", False))
            except security.TargetRefused as exc:
                raise ValidationError(str(exc)) from None


class OptInForm(FlaskForm):
    wanted = BooleanField("Email me alerts")


def _page(form=None, status=200):
    settings = alerts.current_settings()
    if form is None:
        form = SettingsForm(obj=settings)
        form.smtp_password.data = ""
    return render_template("alerts/index.html", form=form, settings=settings, checks=alerts.CHECKS.values(),
                           recipients=alerts.recipients(), me_opted_in=alerts.opted_in(current_user),
                           opt_in=OptInForm(wanted=alerts.opted_in(current_user)),
                           incidents=alerts.recent_incidents()), status


@bp.route("/", methods=["GET", "POST"])
def index():
    form = SettingsForm()
    if not form.is_submitted():
        return _page()
    if not form.validate():
        flash("Alerts not saved: see the errors below.", "error")
        return _page(form, status=422)
    values = {name: getattr(form, name).data for name in alerts.SETTING_LABELS if name != "smtp_password"}
    alerts.save_settings(values, current_app.config["SECRET_KEY"], new_password=form.smtp_password.data or None,
                         clear_password=form.clear_password.data)
    flash("Alerts saved.", "success")
    return redirect(url_for(".index"))


@bp.route("/me", methods=["POST"])
def opt_in():
    form = OptInForm()
    if not current_user.is_admin:  # viewers are refused before this; kept for a role changed mid-way
        return redirect(url_for(".index"))
    alerts.set_opt_in(current_user, bool(form.wanted.data))
    flash("You get alert emails." if form.wanted.data else "You no longer get alert emails.", "success")
    return redirect(url_for(".index"))


@bp.route("/test", methods=["POST"])
def test():
    """Send a test message on every channel now, and say what each did."""
    sent, errors = alerts.send(current_app.config, alerts.current_settings(), "Test alert",
                               f"A test alert sent by {current_user.email} from the Alerts page.\n")
    if sent:
        flash(f"Test alert sent by {' and '.join(sent)}.", "success")
    for error in errors:
        flash(f"Test alert not sent: {error}", "error")
    return redirect(url_for(".index"))
