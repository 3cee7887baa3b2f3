"""Deliveries: the list by status and profile, and a delivery's page with every attempt."""

import csv
import io

from flask import Blueprint, Response, flash, jsonify, redirect, render_template, request, stream_with_context, url_for
from flask_login import current_user
from sqlalchemy.orm import joinedload, selectinload
from wtforms import DateField, Form, SearchField, SelectChoice, SelectField
from wtforms.validators import AnyOf, Length, NumberRange, Optional

from .. import windows
from . import keyset
from ..profiles import customer_types
from ..delivery import dispatch
from .. import cards
from ..export_types import neutralised
from ..extensions import db
from ..models import Delivery, Event, Profile, utcnow
from . import DateRangeChecks, WholeNumberField, admin_blueprint

bp = admin_blueprint(Blueprint("deliveries", __name__, url_prefix="/deliveries"))

PER_PAGE = 50
# How a daily file's details read on its delivery's page.
DETAIL_LABELS = {"file_name": "File name", "rows": "Rows", "bytes": "Bytes", "sha256": "Checksum (SHA-256)",
                 "checksum": "Checksum", "uploaded": "Uploaded"}


class FilterForm(DateRangeChecks, Form):
    """The list's filters, read from the query string (a GET form: nothing to protect)."""
    status = SelectField("Status", default="", validate_choice=False)
    profile = SelectField("Profile", default="", validate_choice=False)
    customer_type = SelectField("Customer Type", default="", validate_choice=False)
    host = SearchField("Host", validators=[Length(max=255, message="Host is at most 255 characters")],
                       description="e.g. postingmydata.com")
    since = DateField("From", validators=[Optional()], format="%Y-%m-%d")
    until = DateField("To", validators=[Optional()], format="%Y-%m-%d", description="Created on these days (UTC)")
    # Keyset pages (keyset.py): the rows older than `before`, or newer than `after` (ids).
    # ASCII digits only, as every whole number a request carries (web.whole_number).
    before = WholeNumberField("Older than", validators=[Optional(), NumberRange(1, 2**63 - 1, "is a delivery's id")])
    after = WholeNumberField("Newer than", validators=[Optional(), NumberRange(0, 2**63 - 1, "is a delivery's id")])

    def __init__(self, formdata, profiles):
        super().__init__(formdata)
        statuses = [("", "Any status")] + [(s, s) for s in Delivery.STATUSES]
        profile_ids = [("", "Any profile")] + [(str(p.id), p.name) for p in profiles]
        types = [("", "Any customer type")] + [(t.slug, t.label) for t in customer_types.CUSTOMER_TYPES]
        self.status.choices = [SelectChoice(v, label) for v, label in statuses]
        self.profile.choices = [SelectChoice(v, label) for v, label in profile_ids]
        self.customer_type.choices = [SelectChoice(v, label) for v, label in types]
        # Our own message, not WTForms' generic one, names what was wrong.
        self.status.validators = [AnyOf([v for v, _ in statuses], "Choose a status from the list")]
        self.profile.validators = [AnyOf([v for v, _ in profile_ids], "No such profile")]
        self.customer_type.validators = [AnyOf([v for v, _ in types], "Choose a customer type from the list")]
        self.plain_date_errors()



def _filtered(form):
    query = (db.select(Delivery)
             .options(joinedload(Delivery.profile), joinedload(Delivery.event).joinedload(Event.customer))
             .order_by(Delivery.id.desc()))
    if form.status.data:
        query = query.where(Delivery.status == form.status.data)
    if form.profile.data:
        query = query.where(Delivery.profile_id == int(form.profile.data))
    if form.customer_type.data:
        query = query.where(Delivery.event.has(Event.type == form.customer_type.data))
    if (form.host.data or "").strip():  # a host's name or its start: the index on (target, id) finds it
        host = form.host.data.strip().lower()
        query = query.where(Delivery.target.startswith(host, autoescape=True), Delivery.target >= host,
                            Delivery.target < host + "\U0010ffff")
    return query.where(*form.within_days(Delivery.created_at))


@bp.route("/")
def index():
    profiles = db.session.scalars(db.select(Profile).order_by(Profile.name)).all()
    form = FilterForm(request.args, profiles)
    if not form.validate():
        return render_template("deliveries/index.html", form=form, deliveries=None, profile=None,
                               type_label=customer_types.label), 400
    deliveries = keyset.page(_filtered(form), Delivery.id, before=form.before.data, after=form.after.data,
                             per_page=PER_PAGE)
    profile = db.session.get(Profile, int(form.profile.data)) if form.profile.data else None
    retrying = 0
    if profile:
        retrying = db.session.scalar(db.select(db.func.count()).where(
            Delivery.profile_id == profile.id, Delivery.status == "retrying"))
    return render_template("deliveries/index.html", form=form, deliveries=deliveries, profile=profile,
                           retrying=retrying, type_label=customer_types.label)


# --- the filtered list as CSV, for a partner ---------------------------------------------------

CSV_COLUMNS = ("Delivery", "Profile", "Status", "Customer Type / File date", "CRM event id", "Order id",
               "Customer", "Email", "Attempts", "Created (UTC)", "Due (UTC)", "Delivered (UTC)", "Host", "Last error")
CSV_BATCH = 1000


@bp.route("/export.csv")
def csv_download():
    """The list as its filters select it, every page, as CSV: card numbers masked wherever they
    appear, and no cell a spreadsheet would run as a formula."""
    profiles = db.session.scalars(db.select(Profile).order_by(Profile.name)).all()
    form = FilterForm(request.args, profiles)
    if not form.validate():
        problems = "; ".join(f"{form[name].label.text}: {errors[0]}" for name, errors in form.errors.items())
        return Response(f"Not a valid filter: {problems}\n", status=400, mimetype="text/plain")
    query = _filtered(form).execution_options(yield_per=CSV_BATCH)
    name = f"deliveries-{utcnow():%Y%m%d-%H%M}.csv"
    return Response(stream_with_context(_csv_lines(query)), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _csv_lines(query):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for delivery in db.session.scalars(query):
        writer.writerow([neutralised(masked_cards(value)) for value in _csv_row(delivery)])
        if out.tell() > 64 * 1024:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()


def _csv_row(d):
    event = d.event
    customer = event.customer if event else None
    return (d.id, d.profile.name, d.status,
            customer_types.label(event.type) if event else (d.file_date.isoformat() if d.file_date else ""),
            event.event_key if event else "", event.order_id if event and event.order_id is not None else "",
            customer.name if customer else "", customer.email if customer else "", d.attempt_count,
            _time(d.created_at), _time(d.due_at), _time(d.delivered_at), d.target, (d.last_error or "").split("\n")[0])


def _time(value):
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def masked_cards(value):
    """Text with every card number in it masked where it sits: the intake's one detector (cards.py)."""
    return cards.masked_text(value)[0] if isinstance(value, str) else value


# How long after it fell due a waiting delivery counts as "being sent again now" (a worker
# picks it up within seconds); past it, Retry now is offered again.
SENDING_SOON_SECONDS = 60


def sending_soon(delivery):
    """Due now and waiting for a worker: what the page says right after Retry now."""
    if delivery.status not in Delivery.WAITING:
        return False
    overdue = (utcnow() - delivery.due_at).total_seconds()
    return 0 <= overdue < SENDING_SOON_SECONDS


def waiting_reason(delivery):
    """Why a waiting delivery is not sent yet: its profile's send window is closed, or the claim
    put it back (the window, the daily cap). "" when nothing holds it back."""
    if delivery.status not in Delivery.WAITING:
        return ""
    now = utcnow()
    if delivery.waiting_reason and delivery.due_at > now:
        return delivery.waiting_reason
    window = windows.of(delivery.profile)
    if window and not windows.is_open(window, now) and windows.next_open(window, now) >= delivery.due_at:
        return windows.waiting_for_window(window, windows.next_open(window, now))
    if window and delivery.due_at > now and windows.is_opening(window, delivery.due_at):
        # Due at an opening: its Export Delay or backoff ended while the window was closed.
        return windows.waiting_for_window(window, delivery.due_at)
    return ""


@bp.route("/<int:delivery_id>")
def show(delivery_id):
    delivery = db.first_or_404(
        db.select(Delivery).where(Delivery.id == delivery_id)
        .options(selectinload(Delivery.attempts), joinedload(Delivery.event).joinedload(Event.customer)))
    return render_template("deliveries/show.html", delivery=delivery, type_label=customer_types.label,
                           detail_labels=DETAIL_LABELS, sending_soon=sending_soon(delivery),
                           waiting_reason=waiting_reason(delivery),
                           export_type_label=_type_label(delivery.profile.export_type))


def _type_label(key):
    cls = dispatch.registry().get(key)
    return cls.label if cls else key


@bp.get("/<int:delivery_id>/state")
def state(delivery_id):
    """What the delivery page watches while a send is pending: it reloads when this changes."""
    delivery = db.get_or_404(Delivery, delivery_id)
    return jsonify({"status": delivery.status, "attempts": delivery.attempt_count,
                    "sending_soon": sending_soon(delivery)})


@bp.route("/<int:delivery_id>/retry", methods=["POST"])
def retry(delivery_id):
    delivery = db.get_or_404(Delivery, delivery_id)
    if dispatch.retry_now(delivery):
        held = delivery.waiting_reason and delivery.due_at > utcnow()
        again = " again" if delivery.attempt_count else ""
        flash(f"Delivery #{delivery.id} " + (f"{dispatch.waits(delivery.waiting_reason)}." if held
                                              else f"will be sent{again} now."), "success")
    else:
        flash(f"Delivery #{delivery.id} is {delivery.status}: {_why_not_retried(delivery.status)}", "error")
    return redirect(url_for(".show", delivery_id=delivery.id))


def _why_not_retried(status):
    if status == "sending":
        return "it is being sent right now."
    return "it has nothing left to send."


@bp.route("/<int:delivery_id>/cancel", methods=["POST"])
def cancel(delivery_id):
    delivery = db.get_or_404(Delivery, delivery_id)
    if dispatch.cancel(delivery, reason=f"cancelled by {current_user.email}"):
        flash(f"Delivery #{delivery.id} cancelled.", "success")
    elif delivery.status == "sending":
        flash(f"Delivery #{delivery.id} is being sent right now and cannot be cancelled. "
              "If this attempt fails, cancel it then.", "error")
    else:
        flash(f"Delivery #{delivery.id} is already {delivery.status}: there is nothing to cancel.", "error")
    return redirect(url_for(".show", delivery_id=delivery.id))


@bp.route("/profiles/<int:profile_id>/retry-all", methods=["POST"])
def retry_all(profile_id):
    """Send every retrying delivery of a profile now, e.g. once its endpoint is back up."""
    profile = db.get_or_404(Profile, profile_id)
    retrying = db.session.scalars(db.select(Delivery).where(
        Delivery.profile_id == profile.id, Delivery.status == "retrying").order_by(Delivery.id)).all()
    count = dispatch.retry_all(retrying, profile)
    held = db.session.scalar(db.select(Delivery.waiting_reason).where(  # the window or cap Retry all met
        Delivery.profile_id == profile.id, Delivery.status == "retrying", Delivery.waiting_reason != "",
        Delivery.due_at > utcnow()).limit(1)) if count else None
    flash(f"{count} retrying deliveries of profile '{profile.name}' "
          + (f"{dispatch.waits(held, 'wait')}." if held else "will be sent again now."), "success")
    return redirect(url_for(".index", profile=profile.id))
