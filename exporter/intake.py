"""An intake body: validate it whole, store it, match it, schedule its deliveries.

web/intake.py is only HTTP; this is the flow. Nothing is stored unless every event in
the body is valid.
"""
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from flask import current_app
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.exc import IntegrityError, OperationalError

from . import customer_types, daily_files, dispatch, matching, security
from .export_types import PER_EVENT
from .extensions import db
from .models import Campaign, Customer, Event, HistoryEntry, Product, Profile, Route, utcnow

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
        if v is not None and not v.replace(" ", "").replace("-", "").isdigit():
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
    counts, deliveries = _store_retrying(events)
    for delivery in deliveries:
        dispatch.enqueue(delivery)
    return counts


def _store_retrying(events, tries=3):
    """A concurrent request may store one of these ids first (the retry counts it as a duplicate)
    or deadlock with this one on a day's file: try again, then ask the CRM to."""
    for _ in range(tries):
        try:
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
            db.select(Customer).where(Customer.crm_customer_id.in_(crm_ids)))}
        self.by_email = {c.email: c for c in db.session.scalars(
            db.select(Customer).where(Customer.email.in_(emails), Customer.crm_customer_id.is_(None)))}
        campaign_ids = {e.order.campaignId for e in events if e.order.campaignId is not None}
        product_ids = {p.productId for e in events for p in e.order.products}
        self.names = {Campaign: {c.id: c for c in db.session.scalars(
                          db.select(Campaign).where(Campaign.id.in_(campaign_ids)))},
                      Product: {p.id: p for p in db.session.scalars(
                          db.select(Product).where(Product.id.in_(product_ids)))}}
        self.rules, self.profiles = _active_routes()
        self.deliveries = []


def _store(events):
    counts = {"accepted": 0, "duplicates": 0, "test_orders": 0, "deliveries": 0}
    batch = _Batch(events)
    test_cards = set(current_app.config["TEST_CARD_NUMBERS"])
    with db.session.no_autoflush:
        for item in events:
            if item.id in batch.seen:
                counts["duplicates"] += 1
                continue
            batch.seen.add(item.id)
            counts["accepted"] += 1
            event = _store_event(item, test_cards, batch)
            if event.is_test:
                counts["test_orders"] += 1
                _history(event, "Test-card order: skipped, never exported")
                continue
            if event.type in customer_types.CONVERSIONS:
                db.session.flush()  # earlier events of this body may be the partials it converts
                dispatch.cancel_converted(event.customer and event.customer.id, event.order_id)
            _route(event, [p.productId for p in item.order.products], batch)
    db.session.commit()
    counts["deliveries"] = len(batch.deliveries)
    return counts, batch.deliveries


def _route(event, product_ids, batch):
    """One delivery per profile for a per-event type; one file row per route for a file type."""
    delivered_profiles = set()
    for rule in matching.matching_routes(batch.rules, event.type, event.campaign_id, product_ids):
        profile = batch.profiles[rule.profile_id]
        cls = dispatch.registry().get(profile.export_type)
        if cls is None:
            continue
        if cls.schedule != PER_EVENT:
            daily_files.add_row(profile, rule.route_id, event)
        elif profile.id not in delivered_profiles:
            delivered_profiles.add(profile.id)
            batch.deliveries.append(dispatch.new_delivery(profile, event, rule.route_id))


def _store_event(item, test_cards, batch):
    order = security.without_cvv(item.order.model_dump(exclude_none=True))  # CVV is never stored
    card = order.pop("cardNumber", None)
    if card:
        order["cardLast4"], order["cardBin"] = card[-4:], card[:6]
    _upsert_names(item.order, batch.names)
    occurred = item.occurred_at or datetime.now(timezone.utc)
    if occurred.tzinfo:
        occurred = occurred.astimezone(timezone.utc).replace(tzinfo=None)
    event = Event(event_key=item.id, type=item.type, occurred_at=occurred, received_at=utcnow(),
                  customer=_upsert_customer(item.order, batch), order_id=item.order.orderId,
                  campaign_id=item.order.campaignId, order=order,
                  is_test=item.order.isTestCard or (card in test_cards),
                  card_number=security.encrypt(current_app.config["SECRET_KEY"], card) if card else None)
    db.session.add(event)
    return event


def _upsert_customer(order, batch):
    """The customer by CRM customer id, else by email; made when new, names kept current."""
    if order.customerId is not None:
        customer, index, key = batch.by_crm_id.get(order.customerId), batch.by_crm_id, order.customerId
    elif order.emailAddress:
        customer, index, key = batch.by_email.get(order.emailAddress), batch.by_email, order.emailAddress
    else:
        return None
    if customer is None:
        customer = index[key] = Customer(crm_customer_id=order.customerId)
        db.session.add(customer)
    for attr, value in (("email", order.emailAddress), ("first_name", order.firstName),
                        ("last_name", order.lastName), ("phone", order.phoneNumber)):
        if value:
            setattr(customer, attr, value)
    return customer


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


def _history(event, message):
    if event.customer is not None:
        db.session.add(HistoryEntry(customer=event.customer, event=event, message=message))
