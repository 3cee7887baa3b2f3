"""An intake body: validate it whole, store it, match it, schedule its deliveries.

web/intake.py is only HTTP; this is the flow. Nothing is stored unless every event in
the body is valid.
"""
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from flask import current_app
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError, OperationalError

from . import customer_types, daily_files, dispatch, matching, schedule, security, sending
from .export_types import PER_EVENT
from .extensions import db, writing
from .models import Campaign, Customer, Delivery, Event, HistoryEntry, Product, Profile, Route, utcnow

CustomerTypeSlug = Literal[customer_types.SLUGS]  # type: ignore[valid-type]
FIRST_YEAR, LAST_YEAR = 1970, 2100  # occurred_at outside these years is a CRM's mistake, not an order


def _storable(text):
    """Text a database column can hold: no NUL character, no lone surrogate."""
    if "\x00" in text:
        raise ValueError("must not contain the NUL character")
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            raise ValueError("is not valid Unicode text (a lone surrogate)") from None
    return text


def Text(max_length):
    """A string stored in a column of this many characters."""
    return Annotated[str, Field(max_length=max_length), AfterValidator(_storable)]


CrmId = Annotated[int, Field(ge=0, le=2**63 - 1)]  # the CRM's ids are stored in 64-bit columns


class IntakeError(Exception):
    def __init__(self, status, error, problems=()):
        super().__init__(error)
        self.status, self.error, self.problems = status, error, list(problems)


class ProductIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    productId: CrmId
    productName: Text(255) = ""


class OrderIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    orderId: CrmId | None = None
    customerId: CrmId | None = None
    campaignId: CrmId | None = None
    campaignName: Text(255) = ""
    firstName: Text(120) = ""
    lastName: Text(120) = ""
    emailAddress: Text(255) = ""
    phoneNumber: Text(40) = ""
    isTestCard: bool = False
    cardNumber: str | None = None
    products: list[ProductIn] = Field(default_factory=list)

    @field_validator("cardNumber")
    @classmethod
    def digits_only(cls, v):
        if v is not None and not re.fullmatch(r"[0-9]+", v.replace(" ", "").replace("-", "")):  # ASCII digits only
            raise ValueError("a card number has only digits")
        return v.replace(" ", "").replace("-", "") if v else v


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: Annotated[Text(120), Field(min_length=1)]
    type: CustomerTypeSlug
    occurred_at: datetime | None = None
    order: OrderIn

    @field_validator("occurred_at")
    @classmethod
    def in_our_years(cls, v):
        if v is not None and not FIRST_YEAR <= v.year <= LAST_YEAR:
            raise ValueError(f"occurred_at must be in the years {FIRST_YEAR} to {LAST_YEAR}")
        return v


def parse(body: Any, max_events):
    """The body's events, validated; IntakeError(422) naming index and field otherwise."""
    if isinstance(body, dict) and "events" in body:
        raw = body["events"]
        if not isinstance(raw, list):
            raise IntakeError(422, "invalid body", [{"index": None, "field": "events", "message": "must be a list"}])
        if not raw:
            raise IntakeError(422, "invalid body", [{"index": None, "field": "events", "message": "is empty"}])
        if len(raw) > max_events:
            raise IntakeError(422, "too many events", [
                {"index": None, "field": "events", "message": f"at most {max_events} events per request"}])
    elif isinstance(body, dict):
        raw = [body]
    else:
        raise IntakeError(422, "invalid body", [{"index": None, "field": "body", "message": "expected a JSON object"}])
    events, problems = [], []
    for i, item in enumerate(raw):
        try:
            events.append(EventIn.model_validate(item))
        except ValidationError as exc:
            problems += [{"index": i, "field": ".".join(str(p) for p in err["loc"]) or "event", "message": err["msg"]}
                         for err in exc.errors()]
    if problems:
        raise IntakeError(422, "invalid events", problems)
    return events


def accept(body):
    """Store, match and schedule a body's events; the counts the intake answers with."""
    cfg = current_app.config
    events = parse(body, cfg["INTAKE_MAX_EVENTS"])
    counts, due_times = _store_retrying(events)
    if due_times:
        schedule.wake(due_times)  # one Redis round trip for the whole body
    return counts


def _store_retrying(events, tries=3):
    """A concurrent request may store one of these ids first (the retry counts it as a duplicate)
    or deadlock with this one on a day's file: try again, then ask the CRM to."""
    for _ in range(tries):
        try:
            with writing():  # this process's writers take turns on SQLite instead of sleeping on its lock
                return _store(events)
        except (IntegrityError, OperationalError):
            db.session.rollback()
    raise IntakeError(503, "the database is busy: nothing was stored, send the request again")


def _active_routes():
    """The routes of active profiles as matching rules, and those profiles by id."""
    rows = db.session.execute(db.select(Route, Profile).join(Profile).where(Profile.active.is_(True))).all()
    rules = [matching.RouteRule(r.id, r.profile_id, frozenset(r.customer_types or ()),
                                frozenset(r.campaigns or ()), frozenset(r.products or ())) for r, _ in rows]
    return rules, {p.id: p for _, p in rows}


class _Batch:
    """What one request's events need from the database, fetched once, not per event."""

    def __init__(self, events):
        keys = [e.id for e in events]
        self.seen = set(db.session.scalars(db.select(Event.event_key).where(Event.event_key.in_(keys))))
        crm_ids = {e.order.customerId for e in events if e.order.customerId is not None}
        emails = {e.order.emailAddress for e in events if e.order.customerId is None and e.order.emailAddress}
        self.by_crm_id = {c.crm_customer_id: c for c in db.session.scalars(
            db.select(Customer).where(Customer.crm_customer_id.in_(crm_ids)))} if crm_ids else {}
        self.by_email = {c.email: c for c in db.session.scalars(
            db.select(Customer).where(Customer.email.in_(emails), Customer.crm_customer_id.is_(None)))} if emails else {}
        campaign_ids = {e.order.campaignId for e in events if e.order.campaignId is not None}
        product_ids = {p.productId for e in events for p in e.order.products}
        self.names = {Campaign: {c.id: c for c in db.session.scalars(
                          db.select(Campaign).where(Campaign.id.in_(campaign_ids)))} if campaign_ids else {},
                      Product: {p.id: p for p in db.session.scalars(
                          db.select(Product).where(Product.id.in_(product_ids)))} if product_ids else {}}
        self.rules, self.profiles = _active_routes()
        self.new_customers = {}  # ("crm", id) or ("email", address) -> columns

    def customer_id(self, key):
        if key is None:
            return None
        known = self.by_crm_id.get(key[1]) if key[0] == "crm" else self.by_email.get(key[1])
        return known if isinstance(known, int) else known.id


@dataclass
class _Stored:
    """An event as inserted: what routing, history and daily files need of it."""
    id: int
    type: str
    occurred_at: datetime
    customer_id: int | None
    order_id: int | None
    campaign_id: int | None
    is_test: bool
    product_ids: list


def _store(events):
    """One transaction: customers and names upserted, then events, deliveries and history rows
    inserted in bulk; the due times of the new deliveries."""
    counts = {"accepted": 0, "duplicates": 0, "test_orders": 0, "deliveries": 0}
    batch = _Batch(events)
    fresh = []
    with db.session.no_autoflush:
        for item in events:
            if item.id in batch.seen:
                counts["duplicates"] += 1
                continue
            batch.seen.add(item.id)
            fresh.append((item, _upsert_customer(item.order, batch)))
            _upsert_names(item.order, batch.names)
    _insert_customers(batch)
    stored = _insert_events([(item, batch.customer_id(key)) for item, key in fresh])
    counts["accepted"] = len(stored)
    history, deliveries, conversions = [], [], []
    for event in stored:
        if event.is_test:
            counts["test_orders"] += 1
            if event.customer_id:
                history.append(dict(customer_id=event.customer_id, event_id=event.id, created_at=utcnow(),
                                    message="Test-card order: skipped, never exported"))
            continue
        if event.type in customer_types.CONVERSIONS:
            conversions.append(event)
        deliveries += _route(event, batch)
    if deliveries:
        db.session.execute(insert(Delivery.__table__), deliveries)
    if history:
        db.session.execute(insert(HistoryEntry.__table__), history)
    for sale in conversions:  # partials stored before the sale, this body's too, are converted
        dispatch.cancel_converted(sale.customer_id, sale.order_id, before_event_id=sale.id)
    db.session.commit()
    counts["deliveries"] = len(deliveries)
    return counts, {d["due_at"] for d in deliveries}


def _insert_events(fresh):
    test_cards = set(current_app.config["TEST_CARD_NUMBERS"])
    key = current_app.config["SECRET_KEY"]
    rows, stored = [], []
    for item, customer_id in fresh:
        order, cards = _order_for_storage(item.order)
        card = cards[0] if cards else None
        occurred = item.occurred_at or datetime.now(timezone.utc)
        if occurred.tzinfo:
            occurred = occurred.astimezone(timezone.utc).replace(tzinfo=None)
        is_test = item.order.isTestCard or any(c in test_cards for c in cards)
        rows.append(dict(event_key=item.id, type=item.type, occurred_at=occurred, received_at=utcnow(),
                         customer_id=customer_id, order_id=item.order.orderId,
                         campaign_id=item.order.campaignId, order=order, is_test=is_test,
                         card_number=security.encrypt(key, card) if card else None))
        stored.append(_Stored(0, item.type, occurred, customer_id, item.order.orderId,
                              item.order.campaignId, is_test, [p.productId for p in item.order.products]))
    if not rows:
        return []
    # executemany, then the ids by event key: SQLite cannot return a batch's ids in order.
    db.session.execute(insert(Event.__table__), rows)
    ids = dict(db.session.execute(db.select(Event.event_key, Event.id).where(
        Event.event_key.in_([r["event_key"] for r in rows]))).all())
    for event, row in zip(stored, rows):
        event.id = ids[row["event_key"]]
    return stored


def _order_for_storage(order_in):
    """The order as stored, and the card numbers found in it (the order's own first): CVV-like
    keys dropped, card-like values taken out, sensitive fields encrypted (security.scrub_order);
    the card number kept only as cardLast4 and cardBin here, encrypted on the event."""
    order, cards = security.scrub_order(order_in.model_dump(exclude_none=True), current_app.config["SECRET_KEY"])
    if cards:
        order["cardLast4"], order["cardBin"] = cards[0][-4:], cards[0][:6]
    return order, cards


def _route(event, batch):
    """One delivery row per profile for a per-event type; one file row per route for a file type."""
    rows, delivered_profiles = [], set()
    for rule in matching.matching_routes(batch.rules, event.type, event.campaign_id, event.product_ids):
        profile = batch.profiles[rule.profile_id]
        cls = sending.registry().get(profile.export_type)
        if cls is None:
            continue
        if cls.schedule != PER_EVENT:
            daily_files.add_row(profile, rule.route_id, event)
        elif profile.id not in delivered_profiles:
            delivered_profiles.add(profile.id)
            rows.append(dict(profile_id=profile.id, event_id=event.id, route_id=rule.route_id, status="scheduled",
                             due_at=schedule.due_at(profile, event.occurred_at),
                             target=sending.target_host(profile)))
    return rows


def _upsert_customer(order, batch):
    """The customer by CRM customer id, else by email (its key); made when new, names kept current."""
    if order.customerId is not None:
        key, known = ("crm", order.customerId), batch.by_crm_id.get(order.customerId)
    elif order.emailAddress:
        key, known = ("email", order.emailAddress), batch.by_email.get(order.emailAddress)
    else:
        return None
    values = {attr: value for attr, value in (("email", order.emailAddress), ("first_name", order.firstName),
                                              ("last_name", order.lastName), ("phone", order.phoneNumber)) if value}
    if known is None:
        batch.new_customers.setdefault(key, {"crm_customer_id": order.customerId}).update(values)
    else:
        for attr, value in values.items():
            if getattr(known, attr) != value:
                setattr(known, attr, value)
    return key


def _insert_customers(batch):
    """New customers in one executemany, then their ids in one query per kind of key."""
    db.session.flush()  # names of known customers, campaigns and products
    new = batch.new_customers
    if not new:
        return
    columns = ("crm_customer_id", "email", "first_name", "last_name", "phone")
    db.session.execute(insert(Customer.__table__), [
        {c: values.get(c, "" if c != "crm_customer_id" else None) for c in columns} for values in new.values()])
    crm_ids = [k[1] for k in new if k[0] == "crm"]
    emails = [k[1] for k in new if k[0] == "email"]
    if crm_ids:
        batch.by_crm_id.update(db.session.execute(db.select(Customer.crm_customer_id, Customer.id).where(
            Customer.crm_customer_id.in_(crm_ids))).all())
    if emails:
        batch.by_email.update(db.session.execute(db.select(Customer.email, Customer.id).where(
            Customer.email.in_(emails), Customer.crm_customer_id.is_(None))).all())


def _upsert_names(order, names):
    """Campaigns and products the CRM names, so route forms can offer them."""
    if order.campaignId is not None:
        _upsert(Campaign, order.campaignId, order.campaignName, names[Campaign])
    for p in order.products:
        _upsert(Product, p.productId, p.productName, names[Product])


def _upsert(model, id_, name, known):
    row = known.get(id_)
    if row is None:
        row = known[id_] = model(id=id_, name=name or "")
        db.session.add(row)
    elif name and row.name != name:
        row.name = name
