"""Daily-file exports: a day's rows per route, handed to the export type.

Intake records each matching event of a daily-file profile as a FileRow. Every minute
tick() makes, for each route of each active daily-file profile, one delivery per day
whose file is due (the day before, once the profile's local time passes Send At), and
catches up days missed while nothing ran. A worker's drain sends it like any other
delivery, calling build_batch() for the rows and write_history() on success.

A row is late when the file of its day will not carry it: that file was sent, is being
sent or was cancelled, or the day is older than tick() looks back. A late row is kept,
counted on its day's delivery (details.late_rows, on the delivery page) and named in the
customer's history; a re-run of the day sends it, and each file sent recounts what it left out.

The core reads these settings of a daily-file type: `send_at` (HH:MM), `time_zone` (an
IANA name) and `header_row` (the copy kept for download follows it).

Over 400 lines: a day's file is one flow (rows, the day in the profile's zone, the tick, the
streamed batch, history per customer, re-run), and its day arithmetic is shared by all of it.
"""
import contextlib
import json
import logging
import os
import tempfile
import weakref
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import current_app
from sqlalchemy import DateTime, Integer, Text, func, insert, literal, null, select, type_coerce
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from .. import audit, mapping, security
from ..delivery import schedule, sending
from ..profiles import customer_types
from ..export_types import DAILY_FILE, DEFAULT_SEND_AT, Batch
from ..extensions import db
from .kept_copies import KEPT_COPY_GONE, FileRows, KeptCopy, delete_kept_copies, forget_kept_copies, kept_copy_ids, kept_copy_path
from ..models import Delivery, Event, FileRow, HistoryEntry, Profile, utcnow

log = logging.getLogger(__name__)

# Days tick() looks back for files that were never made (the app was down at Send At).
DEFAULT_CATCH_UP_DAYS = 7
# Rows fetched from the database at a time: a day's file is streamed, never held whole.
DEFAULT_YIELD_PER = 1000
# Copies being sent, by delivery: write_history() learns from them how many rows a file carried.
_sending = weakref.WeakKeyDictionary()


class RerunError(ValueError):
    """A re-run that cannot be made; `field` names the input at fault (profile or date)."""

    def __init__(self, field, message):
        super().__init__(message)
        self.field = field


# --- days and times -------------------------------------------------------------------------

def _without_late_rows(delivery):
    return {k: v for k, v in (delivery.details or {}).items() if k != "late_rows"}


def route_words(route):
    """A route as its Profile Routing reads: "Partial, Decline; campaign 259; all products"."""
    if route is None:
        return "a deleted route"
    types = ", ".join(customer_types.label(t) for t in route.customer_types or ()) or "no customer type"

    def ids(values, one, many):
        if not values:
            return f"all {many}"
        return f"{one if len(values) == 1 else many} " + ", ".join(str(v) for v in values)

    return f"{types}; {ids(route.campaigns, 'campaign', 'campaigns')}; {ids(route.products, 'product', 'products')}"


def file_words(delivery):
    """A day's file as commands and pages name it: "the 2026-12-05 file for Partial; all campaigns; all products"."""
    return f"the {delivery.file_date.isoformat()} file for {route_words(delivery.route)}"


def is_daily_file(profile):
    cls = sending.registry().get(profile.export_type)
    return cls is not None and cls.schedule == DAILY_FILE


def zone_of(profile):
    try:
        return ZoneInfo((profile.settings or {}).get("time_zone") or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("profile %s has a bad time zone; using UTC", profile.id)
        return ZoneInfo("UTC")


def send_at_of(profile):
    text = (profile.settings or {}).get("send_at") or DEFAULT_SEND_AT
    try:
        return time.fromisoformat(text)
    except ValueError:
        log.warning("profile %s has a bad Send At %r; using %s", profile.id, text, DEFAULT_SEND_AT)
        return time.fromisoformat(DEFAULT_SEND_AT)


def local_day(profile, occurred_at):
    """The day in the profile's time zone of a naive UTC time (an event's occurred_at)."""
    return occurred_at.replace(tzinfo=timezone.utc).astimezone(zone_of(profile)).date()


def local_now(profile, now=None):
    now = now or datetime.now(timezone.utc)
    if now.tzinfo is None:  # naive means UTC, as in the database
        now = now.replace(tzinfo=timezone.utc)
    return now.astimezone(zone_of(profile))


def day_bounds(profile, day):
    """The day, midnight to midnight in the profile's time zone, as naive UTC (FileRow.occurred_at)."""
    zone = zone_of(profile)

    def utc(d):
        return datetime.combine(d, time(0), tzinfo=zone).astimezone(timezone.utc).replace(tzinfo=None)

    return utc(day), utc(day + timedelta(days=1))


def last_due_day(profile, now=None):
    """The latest day whose file is due: yesterday once Send At has passed, else the day before."""
    local = local_now(profile, now)
    return local.date() - timedelta(days=1 if local.time() >= send_at_of(profile) else 2)


def first_day(profile, last):
    """How far tick() looks back: the catch-up window, never before the profile existed."""
    return max(last - timedelta(days=DEFAULT_CATCH_UP_DAYS - 1), local_day(profile, profile.created_at))


def next_files(profile, now=None):
    """Each route's next file as the screens show it: (route id, its exact name, its day, when it
    is due, in the profile's time zone). The next file is the day after the last one due, sent at
    Send At the day after it. [] for a type that does not name its files."""
    cls = sending.registry().get(profile.export_type)
    if cls is None or cls.schedule != DAILY_FILE:
        return []
    try:
        export_type = cls(sending.plain_settings(profile))
    except ValueError:  # a stored secret the key cannot decrypt: the name needs none
        export_type = cls(profile.settings or {})
    day = last_due_day(profile, now) + timedelta(days=1)
    due = datetime.combine(day + timedelta(days=1), send_at_of(profile), tzinfo=zone_of(profile))
    files = []
    for route in profile.routes:
        try:
            name = export_type.file_name(profile.name, route.id, day)
        except Exception as exc:  # a plugin's name must not break the page
            name = f"(no name: {exc})"
        if name:
            files.append(NextFile(route.id, name, day, due))
    return files


@dataclass
class NextFile:
    route_id: int
    name: str
    day: date
    due: datetime


# --- rows, and rows too late for their day's file -----------------------------------------

def add_row(profile, route_id, event):
    """Record a stored event (its id, occurred_at, customer_id) as a row of a route's daily file
    (intake calls this for daily-file types).

    A late row (see the module's docstring) is counted on its day's delivery, made cancelled
    if that day has none, and the customer's history says the file does not carry it yet.
    """
    db.session.add(FileRow(route_id=route_id, event_id=event.id, occurred_at=event.occurred_at))
    note_late(profile, route_id, event)


def add_rows(profile, pairs):
    """add_row() for many (route id, event) pairs at once, leaving alone a row stored already (a
    concurrent replay's: INSERT ... ON CONFLICT DO NOTHING on the unique route and event). The
    pairs whose row this made."""
    if not pairs:
        return []
    dialect = postgresql if db.engine.dialect.name == "postgresql" else sqlite
    made = set(db.session.execute(
        dialect.insert(FileRow.__table__).on_conflict_do_nothing(index_elements=["route_id", "event_id"])
        .returning(FileRow.route_id, FileRow.event_id),
        [dict(route_id=route_id, event_id=event.id, occurred_at=event.occurred_at) for route_id, event in pairs]).all())
    pairs = [(route_id, event) for route_id, event in pairs if (route_id, event.id) in made]
    for route_id, event in pairs:
        note_late(profile, route_id, event)
    return pairs


def note_late(profile, route_id, event):
    """A row just stored that its day's file will not carry: counted late (see add_row)."""
    day = local_day(profile, event.occurred_at)
    delivery = _day_delivery(route_id, day)
    reason = late_reason(profile, day, delivery)
    if reason is None:
        return
    if delivery is None:
        delivery = _unmade_file(profile, route_id, day)
    delivery.details = {**(delivery.details or {}), "late_rows": (delivery.details or {}).get("late_rows", 0) + 1}
    if event.customer_id:
        db.session.add(HistoryEntry(
            customer_id=event.customer_id, event_id=event.id, delivery_id=delivery.id,
            message=f"Export profile '{profile.name}': not in the daily file of {day.isoformat()} yet: {reason}; "
                    f"re-run the day to include it"))


def late_reason(profile, day, delivery, now=None):
    """Why the file of the day will not carry a row recorded now, or None when it will."""
    if delivery is None:
        if day >= first_day(profile, last_due_day(profile, now)):
            return None  # tick() makes that file, from every row of the day, once it is due
        return (f"that day is older than the {DEFAULT_CATCH_UP_DAYS} days whose files are made on schedule "
                f"(or the profile did not exist yet)")
    if delivery.status in Delivery.WAITING:
        return None  # the file is made from every row of the day when it is sent
    return {"sending": "it arrived while the file was being sent",
            "cancelled": "that day's file is cancelled"}.get(delivery.status, "it arrived after the file was sent")


def _day_delivery(route_id, day):
    """The route's delivery of the day, looked up once per transaction.

    Locked until commit (PostgreSQL; on SQLite the flush takes the database's write lock), so
    no worker starts or finishes that file between this look and the row being committed.
    """
    days = _looked_up()
    if (route_id, day) not in days:
        db.session.flush()
        days[route_id, day] = db.session.scalar(
            select(Delivery).where(Delivery.route_id == route_id, Delivery.file_date == day).with_for_update())
    return days[route_id, day]


def _looked_up():
    """{(route id, day): delivery or None} of the session's current transaction."""
    session = db.session()
    transaction, days = session.info.get("daily_files.days", (None, None))
    if transaction is None or transaction is not session.get_transaction():
        days = {}
        session.info["daily_files.days"] = (session.get_transaction(), days)
    return days


def _unmade_file(profile, route_id, day):
    """A day tick() will never make: a cancelled delivery that holds its late rows until a re-run."""
    delivery = Delivery(profile=profile, route_id=route_id, file_date=day, status="cancelled", due_at=utcnow(),
                        target=sending.target_host(profile), details={},
                        cancel_reason=f"not made on schedule: {day.isoformat()} is older than the "
                                      f"{DEFAULT_CATCH_UP_DAYS}-day catch-up; re-run the day to send it")
    db.session.add(delivery)
    db.session.flush()  # a concurrent request made it first: IntegrityError, and intake tries again
    _looked_up()[route_id, day] = delivery
    return delivery


def _recount_late(delivery, sent_rows):
    """After a file is sent: the rows of its day now stored that it did not carry."""
    start, end = day_bounds(delivery.profile, delivery.file_date)
    stored = db.session.scalar(select(func.count()).select_from(FileRow).join(Event, FileRow.event_id == Event.id)
                               .where(*_day_rows(delivery.route_id, start, end)))
    details = _without_late_rows(delivery)
    if stored > sent_rows:
        details["late_rows"] = stored - sent_rows
    delivery.details = details


# --- making the day's deliveries ------------------------------------------------------------

def file_delivery(profile, route_id, day, now=None):
    delivery = Delivery(profile=profile, route_id=route_id, file_date=day, status="scheduled",
                        due_at=now or utcnow(), target=sending.target_host(profile))
    db.session.add(delivery)
    return delivery


def tick(now=None):
    """Create and enqueue the files that are due; safe to run often and from two places at once."""
    made = []
    profiles = db.session.scalars(
        select(Profile).where(Profile.active.is_(True)).order_by(Profile.id)).all()
    for profile in profiles:
        if is_daily_file(profile) and profile.routes:
            made += _make_due(profile, now)
    for delivery in made:
        schedule.enqueue(delivery)
    return len(made)


def _make_due(profile, now):
    last = last_due_day(profile, now)
    first = first_day(profile, last)
    if first > last:
        return []
    have = set(db.session.execute(
        select(Delivery.route_id, Delivery.file_date)
        .where(Delivery.profile_id == profile.id, Delivery.file_date >= first, Delivery.file_date <= last)).all())
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    made = [file_delivery(profile, route.id, day) for route in profile.routes for day in days
            if (route.id, day) not in have]
    try:
        db.session.commit()
    except IntegrityError:  # another tick made them first (unique route and day)
        db.session.rollback()
        return []
    return made


def rerun(profile, day, enqueue=True, now=None):
    """Rebuild and resend a past day's file for every route of the profile.

    Resets each route's delivery of that day to scheduled and due now (or makes it).
    Returns (deliveries queued, deliveries left alone because a worker is sending them).
    """
    if not is_daily_file(profile):
        raise RerunError("profile", f"profile {profile.name!r} is not a daily-file export type "
                                    f"({profile.export_type})")
    today = local_now(profile, now).date()
    if day >= today:
        raise RerunError("date", f"{day.isoformat()} is not over yet in {zone_of(profile).key} (today is "
                                 f"{today.isoformat()} there): a day's file can be sent once the day has ended")
    if not profile.routes:
        raise RerunError("profile", f"profile {profile.name!r} has no routes: add one in Profile Routing")
    queued, busy, due = [], [], utcnow()
    for route in profile.routes:
        delivery = db.session.scalar(
            select(Delivery).where(Delivery.route_id == route.id, Delivery.file_date == day))
        if delivery is None:
            queued.append(file_delivery(profile, route.id, day, due))
        elif delivery.status == "sending":
            busy.append(delivery)
        else:
            delivery.status, delivery.due_at, delivery.claimed_at = "scheduled", due, None
            delivery.cancel_reason = delivery.last_error = ""
            # The file is made again from every row of the day: none is late any more.
            delivery.details = _without_late_rows(delivery)
            queued.append(delivery)
    db.session.flush()
    audit.record("file.rerun", "profile", profile.id, profile.name, profile_id=profile.id,
                 summary=f"Re-run of the file of {day.isoformat()}: {len(queued)} {'file' if len(queued) == 1 else 'files'} queued",
                 after={"date": day.isoformat(), "deliveries": [d.id for d in queued],
                        "left_alone": [d.id for d in busy]})
    db.session.commit()
    if enqueue:
        for delivery in queued:
            schedule.enqueue(delivery)
    return queued, busy


# --- sending --------------------------------------------------------------------------------

def _day_rows(route_id, start, end):
    """A day's rows: never a test order, nor an event whose personal data was purged (retention.py)."""
    return (FileRow.route_id == route_id, FileRow.occurred_at >= start, FileRow.occurred_at < end,
            Event.is_test.is_(False), Event.purged_at.is_(None))


def rendered_rows(profile, route_id, day, renderer, yield_per=DEFAULT_YIELD_PER, carried=None, values=False):
    """The route's rows of the day in occurred_at order, rendered (as pairs, or as values only),
    streamed from the database; `carried`, when given, keeps the highest FileRow id streamed
    (for the history of the file).

    Only the columns a row needs are selected, in batches of `yield_per` through a server-side
    cursor on PostgreSQL (stream_results), with no ORM object made: memory stays flat however
    big the day, and each row costs its JSON decode and the renderer's from_order().
    The order is selected as it is stored and decoded here (see _order_loader).
    """
    start, end = day_bounds(profile, day)
    wants_card = renderer.wants_card and profile.pci_documented  # decrypt card numbers only when sent
    card = Event.card_number if wants_card else null()
    key = current_app.config["SECRET_KEY"]
    result = db.session.connection().execute(
        select(Event.type, type_coerce(Event.order, Text), card, FileRow.id)
        .join(FileRow, FileRow.event_id == Event.id)
        .where(*_day_rows(route_id, start, end))
        .order_by(FileRow.occurred_at, FileRow.id)
        .execution_options(stream_results=True, yield_per=yield_per))
    render, last_row_id = renderer.values_from_order if values else renderer.from_order, 0
    opens, pci, loads = renderer.opens_order, profile.pci_documented, _order_loader()
    try:
        for batch in result.partitions():  # a batch of rows at a time: no call per row to fetch it
            for event_type, order, card_number, row_id in batch:
                if row_id > last_row_id:
                    last_row_id = row_id
                if order.__class__ is str:  # the JSON text (SQLite); PostgreSQL's driver decodes it
                    order = loads(order)
                if card_number:
                    card_number = security.decrypt(key, card_number)
                if opens:
                    order = security.opened_order(order, key, pci)
                yield render(order or {}, event_type, card_number)
    finally:
        result.close()
        if carried is not None:
            carried["last_row_id"] = max(carried.get("last_row_id", 0), last_row_id)


def _order_loader():
    """json.loads for a stored order, without its checks around the value when the text is only
    the value (as stored: no whitespace around it); anything else goes through json.loads itself.
    One decoder per file: its scanner's memo is not shared between threads."""
    scan = json.JSONDecoder().scan_once

    def loads(text):
        try:
            value, end = scan(text, 0)
        except (StopIteration, ValueError):
            return json.loads(text)  # its own answer, or its own error
        return value if end == len(text) else json.loads(text)

    return loads


def build_batch(delivery):
    """The day's file for a route as a Batch streaming its rows; nothing to redact from the log.

    The attempt log holds the file's name, size and checksum, never its rows; the copy
    kept for download has sensitive values masked.
    """
    profile = delivery.profile
    if delivery.route_id is None:
        raise LookupError("the route of this file was deleted; cancel the delivery")
    # shared, cached: the type gets its own list of columns
    renderer = mapping.renderer_for(profile, current_app.config["SECRET_KEY"])
    copy = _sending[delivery] = KeptCopy(delivery, renderer,
                                         header=(profile.settings or {}).get("header_row", True))
    day = (profile, delivery.route_id, delivery.file_date, renderer)
    rows = FileRows(copy, lambda: rendered_rows(*day, carried=copy.carried),
                    lambda: rendered_rows(*day, carried=copy.carried, values=True))
    batch = Batch(columns=list(renderer.columns), rows=rows, profile_name=profile.name,
                  idempotency_key=str(delivery.id), route_id=delivery.route_id,
                  route_name=str(delivery.route_id), file_date=delivery.file_date,
                  allow_private_targets=bool(current_app.config["ALLOW_PRIVATE_TARGETS"]),
                  work_dir=work_dir())
    return batch, []


def work_dir():
    """FILES_DIR/tmp, mode 0700: where a type writes the file before the upload (it may hold
    card numbers), emptied of the files a killed send left. A send lasts at most
    CLAIM_TIMEOUT_SECONDS (its job is stopped then), so an older file is nobody's."""
    path = os.path.join(current_app.config["FILES_DIR"], "tmp")
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    with tempfile.NamedTemporaryFile(dir=path) as probe:  # the clock that stamps the files (a share's may differ)
        stale = os.fstat(probe.fileno()).st_mtime - float(current_app.config["CLAIM_TIMEOUT_SECONDS"])
    for entry in os.scandir(path):
        with contextlib.suppress(FileNotFoundError):  # another send swept it first
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < stale:
                os.unlink(entry.path)
                log.warning("removed %s, left by a send that did not finish", entry.path)
    return path


def write_history(delivery, message):
    """One history message per customer in the file, linking to the delivery; keep the copy."""
    # Also called when a waiting file is cancelled: keep the copy only of a file that arrived.
    if KeptCopy(delivery).keep(uploaded=(delivery.details or {}).get("uploaded") is True):
        delivery.details = {k: v for k, v in (delivery.details or {}).items() if k != KEPT_COPY_GONE}
    sent = _sending.pop(delivery, None)
    if sent is not None and sent.rows is not None:
        _recount_late(delivery, sent.rows)
    start, end = day_bounds(delivery.profile, delivery.file_date)
    in_file = ([FileRow.id <= sent.carried.get("last_row_id", 0)]
               if sent is not None and sent.rows is not None else [])
    customers = (
        select(Event.customer_id, func.min(Event.id), literal(delivery.id, Integer),
               literal(message, Text), literal(utcnow(), DateTime))
        .join(FileRow, FileRow.event_id == Event.id)
        .where(*_day_rows(delivery.route_id, start, end), Event.customer_id.is_not(None), *in_file)
        .group_by(Event.customer_id))
    db.session.execute(insert(HistoryEntry).from_select(
        ["customer_id", "event_id", "delivery_id", "message", "created_at"], customers))


def parse_day(text):
    """A YYYY-MM-DD date, or RerunError naming the date."""
    try:
        return datetime.strptime((text or "").strip(), "%Y-%m-%d").date()
    except ValueError:
        raise RerunError("date", f"{text!r} is not a date as YYYY-MM-DD") from None
