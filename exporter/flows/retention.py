"""Retention and "Forget this customer" (issue 12): personal data kept no longer than needed.

purge(): the orders and card numbers of events older than RETENTION_DAYS whose deliveries are all
finished (delivered or cancelled), and the bodies, headers and query strings of attempts as old
(or of those events), are erased in batches of ids, one short transaction each, so the intake is
never held up for long. Deliveries keep their status, times and attempt counts; each customer's
history says what went; a customer whose every event is purged loses name, email and phone too.
The copies of daily files kept for download (kept_copies.KeptCopy, masked but with names and
emails) go once their whole day is older than the cutoff; the delivery says its copy was deleted.

daily_purge(): the cron's daily run of purge(): once a day, however many crons queue it.

forget(): a data-subject request: one customer's personal data erased at once, whatever its age,
their waiting deliveries cancelled so nothing personal goes out afterwards, and the kept copies of
the daily files that carried their events deleted (the partner has the file; our copy goes).

No Flask here: the `exporter purge` command, the daily cron job and the customer page call these.

Over 400 lines: the purge and forget erase the same things by the same helpers, and the purge
writes set-based on PostgreSQL (a statement per batch and table, where executemany wrote a row
at a time) beside SQLite's executemany: one module keeps both ways next to each other.
"""
import functools
import re
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import JSON, BigInteger, Text, any_, bindparam, case, func, literal_column, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import aliased

from .. import audit
from ..files import daily_files
from ..extensions import among, db, exclusive, truncate_wal, writing
from ..models import (KEPT_ORDER_KEYS, Attempt, AuditEntry, Customer, Delivery, Event, FileRow, ForgottenCustomer,
                      HistoryEntry, Route, kept_order, utcnow)

PURGED = "[purged]"
FORGOTTEN = "customer forgotten"  # the cancel reason of a forgotten customer's waiting deliveries
DEFAULT_BATCH_SIZE = 1000
MAX_DAYS = 36500  # a century: more is a typo, and the cutoff's date arithmetic overflows
FINISHED = ("delivered", "rejected", "cancelled")
PERSONAL_FIELDS = ("email", "first_name", "last_name", "phone")
# The daily purge skips when the cron's purge finished this recently: every cron queues it at
# the same 03:30, and the next day's run is 24 hours later.
DAILY_RUN_HOURS = 12


@dataclass
class Counts:
    events: int = 0
    attempts: int = 0
    customers: int = 0
    files: int = 0  # kept copies of daily files

    def words(self):
        return (f"{n(self.events, 'event')}, {n(self.attempts, 'attempt')}, {n(self.customers, 'customer')}, "
                f"{n(self.files, 'kept file copy', 'kept file copies')}")


def n(count, one, many=None):
    """'1 event', '2 events': a count and its noun."""
    return f"{count} {one if count == 1 else many or one + 's'}"


class ForgetRefused(Exception):
    """The customer cannot be forgotten right now (a delivery of theirs is being sent)."""


def check_days(days):
    if not isinstance(days, int) or isinstance(days, bool) or not 0 <= days <= MAX_DAYS:
        raise ValueError(f"retention days must be a whole number, 0 or more and at most {MAX_DAYS} "
                         f"(0 keeps forever), not {days!r}")
    return days


# --- what is due ------------------------------------------------------------------------------

def _events_due(cutoff):
    """Events older than the cutoff, not purged yet, with nothing left to send: no delivery of
    theirs waiting or sending, and no unfinished daily file of their route from those days."""
    own, day_file = aliased(Delivery), aliased(Delivery)
    # The statuses written as literals, never bound: ix_deliveries_unfinished_event's predicate
    # matches them, on a generic plan too.
    finished = [literal_column(f"'{status}'") for status in FINISHED]
    unsent = db.exists().where(own.event_id == Event.id, own.status.not_in(finished))
    # A file of a day before the cutoff (a day late at most: the profile's time zone) still to send.
    unsent_file = db.exists().where(FileRow.event_id == Event.id, day_file.route_id == FileRow.route_id,
                                    day_file.file_date.is_not(None),
                                    day_file.file_date <= (cutoff + timedelta(days=1)).date(),
                                    day_file.status.not_in(FINISHED))
    return (Event.purged_at.is_(None), Event.occurred_at < cutoff, ~unsent, ~unsent_file)


def _attempts_due(cutoff, with_events_due=False):
    """Attempts not purged yet, of a finished delivery (or a profile's Send test), started before
    the cutoff or of an event whose data is purged (or, with_events_due, about to be)."""
    gone = Event.purged_at.is_not(None)
    if with_events_due:
        gone = db.or_(gone, db.and_(*_events_due(cutoff)))
    of_gone_event = Delivery.event_id.in_(select(Event.id).where(gone))
    return (Attempt.purged_at.is_(None), db.or_(Delivery.id.is_(None), Delivery.status.in_(FINISHED)),
            db.or_(Attempt.started_at < cutoff, of_gone_event))


def _attempts():
    return select(Attempt.id).outerjoin(Delivery, Attempt.delivery_id == Delivery.id)


def what_is_due(now, days):
    """What purge(now, days) would erase: events, attempts and the customers whose events they are."""
    if not check_days(days):
        return Counts()
    cutoff = now - timedelta(days=days)
    due = select(Event.id, Event.customer_id).where(*_events_due(cutoff)).subquery()
    events, customers = db.session.execute(
        select(db.func.count(due.c.id), db.func.count(db.distinct(due.c.customer_id)))).one()
    attempts = db.session.scalar(select(db.func.count()).select_from(
        _attempts().where(*_attempts_due(cutoff, with_events_due=True)).subquery()))
    return Counts(events, attempts, customers, len(_copies_due(cutoff)))


def _copies_due(cutoff):
    """The deliveries of finished daily files whose kept copy is there and whose whole day is older
    than the cutoff (a day's margin: the day is the profile's time zone's)."""
    ids, last = daily_files.kept_copy_ids(), (cutoff - timedelta(days=1)).date()
    due = []
    for start in range(0, len(ids), DEFAULT_BATCH_SIZE):
        due += db.session.scalars(select(Delivery.id).where(
            Delivery.id.in_(ids[start:start + DEFAULT_BATCH_SIZE]), Delivery.file_date < last,
            Delivery.status.in_(FINISHED)))
    return due


# --- purge ------------------------------------------------------------------------------------

def purge(now, days, batch_size=DEFAULT_BATCH_SIZE, dry_run=False):
    """Erase what is due (see the module's docstring); the counts. dry_run: the counts, nothing changed.

    Ids are read outside the write lock, then each batch is written and committed on its own."""
    if dry_run or not check_days(days):
        return what_is_due(now, days)
    cutoff = now - timedelta(days=days)
    per_customer = Counter()
    events, attempts = 0, 0
    for ids in _batches(select(Event.id).where(*_events_due(cutoff)), Event.id, batch_size):
        with writing():
            # Still due? Locked (PostgreSQL), and rows another purge holds left to it: each event is
            # erased, counted and told to its customer once, whatever runs beside this one.
            rows = _erase_due_events(ids, cutoff, now)
            of_rows = among(Delivery.event_id, [r.id for r in rows])
            attempts += _erase_attempts((of_rows, Attempt.purged_at.is_(None)), now)
            db.session.commit()
        events += len(rows)
        per_customer.update(r.customer_id for r in rows if r.customer_id is not None)
    for ids in _batches(_attempts().where(*_attempts_due(cutoff)), Attempt.id, batch_size):
        with writing():
            attempts += _erase_attempts((among(Attempt.id, ids), *_attempts_due(cutoff)), now)
            db.session.commit()
    _tell_customers(per_customer, days, now, batch_size)
    files = _delete_copies(_copies_due(cutoff), f"deleted on {now:%Y-%m-%d}: older than {days} days (retention)",
                           batch_size)
    counts = Counts(events, attempts, len(per_customer), files)
    audit.record("retention.purge", "retention", summary=(
        f"Personal data older than {days} days purged: {counts.words()}"), after=asdict(counts))
    db.session.commit()
    truncate_wal()  # the erased values leave SQLite's WAL now, not at its next checkpoint
    return counts


def daily_purge(now, days):
    """The cron's daily purge, run once a day however many crons queue it: the counts, or None
    when skipped because another purge runs now (a lock the database or the kernel drops if its
    holder dies) or because a cron's purge finished in the last DAILY_RUN_HOURS (its audit entry).
    A purge cut short (its worker killed) leaves no entry: a second cron's job finishes it, or the
    next day's does; each batch it committed stays purged."""
    with exclusive("retention.purge") as mine:
        if not mine:
            return None
        ran = db.session.scalar(select(db.func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "retention.purge", AuditEntry.via == "cron",
            AuditEntry.at >= now - timedelta(hours=DAILY_RUN_HOURS)))
        db.session.rollback()
        return None if ran else purge(now, days)


def _delete_copies(delivery_ids, reason, batch_size):
    """Each delivery told why its kept copy goes (committed first), then the copies deleted."""
    deleted = 0
    for start in range(0, len(delivery_ids), batch_size):
        ids = delivery_ids[start:start + batch_size]
        with writing():
            daily_files.forget_kept_copies(db.session.scalars(select(Delivery).where(Delivery.id.in_(ids))), reason)
            db.session.commit()
        deleted += daily_files.delete_kept_copies(ids)
    return deleted


def _batches(query, id_column, size):
    """Lists of at most `size` ids in id order, each read after the last batch was written."""
    last = 0
    while True:
        ids = list(db.session.scalars(query.where(id_column > last).order_by(id_column).limit(size)))
        db.session.rollback()  # end the read: no snapshot or lock held between batches
        if not ids:
            return
        yield ids
        last = ids[-1]


def _erase_due_events(ids, cutoff, now):
    """The batch's events that are still due, erased as _erase_events does; their (id, customer_id).
    On PostgreSQL one UPDATE ... RETURNING cuts each order in place (json_each), so no order
    leaves the server and no row is written one at a time: on bigdb (260 batches) 10 s of
    statements where reading the orders, then an UPDATE per event, took 14.4 s plus the
    client's work on each order. Ids go as one array parameter (extensions.among): a thousand
    placeholders were a fifth of the purge's time in cProfile."""
    if not _on_postgresql():  # one writer at a time (extensions.writing): no other purge beside it
        rows = db.session.execute(select(Event.id, Event.customer_id, Event.order)
                                  .where(Event.id.in_(ids), *_events_due(cutoff))).all()  # still due?
        _erase_events(rows, now)
        return rows
    table = Event.__table__
    # Locked in id order first, rows another purge holds skipped (it erases them), then updated by
    # primary key: two purges side by side neither deadlock nor count an event twice.
    locked = (select(table.c.id).where(among(table.c.id, ids), *_events_due(cutoff)).order_by(table.c.id)
              .with_for_update(skip_locked=True))
    rows = db.session.execute(update(table).where(table.c.id == any_(func.array(locked.scalar_subquery())))
                              .values(order=KEPT_ORDER_SQL, card_number=None, purged_at=now)
                              .returning(table.c.id, table.c.customer_id)).all()
    _erase_delivery_errors([r.id for r in rows])
    return rows


# kept_order in PostgreSQL's words: the order's pairs whose key is kept, in their order; {} when none
KEPT_ORDER_SQL = literal_column(
    """CASE WHEN json_typeof(events."order") = 'object' THEN coalesce((SELECT json_object_agg(key, value) """
    """FROM json_each(events."order") WHERE key IN (""" + ", ".join(f"'{key}'" for key in KEPT_ORDER_KEYS)
    + """)), '{}'::json) ELSE '{}'::json END""")


def _on_postgresql():
    return db.session.get_bind().dialect.name == "postgresql"


def _erase_events(rows, now):
    """Each event's order cut to KEPT_ORDER_KEYS, its card number gone, its deliveries' errors
    without query strings (a postback URL carries personal data)."""
    if not rows:
        return
    table = Event.__table__
    db.session.execute(
        update(table).where(table.c.id == bindparam("b_id"))
        .values(order=bindparam("b_order", type_=JSON), card_number=None, purged_at=now),
        [{"b_id": r.id, "b_order": kept_order(r.order)} for r in rows])
    _erase_delivery_errors([r.id for r in rows])


def _erase_delivery_errors(event_ids):
    """The events' deliveries' last errors without query strings."""
    if not event_ids:
        return
    errors = db.session.execute(select(Delivery.id, Delivery.last_error).where(
        among(Delivery.event_id, event_ids), Delivery.last_error != "")).all()
    _update_each(Delivery.__table__, ("last_error",), [(d.id, without_queries(d.last_error)) for d in errors])


def _update_each(table, columns, rows, **same):
    """UPDATE table SET each of `columns` to its row's value and `same` for all, WHERE id is the
    row's: rows are (id, value, ...) tuples, the values text. On PostgreSQL one statement over
    arrays (unnest), where executemany runs an UPDATE per row (a batch of 1,000 attempts: 15 ms
    against 36); elsewhere executemany."""
    if not rows:
        return
    if not _on_postgresql():
        db.session.execute(update(table).where(table.c.id == bindparam("b_id"))
                           .values(**same, **{c: bindparam("b_" + c) for c in columns}),
                           [{"b_id": row[0], **{"b_" + c: v for c, v in zip(columns, row[1:])}} for row in rows])
        return
    arrays = list(zip(*rows))
    given = func.unnest(bindparam("u_id", list(arrays[0]), type_=ARRAY(BigInteger)),
                        *[bindparam("u_" + c, list(values), type_=ARRAY(Text)) for c, values in zip(columns, arrays[1:])]
                        ).table_valued("id", *columns).render_derived()
    db.session.execute(update(table).where(table.c.id == given.c.id)
                       .values(**same, **{c: given.c[c] for c in columns}))


def _erase_attempts(where, now, skip_locked=True):
    """Blank the attempts that the conditions `where` select: bodies and headers, the target's
    query string, query strings in the error; method, status, times and outcome stay. How many.
    skip_locked: rows another transaction holds (PostgreSQL) are left to it (a concurrent purge
    erases them); else waited for (a Forget erases every one)."""
    rows = db.session.execute(_attempts().add_columns(Attempt.target, Attempt.error).where(*where)
                              .order_by(Attempt.id).with_for_update(of=Attempt, skip_locked=skip_locked)).all()
    if not rows:
        return 0
    table = Attempt.__table__
    _update_each(table, ("target", "error"), [(r.id, without_query(r.target), without_queries(r.error)) for r in rows],
                 purged_at=now, request_headers={}, response_headers={},
                 request_body=case((table.c.request_body == "", ""), else_=PURGED),
                 response_body=case((table.c.response_body == "", ""), else_=PURGED))
    return len(rows)


def without_query(target):
    """A target URL as scheme, host and path: its query string and fragment may name a person."""
    target = target or ""
    hash_at = target.find("#")
    before_hash = target if hash_at < 0 else target[:hash_at]
    query_at = before_hash.find("?")
    if not (hash_at >= 0 and target[hash_at + 1:] or query_at >= 0 and before_hash[query_at + 1:]):
        return target  # no query, no fragment: as urlsplit reads them
    return _purged_url(target[:query_at if query_at >= 0 else hash_at])


@functools.lru_cache(maxsize=1024)
def _purged_url(base):
    """The URL before its query (scheme, host and path, as urlsplit reads them) with the marker
    for a query: one parse per base, where the purge's attempts share a few (a full urlsplit of
    each target was a fifth of the attempts' pass)."""
    return urlunsplit(urlsplit(base)._replace(query=PURGED, fragment=""))


def without_queries(text):
    """Query strings in free text (an error naming the URL it failed on) replaced by the marker."""
    return re.sub(r"\?[^\s'\"<>)]+", "?" + PURGED, text or "")


def _tell_customers(per_customer, days, now, batch_size):
    """One history message per customer, and name, email and phone erased for those with no
    event left unpurged."""
    customers = sorted(per_customer)
    for start in range(0, len(customers), batch_size):
        chunk = customers[start:start + batch_size]
        with writing():
            _insert_history([(c, purged_message(per_customer[c], days)) for c in chunk], now)
            unpurged = db.exists().where(Event.customer_id == Customer.id, Event.purged_at.is_(None))
            db.session.execute(update(Customer).where(among(Customer.id, chunk), ~unpurged)
                               .values({field: "" for field in PERSONAL_FIELDS})
                               .execution_options(synchronize_session=False))
            db.session.commit()


def _insert_history(messages, now):
    """History entries from (customer id, message) pairs: on PostgreSQL one INSERT ... SELECT over
    arrays, where executemany inserts a row at a time; elsewhere executemany."""
    if not _on_postgresql():
        db.session.execute(db.insert(HistoryEntry), [{"customer_id": c, "created_at": now, "message": message}
                                                     for c, message in messages])
        return
    customers, texts = zip(*messages)
    given = func.unnest(bindparam("u_customer", list(customers), type_=ARRAY(BigInteger)),
                        bindparam("u_message", list(texts), type_=ARRAY(Text))
                        ).table_valued("customer_id", "message").render_derived()
    db.session.execute(db.insert(HistoryEntry).from_select(
        ["customer_id", "message", "created_at"],
        select(given.c.customer_id, given.c.message, bindparam("u_now", now, type_=HistoryEntry.created_at.type))))


def purged_message(events, days):
    return f"Personal data of {events} event{'' if events == 1 else 's'} older than {days} days was purged"


# --- forget this customer -----------------------------------------------------------------------

def forget(customer, by, now=None):
    """Erase a customer's personal data (a data-subject request), in one transaction: their
    fields and CRM id (remembered apart, with nothing else: ForgottenCustomer), their events' orders and card numbers, their deliveries' attempts, their
    personal data in history messages; cancel their waiting deliveries. Deliveries stay as
    counts. Refused (ForgetRefused) while a delivery of theirs is being sent."""
    now = now or utcnow()
    with writing():
        try:
            counts, copies = _forget(customer, by, now)
            db.session.commit()
        except BaseException:
            db.session.rollback()
            raise
    daily_files.delete_kept_copies(copies)  # once the deliveries say so: a crash leaves them to the purge
    truncate_wal()  # the erased values leave SQLite's WAL now, not at its next checkpoint
    return counts


def _forget(customer, by, now):
    events = select(Event.id).where(Event.customer_id == customer.id)
    cancelled = db.session.execute(
        update(Delivery).where(Delivery.event_id.in_(events), Delivery.status.in_(Delivery.WAITING))
        .values(status="cancelled", cancel_reason=FORGOTTEN).execution_options(synchronize_session=False)).rowcount
    if db.session.scalar(select(db.func.count()).where(Delivery.event_id.in_(events), Delivery.status == "sending")):
        raise ForgetRefused("A delivery of this customer is being sent right now: try again in a minute.")
    rows = db.session.execute(select(Event.id, Event.customer_id, Event.order).where(Event.customer_id == customer.id)).all()
    _erase_events(rows, now)
    attempts = _erase_attempts((Delivery.event_id.in_(events), Attempt.purged_at.is_(None)), now, skip_locked=False)
    _erase_from_history(customer)
    copies = _kept_copies_of(customer)
    daily_files.forget_kept_copies(copies, f"deleted on {now:%Y-%m-%d}: it held a forgotten customer's data")
    counts = {"events": len(rows), "attempts": attempts, "cancelled_deliveries": cancelled,
              "kept_files_deleted": len(copies)}
    for field in PERSONAL_FIELDS:
        setattr(customer, field, "")
    if customer.crm_customer_id is not None:  # remembered apart, alone: a later event of theirs stores nothing personal
        db.session.add(ForgottenCustomer(crm_customer_id=customer.crm_customer_id, customer_id=customer.id,
                                         forgotten_at=now))
    customer.crm_customer_id, customer.forgotten_at, customer.forgotten_by = None, now, by
    db.session.add(HistoryEntry(customer_id=customer.id, created_at=now, message=(
        f"Forgotten on request: personal data of {n(len(rows), 'event')} erased, "
        f"{n(cancelled, 'waiting delivery', 'waiting deliveries')} cancelled, "
        f"{n(len(copies), 'kept daily-file copy', 'kept daily-file copies')} deleted")))
    audit.record("customer.forget", "customer", customer.id, f"customer {customer.id}", summary=(
        f"Customer {customer.id} forgotten: personal data of {n(len(rows), 'event')} and {n(attempts, 'attempt')} "
        f"erased, {n(cancelled, 'waiting delivery', 'waiting deliveries')} cancelled, "
        f"{n(len(copies), 'kept daily-file copy', 'kept daily-file copies')} deleted"),
        after=counts)
    return counts, [d.id for d in copies]


def _kept_copies_of(customer):
    """The deliveries whose kept copy is there of the daily files (route and day) that carried the
    customer's events."""
    rows = db.session.execute(select(FileRow.route_id, FileRow.occurred_at).join(Event, FileRow.event_id == Event.id)
                              .where(Event.customer_id == customer.id)).all()
    kept = set(daily_files.kept_copy_ids())
    if not rows or not kept:
        return []
    routes = {r.id: r for r in db.session.scalars(select(Route).where(Route.id.in_({row.route_id for row in rows})))}
    days = {(row.route_id, daily_files.local_day(routes[row.route_id].profile, row.occurred_at))
            for row in rows if row.route_id in routes}
    files = db.session.scalars(select(Delivery).where(Delivery.route_id.in_(list(routes)),
                                                      Delivery.file_date.in_({day for _, day in days})))
    return [d for d in files if (d.route_id, d.file_date) in days and d.id in kept]


def _erase_from_history(customer):
    """The customer's own values (name, email, phone) wherever a history message quotes them."""
    values = sorted({v for v in (customer.name, customer.email, customer.first_name, customer.last_name,
                                 customer.phone) if v and len(v) > 1}, key=len, reverse=True)
    if not values:
        return
    pattern = re.compile("|".join(re.escape(v) for v in values), re.IGNORECASE)
    for entry in db.session.scalars(select(HistoryEntry).where(HistoryEntry.customer_id == customer.id)):
        erased = pattern.sub(PURGED, entry.message)
        if erased != entry.message:
            entry.message = erased
