"""Hosts: each partner host's limits, shared by every worker (sends at once, a rate a second or
a minute), its allowance now and why (a 429 halves it for a while), and the workers limiting on
their own while Redis is away. The figures and changes live in ops/host_limits.py."""
import re

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.validators import InputRequired, Length, NumberRange, Optional, ValidationError

from ..ops import host_limits
from . import WholeNumberField, admin_blueprint, choices, strip

bp = admin_blueprint(Blueprint("hosts", __name__, url_prefix="/hosts"))

HOSTNAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*|\[?[0-9a-f:.]+\]?")


class HostLimitsForm(FlaskForm):
    host = StringField("Host", filters=[strip, lambda v: v.lower() if v else v],
                       validators=[InputRequired("Host is required"), Length(max=255, message="Host is at most 255 characters")],
                       description="As in the profile's URL or FTP server: dialer.example.com (no https://, no path).")
    max_in_flight = WholeNumberField("Sends at once", validators=[
        Optional(), NumberRange(1, 1000, "Give 1 to 1000 sends at once, or leave it empty")],
        description="Across all workers. Empty: no limit.")
    rate_limit = WholeNumberField("Rate", validators=[
        Optional(), NumberRange(1, 100000, "Give a rate of 1 to 100000, or leave it empty")],
        description="Sends that may start, across all workers. Empty: no limit.")
    rate_per = SelectField("Per", choices=choices([("1", "second"), ("60", "minute")]), default="1")

    def validate_host(self, field):
        if "://" in field.data or "/" in field.data or not HOSTNAME.fullmatch(field.data):
            raise ValidationError("Give a host name only, e.g. dialer.example.com")


@bp.route("/", strict_slashes=False)
def index(form=None, status=200):
    rows, answered = host_limits.overview()
    return render_template("hosts/index.html", rows=rows, redis_answered=answered, form=form or HostLimitsForm(),
                           on_their_own=host_limits.workers_on_their_own()), status


@bp.post("/limits")
def set_limits():
    form = HostLimitsForm()
    if not form.validate_on_submit():
        return index(form, 422)
    host_limits.set_limits(form.host.data, form.max_in_flight.data, form.rate_limit.data, int(form.rate_per.data))
    if form.max_in_flight.data is None and form.rate_limit.data is None:
        flash(f"{form.host.data} has no limits now.", "success")
    else:
        flash(f"Limits of {form.host.data} saved; every worker applies them within a few seconds.", "success")
    return redirect(url_for(".index"))
