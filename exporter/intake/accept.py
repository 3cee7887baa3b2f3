"""An intake body: validate it whole, store it, match it, schedule its deliveries.

web/intake.py is only HTTP; this is the flow. Nothing is stored unless every event in
the body is valid.

Over 400 lines: the body's models (pydantic) and the store (group commit, one statement per
table) are one contract with the CRM; sql.py holds the SQL, tokens.py the tokens.
"""
import functools
import json
import re
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Annotated, Any, Literal

from flask import current_app
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from sqlalchemy import event as sa_event
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from ..profiles import customer_types, matching
from ..files import daily_files
from ..delivery import dispatch, schedule, sending
from . import sql as intake_sql
from .. import cards, security
from ..export_types import PER_EVENT
from ..extensions import db, writing
from ..models import (FIRST_YEAR, LAST_YEAR, Campaign, Customer, Delivery, Event, ForgottenCustomer, HistoryEntry,
                      Product, Profile, Route, kept_order, utcnow)

CustomerTypeSlug = Literal[customer_types.SLUGS]  # type: ignore[valid-type]


def Text(max_length):
    """A string stored in a column of this many characters, that a column can hold: pydantic-core
    refuses a lone surrogate once a length is set, and the pattern the NUL character (a Python
    validator per field was most of a 1,000-event body's validation)."""
    return Annotated[str, Field(max_length=max_length, pattern=NO_NUL)]


NO_NUL = r"^[^\x00]*$"
# pydantic-core's words for what Text refuses, in ours
MESSAGES = {"string_pattern_mismatch": "must not contain the NUL character",
            "string_unicode": "is not valid Unicode text (a lone surrogate)"}


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


_EVENTS = TypeAdapter(list[EventIn])


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
    try:
        return _EVENTS.validate_python(raw)  # the whole list in one call: pydantic-core walks it, not a Python loop
    except ValidationError as exc:  # each error's location starts with the event's index
        problems = [{"index": err["loc"][0], "field": ".".join(str(p) for p in err["loc"][1:]) or "event",
                     "message": MESSAGES.get(err["type"], err["msg"])} for err in exc.errors()]
        raise IntakeError(422, "invalid events", problems) from None


def accept(body, token_id=None):
    """Store, match and schedule a body's events, posted with the intake token token_id (event ids
    are the token's own); the counts the intake answers with."""
    cfg = current_app.config
    events = parse(body, cfg["INTAKE_MAX_EVENTS"])
    return _store_retrying(_Body(token_id, events), cfg["INTAKE_MAX_EVENTS"])


@dataclass
class _Body:
    """A body's events and the intake token they came with."""
    token_id: int | None
    events: list

    def __len__(self):  # a group's size is counted in events
        return len(self.events)


def _store_retrying(events, group_events, tries=3):
    """A concurrent request may store one of these ids first (the insert fails; the retry counts it
    as a duplicate) or deadlock with this one on a day's file: try again, then ask the CRM to."""
    for _ in range(tries):
        try:
            return _group_of(current_app._get_current_object()).store(events, group_events)
        except (IntegrityError, OperationalError):
            db.session.rollback()
            _routes_cache.clear()  # a profile deleted meanwhile fails its deliveries' key: read them again
    raise IntakeError(503, "the database is busy: nothing was stored, send the request again")


_AGAIN = object()  # a ticket's error when its group failed: the body is tried again alone


@dataclass(eq=False)  # found in the queue by identity
class _Ticket:
    """A request's body waiting to be written, and, once written, its counts or error."""
    events: list
    counts: dict = None
    error: Any = None
    done: bool = False


class _GroupCommit:
    """Group commit: the bodies that arrive while one is being written are written together, by
    whichever of their requests gets the writer's turn next, in one transaction (a statement per
    table for all of them, one commit, one wake-up). A request's answer is its own body's counts,
    as if it had been written alone, after the commit; a failed group is tried again body by body."""

    def __init__(self, write):
        self._write_bodies = write  # (bodies) -> (each body's counts, due times); one transaction
        self._lock = threading.Lock()  # the turn to write, within this process
        self._pending = []

    def store(self, events, group_events):
        ticket = _Ticket(events)
        self._pending.append(ticket)  # list.append is atomic: queued without waiting for the turn
        due_times = self._turn(ticket, group_events)
        if ticket.error is _AGAIN:  # its group failed: this body again, alone
            ticket = _Ticket(events)
            due_times = self._turn(ticket, 0)
        if due_times:
            schedule.wake(due_times)  # the writer of a group wakes a drain for all of it: one round trip
        if ticket.error is not None:
            raise ticket.error
        return ticket.counts

    def _turn(self, ticket, group_events):
        """Write this ticket's group, unless another request wrote it meanwhile; the due times written."""
        with self._lock:
            if not ticket.done:  # else the request that had the turn wrote it
                with writing():  # SQLite's writers take turns across processes too
                    return self._write(self._take(ticket, group_events) if group_events else [ticket])
        return set()

    def _take(self, own, group_events):
        """This request's body and those queued behind it, up to group_events events in all."""
        group, size = [own], len(own.events)
        self._pending.remove(own)  # queued, and not taken: it is not done
        for ticket in list(self._pending):
            if size + len(ticket.events) > group_events:
                break
            self._pending.remove(ticket)
            group.append(ticket)
            size += len(ticket.events)
        return group

    def _write(self, group):
        try:
            counts, due_times = self._write_bodies([t.events for t in group])
        except (IntegrityError, OperationalError) as exc:
            db.session.rollback()
            for ticket in group:  # each request tries its own body again, alone or in a new group
                ticket.error = exc if len(group) == 1 else _AGAIN
        except BaseException as exc:
            db.session.rollback()
            for ticket in group:
                ticket.error = exc
            raise
        else:
            for ticket, body_counts in zip(group, counts):
                ticket.counts = body_counts
            return due_times
        finally:
            for ticket in group:
                ticket.done = True
        return set()


_groups = weakref.WeakKeyDictionary()  # by app: bodies are written together only into their own database
_groups_lock = threading.Lock()


def _group_of(app):
    with _groups_lock:
        group = _groups.get(app)
        if group is None:
            group = _groups[app] = _GroupCommit(_store)
        return group


# The routes of active profiles (kind 0), then the active reversal profiles ("Reversal of": kind 1,
# routed by their reversal types, with no route of their own), in one statement: as this process
# last read them, by what they were read from.
_ROUTES = db.union_all(
    db.select(db.literal(0).label("kind"), Route.id.label("route_id"), Route.profile_id, Route.customer_types,
              Route.campaigns, Route.products, db.null().label("reversal_types"), Profile.updated_at)
    .join(Profile).where(Profile.active.is_(True)),
    db.select(db.literal(1), db.null(), Profile.id, db.null(), db.null(), db.null(), Profile.reversal_types,
              Profile.updated_at).where(Profile.active.is_(True), Profile.reversal_of_id.is_not(None)),
).order_by("kind", "route_id", "profile_id")
_routes_cache = weakref.WeakKeyDictionary()  # by engine: an app (a test's too) holds its own, not kept alive here
# Profiles and routes change a few times a day and are read by every group the intake writes: a
# read is trusted for ROUTES_SECONDS (as a live token is), and forgotten at once when this process
# commits a change to them. A change made by another process (a second web server, `exporter
# profiles import`) routes the events received within a second as before it.
ROUTES_SECONDS = 1.0


def _active_routes():
    """The routes of active profiles as matching rules, and those profiles by id: a copy of each
    profile's columns, made again only when a route or a profile changed (a light query at most
    every ROUTES_SECONDS)."""
    connection = db.session.connection()
    engine, now = connection.engine, time.monotonic()
    cached = _routes_cache.get(engine)
    if cached is not None and now - cached[3] < ROUTES_SECONDS:
        return cached[1], cached[2]
    rows = tuple(tuple(r) for r in connection.execute(_ROUTES))  # Core rows: no ORM layer
    if cached is None or cached[0] != rows:
        rules = [matching.reversal_rule(r[2], r[6]) if r[0] == 1 else
                 matching.RouteRule(r[1], r[2], frozenset(r[3] or ()), frozenset(r[4] or ()), frozenset(r[5] or ()))
                 for r in rows]
        profiles = {p.id: SimpleNamespace(**{c.key: getattr(p, c.key) for c in Profile.__table__.columns})
                    for p in db.session.scalars(db.select(Profile).where(Profile.id.in_({r[2] for r in rows})))}
        cached = (rows, rules, profiles)
    _routes_cache[engine] = (*cached[:3], now)
    return cached[1], cached[2]


@sa_event.listens_for(Session, "after_flush")
def _note_routing_changes(session, _context):
    if any(isinstance(o, (Profile, Route)) for o in (*session.new, *session.dirty, *session.deleted)):
        session.info["routing_changed"] = True


@sa_event.listens_for(Session, "do_orm_execute")
def _note_routing_statements(state):
    if (state.is_update or state.is_delete) and state.bind_mapper is not None \
            and state.bind_mapper.class_ in (Profile, Route):
        state.session.info["routing_changed"] = True


@sa_event.listens_for(Session, "after_commit")
def _forget_routes(session):
    if session.info.pop("routing_changed", False):
        _routes_cache.clear()


@sa_event.listens_for(Session, "after_rollback")
def _forget_routing_changes(session):
    session.info.pop("routing_changed", None)


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
    key: tuple = ()  # (intake token id, the CRM's event id)
    forgotten: bool = False  # its customer was forgotten: stored without personal data, never exported


def _store(bodies):
    """One transaction for the bodies, a statement per table, not per event: the body's event ids
    looked up (a known id of the same token, or of none, is a duplicate), then, for the new events
    only, customers and names upserted, events inserted, deliveries and history rows. Each body's
    counts, as if it had been stored alone after those before it; the due times of the new
    deliveries. An id another request stores meanwhile fails the insert: the retry counts it."""
    counts = [{"accepted": 0, "duplicates": 0, "test_orders": 0, "deliveries": 0} for _ in bodies]
    firsts, owner = {}, {}
    for n, body in enumerate(bodies):
        for item in body.events:
            key = (body.token_id, item.id)
            if key in firsts:  # a repeat, in this body or an earlier one: a duplicate
                counts[n]["duplicates"] += 1
            else:
                firsts[key], owner[key] = item, n
    now = utcnow()  # one clock reading for the rows, not one a row
    conn = db.session.connection()  # the transaction's: each statement runs on it
    known, forgotten_ids = _looked_up(conn, firsts)
    for key in known:  # stored before: a duplicate, and its customer left alone
        counts[owner[key]]["duplicates"] += 1
        del firsts[key]
    fresh = list(firsts.values())
    customers, forgotten = _customer_ids(conn, fresh, forgotten_ids, now)
    stored = _insert_events(conn, firsts, customers, forgotten, now, first=_names(conn, fresh))
    rules, profiles = _active_routes()
    db_time = _statement(conn, "deliveries").time
    history, deliveries, conversions, plans = [], [], [], {}
    for event in stored:
        body_counts = counts[owner[event.key]]
        body_counts["accepted"] += 1
        if event.is_test:
            body_counts["test_orders"] += 1
            if event.customer_id:
                history.append((event.customer_id, event.id, "Test-card order: skipped, never exported"))
            continue
        if event.forgotten:
            history.append((event.customer_id, event.id, FORGOTTEN_EVENT))
            continue
        if event.type in customer_types.CONVERSIONS:
            conversions.append(event)
        rows = _route(event, rules, profiles, plans, db_time)
        body_counts["deliveries"] += len(rows)
        deliveries += rows
    if deliveries:
        _statement(conn, "deliveries").run(conn, [row for row, _ in deliveries], now)
    if history:
        _statement(conn, "history").run(conn, history, now)
    if conversions:  # partials stored before a sale, this body's too, are converted: one read for all
        dispatch.cancel_converted_many([(sale.customer_id, sale.order_id, sale.id) for sale in conversions])
    db.session.commit()
    return counts, {due_at for _, due_at in deliveries}


FORGOTTEN_EVENT = "Event of a forgotten customer: stored without personal data, never exported"


def _looked_up(conn, firsts):
    """What the body's ids name already, in one statement: the (token, event id) keys of firsts
    stored before, by that token or by none (events stored before ids were scoped per token are
    duplicates for every token); and {CRM customer id: customer id} of forgotten customers."""
    crm_ids = list({item.order.customerId for item in firsts.values()} - {None})
    stored, forgotten = _statement(conn, "look-up").rows(conn, [list({key[1] for key in firsts}), crm_ids])
    stored = set(stored)
    known = [key for key in firsts if key in stored or (None, key[1]) in stored] if stored else []
    return known, dict(forgotten)


# --- upserts: one statement each, built once per database kind ----------------------------------

CUSTOMER_FIELDS = (("email", "emailAddress"), ("first_name", "firstName"), ("last_name", "lastName"),
                   ("phone", "phoneNumber"))


KEEP_CURRENT = ", ".join(f"{c} = CASE WHEN excluded.{c} != '' THEN excluded.{c} ELSE customers.{c} END"
                        for c, _ in CUSTOMER_FIELDS)
NAMES_KEPT = " ON CONFLICT (id) DO UPDATE SET name = excluded.name WHERE excluded.name != '' AND {0}.name != excluded.name"


@functools.cache
def _statements(kind):
    """INSERT ... ON CONFLICT for customers (by CRM id, names kept current), campaign and product
    names; the look-up of known event ids; plain inserts of events (a known id fails: _store looked
    them up), deliveries and history rows. SQL text for exec_driver_sql (intake_sql), built once."""
    customers = [c for c, _ in CUSTOMER_FIELDS]
    return {
        "customers": intake_sql.Insert(kind, Customer.__table__, ["crm_customer_id", *customers],
                                       f" ON CONFLICT (crm_customer_id) DO UPDATE SET {KEEP_CURRENT}"
                                       " RETURNING crm_customer_id, id"),
        "look-up": intake_sql.Lookup(kind, [
            (Event.__table__, ["intake_token_id", "event_key"], "event_key"),
            (ForgottenCustomer.__table__, ["crm_customer_id", "customer_id"], "crm_customer_id")]),
        "events": intake_sql.Insert(kind, Event.__table__, EVENT_COLUMNS, " RETURNING intake_token_id, event_key, id"),
        Campaign: intake_sql.Insert(kind, Campaign.__table__, ["id", "name"], NAMES_KEPT.format("campaigns")),
        Product: intake_sql.Insert(kind, Product.__table__, ["id", "name"], NAMES_KEPT.format("products")),
        "deliveries": intake_sql.Insert(kind, Delivery.__table__, DELIVERY_COLUMNS),
        "history": intake_sql.Insert(kind, HistoryEntry.__table__, ["customer_id", "event_id", "message"]),
    }


EVENT_COLUMNS = ["event_key", "intake_token_id", "type", "occurred_at", "customer_id", "order_id", "campaign_id",
                 "order", "card_number", "is_test", "purged_at"]
DELIVERY_COLUMNS = ["profile_id", "event_id", "route_id", "status", "due_at", "target"]


def _statement(conn, name):
    dialect = conn.dialect
    return _statements((dialect.name, dialect.paramstyle))[name]


def _customer_ids(conn, events, forgotten_ids, now):
    """({customer key: customer id}, the keys of forgotten customers): the customer by CRM customer
    id, else by email (its key, _customer_key); made when new, its names kept current (a value the
    CRM leaves empty keeps the stored one). A forgotten CRM id (forgotten_ids: {CRM id: customer
    id}) gets its forgotten customer, unchanged."""
    by_crm, by_email = {}, {}
    for item in events:  # later events of a body win, as they would one POST at a time
        order = item.order
        values = {column: getattr(order, key) for column, key in CUSTOMER_FIELDS if getattr(order, key)}
        if order.customerId is not None:
            by_crm.setdefault(order.customerId, {}).update(values)
        elif order.emailAddress:
            by_email.setdefault(order.emailAddress, {}).update(values)
    ids = {("crm", crm_id): customer_id for crm_id, customer_id in forgotten_ids.items()}
    forgotten = set(ids)
    for crm_id in forgotten_ids:
        by_crm.pop(crm_id, None)
    if by_crm:  # in the body's order, so customer ids rise with it (a deadlock with another request is retried)
        rows = [(crm_id, *(v.get(c, "") for c, _ in CUSTOMER_FIELDS)) for crm_id, v in by_crm.items()]
        ids.update({("crm", k): v for k, v in _statement(conn, "customers").returning(conn, rows, now)})
    if by_email:
        ids.update({("email", k): v for k, v in _email_customers(by_email).items()})
    return ids, forgotten


def _customer_key(order):
    if order.customerId is not None:
        return "crm", order.customerId
    return ("email", order.emailAddress) if order.emailAddress else None


def _email_customers(by_email):
    """Customers the CRM names only by email (no unique key to upsert on): found, updated or made."""
    known = {c.email: c for c in db.session.scalars(
        db.select(Customer).where(Customer.email.in_(by_email), Customer.crm_customer_id.is_(None)))}
    for email, values in by_email.items():
        customer = known.get(email)
        if customer is None:
            customer = known[email] = Customer(crm_customer_id=None, **values)
            db.session.add(customer)
        else:
            for column, value in values.items():
                setattr(customer, column, value)
    db.session.flush()
    return {email: customer.id for email, customer in known.items()}


def _names(conn, events):
    """Campaigns and products the CRM names, so route forms can offer them (a name left empty
    keeps the stored one): the upserts' (statement, rows), which the events' insert runs first."""
    upserts = []
    for model, pairs in ((Campaign, ((e.order.campaignId, e.order.campaignName) for e in events)),
                         (Product, ((p.productId, p.productName) for e in events for p in e.order.products))):
        names = {}
        for id_, name in pairs:
            if id_ is not None and (name or id_ not in names):
                names[id_] = name or ""
        if names:
            upserts.append((_statement(conn, model), sorted(names.items())))
    return upserts


def _insert_events(conn, fresh, customers, forgotten, now, first=()):
    """The new events ({(token, id): event}), inserted in one statement (after `first`, the
    names' upserts: in the same statement on PostgreSQL). A forgotten customer's is stored as
    purged (retention's order, no card): nothing personal is kept, nothing is sent."""
    test_cards = cards.test_cards(current_app.config["TEST_CARD_NUMBERS"])  # compared canonical: 04111... is 4111...
    key = current_app.config["SECRET_KEY"]
    statement = _statement(conn, "events")
    db_time, dumps = statement.time, json.dumps
    rows, stored = [], {}
    for (token_id, event_key), item in fresh.items():
        order, found = _order_for_storage(item.order, key)
        customer = _customer_key(item.order)
        is_forgotten = customer in forgotten
        if is_forgotten:
            order, found = kept_order(order), []
        card = found[0] if found else None
        occurred = item.occurred_at
        if occurred is None:  # it occurred when received: the body's clock reading, as received_at
            occurred = now
        elif occurred.tzinfo:
            occurred = occurred.astimezone(timezone.utc).replace(tzinfo=None)
        is_test = item.order.isTestCard or any(cards.is_test_card(c, test_cards) for c in found)
        customer_id = customers.get(customer)
        rows.append((event_key, token_id, item.type, db_time(occurred), customer_id, item.order.orderId,
                     item.order.campaignId, dumps(order), security.encrypt(key, card) if card else None, is_test,
                     db_time(now) if is_forgotten else None))
        stored[token_id, event_key] = _Stored(0, item.type, occurred, customer_id, item.order.orderId,
                                              item.order.campaignId, is_test, [p.productId for p in item.order.products],
                                              (token_id, event_key), is_forgotten)
    if not rows:
        return []
    for token_id, event_key, event_id in statement.returning(conn, rows, now, first):
        stored[token_id, event_key].id = event_id
    return sorted(stored.values(), key=lambda e: e.id)  # the body's order: ids rise with it


def _order_for_storage(order_in, secret_key):
    """The order as stored, and the card numbers found in it (the order's own first): CVV-like
    keys dropped, card numbers masked where they sit, sensitive fields encrypted (security.scrub_order);
    the card number kept only as cardLast4 and cardBin here, encrypted on the event."""
    order, cards = security.scrub_order(order_in.model_dump(exclude_none=True), secret_key)
    if cards:
        order["cardLast4"], order["cardBin"] = cards[0][-4:], cards[0][:6]
    return order, cards


def _route(event, rules, profiles, plans, db_time):
    """One delivery row per profile for a per-event type, with its due time (the row's columns are
    DELIVERY_COLUMNS); one file row per route for a file type. plans: the body's _plan by profile."""
    rows, delivered_profiles = [], set()
    for rule in matching.matching_routes(rules, event.type, event.campaign_id, event.product_ids):
        profile = profiles[rule.profile_id]
        plan = plans.get(profile.id) or plans.setdefault(profile.id, _plan(profile))
        cls, due_at_for, target = plan
        if cls is None:
            continue
        if cls.schedule != PER_EVENT and rule.route_id is None:
            continue  # a reversal is one request per event: a daily file has none
        if cls.schedule != PER_EVENT:  # it may hang a delivery on the profile: the session's own
            daily_files.add_row(db.session.get(Profile, profile.id), rule.route_id, event)
        elif profile.id not in delivered_profiles:
            delivered_profiles.add(profile.id)
            due_at = due_at_for(event.occurred_at)
            rows.append(((profile.id, event.id, rule.route_id, "scheduled", db_time(due_at), target), due_at))
    return rows


def _plan(profile):
    """What routing needs of a profile, worked out once a body: its export type, its deliveries'
    due time (schedule.due_at) and its target host."""
    return sending.registry().get(profile.export_type), schedule.due_times(profile), sending.target_host(profile)
