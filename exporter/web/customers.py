"""Customers: search, a customer's events and history, and Forget this customer."""
import re

from sqlalchemy.orm import joinedload
from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, literal_column
from sqlalchemy.orm import joinedload
from wtforms import Form, SearchField
from wtforms.validators import Length

from . import keyset
from ..profiles import customer_types
from ..flows import retention
from ..extensions import db
from ..models import Campaign, Customer, Delivery, Event, HistoryEntry
from . import admin_blueprint, page_field

bp = admin_blueprint(Blueprint("customers", __name__, url_prefix="/customers"))

PER_PAGE = 50


class SearchForm(Form):
    """The search box, read from the query string (a GET form: nothing to protect)."""
    q = SearchField("Search", validators=[Length(max=200, message="Search for at most 200 characters")],
                    description="Name, email, phone, CRM customer id or order id")
    page = page_field()


def _contains(column, text):
    return func.lower(column).contains(text.lower(), autoescape=True)


def search_query(q):
    """Customers whose name ("first", "last" or "first last"), email, phone, CRM id or an order's id
    matches q."""
    query = db.select(Customer).order_by(Customer.id.desc())
    q = q.strip()
    if not q:
        return query
    # The expressions of the trigram indexes on PostgreSQL (migration c9d0e1f2a3b4), literally:
    # a bound ' ' would make another expression, which no index matches.
    matches = [_contains(Customer.first_name.op("||")(literal_column("' '")).op("||")(Customer.last_name), q),
               _contains(Customer.email, q), _contains(Customer.phone, q)]
    digits = re.sub(r"\D", "", q)
    if digits and len(digits) >= 3 and digits != q:  # "(555) 201-3344" finds 5552013344
        matches.append(_contains(Customer.phone, digits))
    if re.fullmatch(r"[0-9]{1,18}", q):  # a CRM id (ASCII digits, 64 bits)
        matches.append(Customer.crm_customer_id == int(q))
        # The order's customers first (by the index on order_id), then by primary key: a subquery
        # here would keep the other matches from their indexes.
        ordered = db.session.scalars(db.select(Event.customer_id).where(Event.order_id == int(q),
                                                                        Event.customer_id.is_not(None))).all()
        matches.append(Customer.id.in_(set(ordered)))
    return query.where(db.or_(*matches))


@bp.route("/")
def index():
    form = SearchForm(request.args)
    if not form.validate():
        return render_template("customers/index.html", form=form, customers=None), 400
    customers = keyset.numbered_page(search_query(form.q.data or ""), Customer.id, page=form.page.data or 1,
                                     per_page=PER_PAGE)
    return render_template("customers/index.html", form=form, customers=customers)


@bp.route("/<int:customer_id>")
def show(customer_id):
    customer = db.get_or_404(Customer, customer_id)
    events = db.session.scalars(db.select(Event).where(Event.customer_id == customer.id)
                                .order_by(Event.occurred_at.desc(), Event.id.desc())).all()
    campaign_ids = {e.campaign_id for e in events if e.campaign_id is not None}
    campaigns = {c.id: c.name for c in db.session.scalars(db.select(Campaign).where(Campaign.id.in_(campaign_ids)))}
    history = db.session.execute(
        db.select(HistoryEntry, Delivery.status)
        .outerjoin(Delivery, HistoryEntry.delivery_id == Delivery.id)
        .where(HistoryEntry.customer_id == customer.id)
        .order_by(HistoryEntry.created_at.desc(), HistoryEntry.id.desc())).all()
    return render_template("customers/show.html", customer=customer, events=events, campaigns=campaigns,
                           history=history, unfinished=_unfinished(customer), type_label=customer_types.label)


def _unfinished(customer):
    """The customer's exports not done yet (waiting, failing and retrying, being sent): they have no
    history message until they end, and the history says so first."""
    return db.session.scalars(
        db.select(Delivery).join(Event, Delivery.event_id == Event.id)
        .where(Event.customer_id == customer.id, Delivery.status.in_((*Delivery.WAITING, "sending")))
        .options(joinedload(Delivery.profile)).order_by(Delivery.due_at, Delivery.id)).all()


# One rule for both methods: an id past 64 bits is then a 404 for either (two rules make it a 405).
@bp.route("/<int:customer_id>/forget", methods=["GET", "POST"])
def forget(customer_id):
    """GET: the confirm step, what forgetting erases and what it keeps. POST: forget."""
    customer = db.get_or_404(Customer, customer_id)
    if customer.forgotten_at:
        if request.method == "POST":
            flash(f"Customer #{customer.id} was already forgotten.", "info")
        return redirect(url_for(".show", customer_id=customer.id))
    if request.method == "GET":
        return _confirm_forget(customer)
    try:
        counts = retention.forget(customer, by=current_user.email)  # audited as the request's admin
    except retention.ForgetRefused as exc:
        flash(str(exc), "error")
        return redirect(url_for(".forget", customer_id=customer.id))
    n = retention.n
    flash(f"Customer #{customer.id} forgotten: personal data of {n(counts['events'], 'event')} erased, "
          f"{n(counts['cancelled_deliveries'], 'waiting delivery', 'waiting deliveries')} cancelled, "
          f"{n(counts['kept_files_deleted'], 'kept daily-file copy', 'kept daily-file copies')} deleted.", "success")
    return redirect(url_for(".show", customer_id=customer.id))


def _confirm_forget(customer):
    events = db.session.scalar(db.select(func.count()).where(Event.customer_id == customer.id))
    waiting = db.session.scalar(db.select(func.count(Delivery.id)).join(Event, Delivery.event_id == Event.id).where(
        Event.customer_id == customer.id, Delivery.status.in_(Delivery.WAITING)))
    return render_template("customers/forget.html", customer=customer, events=events, waiting=waiting)
