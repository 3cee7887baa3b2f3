"""Send past events (issue 12): on a profile, a date range and some of its routes' customer
types; Count shows what would be sent, Send makes the deliveries. The rules are exporter.replay's
(the CLI's `exporter profiles replay` calls the same function)."""
from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from wtforms import HiddenField, SelectField, SelectMultipleField, StringField
from wtforms.validators import DataRequired

from ..profiles import customer_types
from ..flows import replay
from ..extensions import db
from ..models import Event, Profile
from . import admin_blueprint, choices, strip

bp = admin_blueprint(Blueprint("replay", __name__, url_prefix="/profiles"))

DEFAULT_DAYS = 7  # the range the form offers first: the last week


class ReplayForm(FlaskForm):
    since = StringField("From date", filters=[strip], validators=[DataRequired("From date is required")],
                        render_kw={"type": "date"}, description="The first day whose events are sent (YYYY-MM-DD).")
    until = StringField("To date", filters=[strip], validators=[DataRequired("To date is required")],
                        render_kw={"type": "date"}, description="The last day, included.")
    customer_types = SelectMultipleField("Customer Types", validate_choice=False,
                                         validators=[DataRequired("Choose at least one customer type")])

    def __init__(self, profile, *args, **kwargs):
        super().__init__(*args, **kwargs)
        offered = replay.route_types(profile)
        self.customer_types.choices = choices((slug, customer_types.label(slug)) for slug in offered)
        if not self.is_submitted():
            since, until = replay.default_range(profile, DEFAULT_DAYS)
            self.since.data = self.since.data or since.isoformat()
            self.until.data = self.until.data or until.isoformat()
            self.customer_types.data = self.customer_types.data or offered


FIELDS = {"since": "since", "until": "until", "customer_types": "customer_types"}


def _run(form, profile, dry_run):
    """The replay (or its count) of the form's values; None with the error beside its field."""
    try:
        return replay.replay(profile, form.since.data, form.until.data, form.customer_types.data, dry_run=dry_run)
    except replay.ReplayError as exc:
        field = getattr(form, FIELDS[exc.field]) if exc.field in FIELDS else None
        (field.errors if field is not None else form.form_errors).append(str(exc))
        return None


@bp.route("/<int:profile_id>/replay", methods=["GET", "POST"])
def form(profile_id):
    """GET: the form. POST action=count: the counts and a Send button. POST action=send: replay."""
    profile = db.get_or_404(Profile, profile_id)
    form = ReplayForm(profile)
    counted = None
    if form.validate_on_submit():
        sending = request.form.get("action") == "send"
        result = _run(form, profile, dry_run=not sending)
        if result is not None and sending:
            flash(f"Send past events ({result.since} to {result.until}): {result.summary()}", "success")
            return redirect(url_for("profiles.edit", profile_id=profile.id))
        counted = result
    status = 400 if form.is_submitted() and counted is None else 200
    return render_template("replay/form.html", form=form, profile=profile, counted=counted,
                           offered=replay.route_types(profile), max_days=replay.MAX_DAYS,
                           zone=replay.zone_name(profile)), status


# --- Send this event to a profile ---------------------------------------------------------------

class SendEventForm(FlaskForm):
    profile_id = SelectField("Send this event to", validate_choice=False)
    back = HiddenField()


@bp.app_template_global()
def send_event_form():
    """The form a delivery's and a customer's page show beside an event: the active profiles."""
    form = SendEventForm()
    profiles = db.session.scalars(db.select(Profile).where(Profile.active.is_(True)).order_by(Profile.name)).all()
    form.profile_id.choices = choices((str(p.id), p.name) for p in profiles)
    return form


def _back(form):
    """Back to the page the form was on (a path of this site only), else the event's customer."""
    back = form.back.data or ""
    return back if back.startswith("/") and not back.startswith("//") and "\\" not in back else None


@bp.route("/events/<int:event_id>/send", methods=["POST"])
def send_event(event_id):
    """Send one stored event to a profile: the never-twice rule of Send past events."""
    event = db.get_or_404(Event, event_id)
    form = SendEventForm()
    back = _back(form) or (url_for("customers.show", customer_id=event.customer_id) if event.customer_id
                           else url_for("deliveries.index"))
    profile = db.session.get(Profile, int(form.profile_id.data)) if (form.profile_id.data or "").isdigit() else None
    if profile is None:
        flash("Choose a profile to send this event to.", "error")
        return redirect(back)
    try:
        made, words = replay.replay_event(profile, event.id)
    except replay.ReplayError as exc:
        flash(f"Event {event.event_key} not sent: {exc}.", "error")
        return redirect(back)
    flash(words, "success" if made else "error")
    return redirect(back)
