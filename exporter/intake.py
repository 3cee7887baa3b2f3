"""An intake body: validate it whole, store it, match it, schedule its deliveries.

web/intake.py is only HTTP; this is the flow. Nothing is stored unless every event in
the body is valid.
"""
from datetime import datetime, timezone
from typing import Any, Literal

from flask import current_app
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.exc import IntegrityError

from . import customer_types, dispatch, matching, security
from .export_types import PER_EVENT
from .extensions import db
from .models import Campaign, Customer, Event, FileRow, HistoryEntry, Product, Profile, Route, utcnow

CustomerTypeSlug = Literal[customer_types.SLUGS]  # type: ignore[valid-type]


class IntakeError(Exception):
    def __init__(self, status, error, problems=()):
        super().__init__(error)
        self.status, self.error, self.problems = status, error, list(problems)


class ProductIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    productId: int
    productName: str = ""


class OrderIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    orderId: int | None = None
    customerId: int | None = None
    campaignId: int | None = None
    campaignName: str = ""
    firstName: str = ""
    lastName: str = ""
    emailAddress: str = ""
    phoneNumber: str = ""
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
    id: str = Field(min_length=1, max_length=120)
    type: CustomerTypeSlug
    occurred_at: datetime | None = None
    order: OrderIn


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
        raise IntakeError(422, "invalid body", [{"index": None, "field": "", "message": "expected a JSON object"}])
    events, problems = [], []
    for i, item in enumerate(raw):
        try:
            events.append(EventIn.model_validate(item))
        except ValidationError as exc:
            problems += [{"index": i, "field": ".".join(str(p) for p in err["loc"]) or "", "message": err["msg"]}
                         for err in exc.errors()]
    if problems:
        raise IntakeError(422, "invalid events", problems)
    return events


def accept(body):
    """Store, match and schedule a body's events; the counts the intake answers with."""
    cfg = current_app.config
    events = parse(body, cfg["INTAKE_MAX_EVENTS"])
    try:
        counts, deliveries = _store(events)
    except IntegrityError:  # a concurrent request stored one of these ids first: count it as a duplicate
        db.session.rollback()
        counts, deliveries = _store(events)
    for delivery in deliveries:
        dispatch.enqueue(delivery)
    return counts


def _rules():
    rows = db.session.execute(
        db.select(Route, Profile.export_type).join(Profile).where(Profile.active.is_(True))).all()
    return [matching.RouteRule(r.id, r.profile_id, frozenset(r.customer_types or ()),
                               frozenset(r.campaigns or ()), frozenset(r.products or ())) for r, _ in rows]


def _store(events):
    counts = {"accepted": 0, "duplicates": 0, "test_orders": 0, "deliveries": 0}
    rules, profiles, deliveries, seen = _rules(), {}, [], set()
    test_cards = set(current_app.config["TEST_CARD_NUMBERS"])
    for item in events:
        if item.id in seen or db.session.scalar(db.select(Event.id).where(Event.event_key == item.id)):
            counts["duplicates"] += 1
            continue
        seen.add(item.id)
        event = _store_event(item, test_cards)
        counts["accepted"] += 1
        if event.is_test:
            counts["test_orders"] += 1
            _history(event, "Test-card order: skipped, never exported")
            continue
        if event.type in customer_types.CONVERSIONS:
            dispatch.cancel_converted(event.customer_id, event.order_id)
        product_ids = [p.productId for p in item.order.products]
        for rule in matching.matching_routes(rules, event.type, event.campaign_id, product_ids):
            profile = profiles.get(rule.profile_id) or db.session.get(Profile, rule.profile_id)
            profiles[profile.id] = profile
            deliveries += _schedule(event, profile, rule.route_id, deliveries)
    db.session.commit()
    counts["deliveries"] = len(deliveries)
    return counts, deliveries


def _schedule(event, profile, route_id, so_far):
    """One delivery per profile for a per-event type; one file row per route for a file type."""
    cls = dispatch.registry().get(profile.export_type)
    if cls is None:
        return []
    if cls.schedule != PER_EVENT:
        db.session.add(FileRow(route_id=route_id, event=event, occurred_at=event.occurred_at))
        return []
    if any(d.profile_id == profile.id and d.event is event for d in so_far):
        return []
    delivery = dispatch.new_delivery(profile, event, route_id)
    db.session.flush()
    return [delivery]


def _store_event(item, test_cards):
    order = item.order.model_dump(exclude_none=True)
    for key in security.CVV_KEYS:  # CVV is never stored, under any of its names
        order.pop(key, None)
    card = order.pop("cardNumber", None)
    if card:
        order["cardLast4"], order["cardBin"] = card[-4:], card[:6]
    customer = _upsert_customer(item.order)
    _upsert_names(item.order)
    occurred = item.occurred_at or datetime.now(timezone.utc)
    if occurred.tzinfo:
        occurred = occurred.astimezone(timezone.utc).replace(tzinfo=None)
    event = Event(event_key=item.id, type=item.type, occurred_at=occurred, received_at=utcnow(),
                  customer=customer, order_id=item.order.orderId, campaign_id=item.order.campaignId,
                  order=order, is_test=item.order.isTestCard or (card in test_cards),
                  card_number=security.encrypt(current_app.config["SECRET_KEY"], card) if card else None)
    db.session.add(event)
    db.session.flush()
    return event


def _upsert_customer(order):
    customer = None
    if order.customerId is not None:
        customer = db.session.scalar(db.select(Customer).where(Customer.crm_customer_id == order.customerId))
    elif order.emailAddress:
        customer = db.session.scalar(db.select(Customer).where(
            Customer.email == order.emailAddress, Customer.crm_customer_id.is_(None)))
    if customer is None:
        if order.customerId is None and not order.emailAddress:
            return None
        customer = Customer(crm_customer_id=order.customerId)
        db.session.add(customer)
    for attr, value in (("email", order.emailAddress), ("first_name", order.firstName),
                        ("last_name", order.lastName), ("phone", order.phoneNumber)):
        if value:
            setattr(customer, attr, value)
    db.session.flush()
    return customer


def _upsert_names(order):
    """Campaigns and products the CRM names, so route forms can offer them."""
    if order.campaignId is not None:
        _upsert(Campaign, order.campaignId, order.campaignName)
    for p in order.products:
        _upsert(Product, p.productId, p.productName)


def _upsert(model, id_, name):
    row = db.session.get(model, id_)
    if row is None:
        db.session.add(model(id=id_, name=name or ""))
    elif name and row.name != name:
        row.name = name


def _history(event, message):
    if event.customer_id:
        db.session.add(HistoryEntry(customer_id=event.customer_id, event_id=event.id, message=message))
