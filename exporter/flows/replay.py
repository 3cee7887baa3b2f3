"""Send past events to a profile (issue 12): a date range and the profile's routes (or some of
their customer types) make deliveries for the stored events this profile has not exported yet.

The same function serves the profile page's "Send past events" and `exporter profiles replay`.
A replayed delivery is an ordinary one: due the profile's Export Delay after the replay, then
claimed, sent, retried and written to the customer's history by the drain like a live event's
(send windows and caps act at claim time). "Never twice": an event with any delivery of this
profile (delivered, waiting or cancelled) is left out, and the unique (profile, event) of the
deliveries table holds against a concurrent replay. Test-card orders are never replayed; a
partial whose customer or order converted since is left out when the profile skips converted
partials. An event whose personal data was purged (retention.py: older than RETENTION_DAYS, or a
forgotten customer's) is never replayed: it is counted apart, its data is gone.

A daily-file profile's replay records the events as rows of their route's file for their day
(as intake does). A day whose file is still to be made carries them on schedule; a day whose
file was already sent (or is older than the catch-up) counts them as late rows, and the result
names those days: re-run a day to send its file again with them.

Events are read, matched and inserted CHUNK at a time, each chunk its own short transaction (on
SQLite under the process's writer lock, taken per chunk): a range of 100,000 events is never held
in memory, nor blocks the intake for its whole length. A replay stopped half-way keeps the chunks
it committed; run again, it makes the rest (what was made counts as already exported). Its audit
entry is written at the end, with the totals.

Over 400 lines: Send past events and Send this event share one set of rules (routes, never
twice, test cards, purged events, converted partials, daily files' rows), which read best together.
"""
import contextlib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import and_, exists, false, insert, literal, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import aliased

from .. import audit
from ..profiles import customer_types, matching
from ..files import daily_files
from ..delivery import schedule, sending
from ..extensions import db, writing
from ..models import FIRST_YEAR, LAST_YEAR, Delivery, Event, FileRow, HistoryEntry, utcnow

MAX_DAYS = 366  # the longest range one replay covers
CHUNK = 1000  # events read, matched and inserted at a time


class ReplayError(ValueError):
    """A replay that cannot be made; `field` names the input at fault (profile, since, until,
    customer_types)."""

    def __init__(self, field, message):
        super().__init__(message)
        self.field = field


@dataclass
class Result:
    """What a replay found in the range, and what it made (nothing on a dry run)."""
    profile_name: str
    since: date
    until: date
    customer_types: list
    daily_file: bool = False
    dry_run: bool = True
    matched: int = 0  # events in the range the routes match (test-card orders aside)
    already: int = 0  # of those, exported (delivered, waiting or cancelled) to this profile before
    converted: int = 0  # partials left out: their customer or order converted since
    purged: int = 0  # left out: their personal data was purged (retention, a forgotten customer)
    test_orders: int = 0  # test-card orders the routes match: never replayed
    created: int = 0  # deliveries (file rows for a daily-file profile) made
    late_days: list = field(default_factory=list)  # daily files: days already made that hold new rows
    days: set = field(default_factory=set, repr=False)  # daily files: the days given new rows

    @property
    def to_send(self):
        return self.matched - self.already - self.converted - self.purged

    def summary(self):
        """One line for the screen, the CLI and the audit log; counts of nothing left out."""
        what = ("file row", "file rows") if self.daily_file else ("delivery", "deliveries")
        parts = [f"{count(self.matched, 'event matches', 'events match')}"]
        left_out = [(self.already, "already sent or queued for this profile"),
                    (self.converted, count(self.converted, "converted partial", "converted partials", bare=True) + " skipped"),
                    (self.purged, "purged: their data is gone, not sent"),
                    (self.test_orders, count(self.test_orders, "test-card order", "test-card orders", bare=True)
                     + " never sent")]
        parts += [f"{n} {words}" for n, words in left_out if n]
        if self.dry_run:
            return "; ".join(parts) + f"; {self.to_send} will be sent."
        line = "; ".join(parts) + f"; {count(self.created, *what)} created."
        if self.late_days:
            line += (" The files of " + ", ".join(d.isoformat() for d in self.late_days) +
                     " were already made: re-run those days to send them.")
        return line


def count(n, one, many, bare=False):
    """'1 event', '2 events' (bare: the noun alone, for a count said before it)."""
    noun = one if n == 1 else many
    return noun if bare else f"{n} {noun}"


def parse_date(text, field):
    """A YYYY-MM-DD date, or ReplayError naming the field."""
    if isinstance(text, date):
        return text
    try:
        return datetime.strptime((text or "").strip(), "%Y-%m-%d").date()
    except ValueError:
        raise ReplayError(field, f"{text!r} is not a date as YYYY-MM-DD") from None


def default_range(profile, days=7):
    """The range a form offers first: the last week, to today in the profile's time zone."""
    today = daily_files.local_now(profile).date()
    return today - timedelta(days=days), today


def zone_name(profile):
    """Where the range's days run midnight to midnight: a daily file's time zone, else UTC."""
    return daily_files.zone_of(profile).key


def route_types(profile):
    """The customer types of the profile's routes, in the catalog's order."""
    wanted = {t for route in profile.routes for t in (route.customer_types or ())}
    if profile.reversal_of_id is not None:  # "Reversal of": its reversal types route it too
        wanted |= set(filter(None, (profile.reversal_types or "").split(",")))
    return [slug for slug in customer_types.SLUGS if slug in wanted]


def _check_profile(profile):
    """An active profile of an installed type, with routes: the customer types they offer."""
    if not profile.active:
        raise ReplayError("profile", f"profile {profile.name!r} is not Active: past events go only to an active profile")
    if sending.registry().get(profile.export_type) is None:
        raise ReplayError("profile", f"export type {profile.export_type!r} of profile {profile.name!r} is not installed")
    offered = route_types(profile)
    if not offered:
        raise ReplayError("profile", f"profile {profile.name!r} has no routes: add one in Profile Routing "
                                     "(or make it a reversal of another profile)")
    return offered


def check(profile, since, until, types=()):
    """The replay's inputs, checked: (since, until, customer types); ReplayError otherwise."""
    offered = _check_profile(profile)
    since, until = parse_date(since, "since"), parse_date(until, "until")
    for name, day in (("since", since), ("until", until)):
        if not FIRST_YEAR <= day.year <= LAST_YEAR:
            raise ReplayError(name, f"{day.isoformat()} is not in the years {FIRST_YEAR} to {LAST_YEAR}")
    if since > until:
        raise ReplayError("until", f"To date {until.isoformat()} is before From date {since.isoformat()}")
    if (until - since).days + 1 > MAX_DAYS:
        raise ReplayError("until", f"at most {MAX_DAYS} days at a time: split the range")
    for slug in types:
        if slug not in customer_types.SLUGS:
            raise ReplayError("customer_types", f"{slug!r} is not a customer type")
        if slug not in offered:
            raise ReplayError("customer_types", f"{customer_types.label(slug)} is not among this profile's routes' "
                                                f"customer types ({', '.join(offered)})")
    return since, until, [slug for slug in offered if not types or slug in types]


def matching_events(profile, since, until, types=()):
    """What a replay would do, counted and nothing made (the page's Count, the CLI's --dry-run)."""
    return replay(profile, since, until, types, dry_run=True)


def replay(profile, since, until, types=(), dry_run=False):
    """Make a delivery (or file rows) for each matching event this profile has not exported; audited."""
    since, until, types = check(profile, since, until, types)
    result = Result(profile.name, since, until, types, daily_file=daily_files.is_daily_file(profile),
                    dry_run=dry_run)
    if dry_run:
        for chunk in _chunks(profile, since, until, types):
            _count(chunk, result)
        return result
    due_times = set()
    read, after = _reader(profile, since, until, types), 0
    while after is not None:
        with _transaction():  # per chunk: the intake writes between two chunks (SQLite's one writer)
            chunk, after = read(after)
            fresh = _count(chunk, result)
            if fresh:
                due_times |= _make(profile, fresh, result)
    with _transaction():
        result.late_days = _late_days(profile, result) if result.daily_file else []
        audit.record("profile.replay", "profile", profile.id, profile.name, profile_id=profile.id,
                     summary=f"Send past events {since.isoformat()} to {until.isoformat()}: {result.summary()}",
                     after={"since": since.isoformat(), "until": until.isoformat(), "customer_types": types,
                            "matched": result.matched, "already_exported": result.already,
                            "converted_skipped": result.converted, "purged": result.purged,
                            "test_orders": result.test_orders,
                            "created": result.created})
    if due_times:
        schedule.wake(due_times)
    return result


@contextlib.contextmanager
def _transaction():
    """A write transaction of the replay: SQLite's writers take turns (extensions.writing), and it
    is committed, or rolled back on any error."""
    with writing():
        try:
            yield
            db.session.commit()
        except BaseException:
            db.session.rollback()
            raise


# --- one event ----------------------------------------------------------------------------------

def replay_event(profile, event_id):
    """Send one stored event to a profile (a delivery's or a customer's page): the rules of a
    replay (routes that match it, never twice, never a test-card order, a purged event or a
    converted partial the profile skips), audited. Returns (made, words)."""
    offered = _check_profile(profile)
    rules = _rules(profile, offered)
    row = db.session.execute(select(*_columns(profile), Event.order, Event.event_key)
                             .where(Event.id == event_id)).one_or_none()
    if row is None:
        raise ReplayError("event", "there is no such event")
    matched = matching.matching_routes(rules, row.type, row.campaign_id, _product_ids(row))
    if not matched:
        raise ReplayError("event", f"the routes of profile {profile.name!r} do not take this event "
                                   f"({customer_types.label(row.type)}, campaign {row.campaign_id})")
    day = daily_files.local_day(profile, row.occurred_at)
    result = Result(profile.name, day, day, [row.type], daily_file=daily_files.is_daily_file(profile), dry_run=False)
    with _transaction():
        fresh = _count([(row, matched)], result)
        due_times = _make(profile, fresh, result) if fresh else set()
        words = _one_event_words(profile, row, result)
        if result.created:
            audit.record("profile.replay_event", "profile", profile.id, profile.name, profile_id=profile.id,
                         summary=f"Event {row.event_key} sent to this profile (Send this event)",
                         after={"event": row.event_key, "event_id": row.id, "day": day.isoformat()})
    if due_times:
        schedule.wake(due_times)
    return bool(result.created), words


def _one_event_words(profile, row, result):
    if result.created:
        late = result.daily_file and _late_days(profile, result)
        into = (f"a row of its daily file of {result.since.isoformat()}" + (" (already sent: re-run that day)"
                                                                            if late else "")
                if result.daily_file else "a delivery, sent after its Export Delay")
        return f"Event {row.event_key} goes to {profile.name!r}: {into}."
    if result.test_orders:
        why = "it is a test-card order: never sent"
    elif result.already:
        why = "it was already sent or queued for this profile: never twice"
    elif result.purged:
        why = "its personal data was purged: not sent"
    else:
        why = "a partial whose customer or order converted since, and the profile skips those"
    return f"Event {row.event_key} not sent to {profile.name!r}: {why}."


# --- reading the range ------------------------------------------------------------------------

def _rules(profile, types):
    """The profile's routes as matching rules, narrowed to the chosen customer types."""
    chosen = set(types)
    rules = [matching.RouteRule(r.id, profile.id, frozenset(chosen.intersection(r.customer_types or ())),
                                frozenset(r.campaigns or ()), frozenset(r.products or ())) for r in profile.routes]
    if profile.reversal_of_id is not None:
        reversal = matching.reversal_rule(profile.id, profile.reversal_types)
        rules.append(matching.RouteRule(None, profile.id, reversal.customer_types & chosen))
    return rules


def _chunks(profile, since, until, types):
    """The range's events of the chosen types, CHUNK at a time by id, each with the routes it matches."""
    read, after = _reader(profile, since, until, types), 0
    while after is not None:
        chunk, after = read(after)
        yield chunk


def _reader(profile, since, until, types):
    """read(after): the next chunk of the range's events after the id `after`, each with the
    routes it matches, and the id to read after next (None: the range is read to its end)."""
    rules = _rules(profile, types)
    by_products = any(rule.products for rule in rules)
    start, end = daily_files.day_bounds(profile, since)[0], daily_files.day_bounds(profile, until)[1]
    columns = _columns(profile)
    if by_products:
        columns.append(Event.order)
    in_range = (Event.occurred_at >= start, Event.occurred_at < end, Event.type.in_(types))

    def read(after):
        rows = db.session.execute(select(*columns).where(*in_range, Event.id > after)
                                  .order_by(Event.id).limit(CHUNK)).all()
        chunk = [(row, matched) for row in rows
                 if (matched := matching.matching_routes(rules, row.type, row.campaign_id,
                                                         _product_ids(row) if by_products else ()))]
        return chunk, (rows[-1].id if len(rows) == CHUNK else None)

    return read


def _columns(profile):
    return [Event.id, Event.type, Event.campaign_id, Event.customer_id, Event.occurred_at, Event.is_test,
            Event.purged_at, _exported(profile).label("exported"), _converted(profile).label("converted")]


def _product_ids(row):
    products = (row.order or {}).get("products") or []
    return [p.get("productId") for p in products if isinstance(p, dict)]


def _exported(profile):
    """The event went to this profile before: a delivery in any status, or a row of its daily file."""
    if daily_files.is_daily_file(profile):
        return exists().where(FileRow.event_id == Event.id,
                              FileRow.route_id.in_([r.id for r in profile.routes]))
    return exists().where(Delivery.profile_id == profile.id, Delivery.event_id == Event.id)


def _converted(profile):
    """A partial whose customer or order has a sale stored or made after it (intake's "converted")."""
    if not profile.skip_converted_partials:
        return literal(False)
    sale = aliased(Event)
    same_owner = or_(and_(Event.customer_id.is_not(None), sale.customer_id == Event.customer_id),
                     and_(Event.order_id.is_not(None), sale.order_id == Event.order_id))
    later = or_(sale.id > Event.id, sale.occurred_at > Event.occurred_at)
    return and_(Event.type == "partial", exists().where(
        sale.type.in_(customer_types.CONVERSIONS), sale.is_test.is_(false()), same_owner, later))


def _count(chunk, result):
    """Count a chunk's events into the result; those to send, with the routes they match."""
    fresh = []
    for row, matched in chunk:
        if row.is_test:
            result.test_orders += 1
            continue
        result.matched += 1
        if row.exported:
            result.already += 1
        elif row.purged_at is not None:
            result.purged += 1
        elif row.converted:
            result.converted += 1
        else:
            fresh.append((row, matched))
    return fresh


# --- making deliveries and file rows ------------------------------------------------------------

def _make(profile, fresh, result):
    if result.daily_file:
        _make_file_rows(profile, fresh, result)
        return set()
    return _make_deliveries(profile, fresh, result)


def _make_deliveries(profile, fresh, result):
    """One delivery per event, due the Export Delay after now (an event's own due time is past);
    a delivery another replay made meanwhile is left alone (ON CONFLICT DO NOTHING)."""
    now, target = utcnow(), sending.target_host(profile)
    rows = [dict(profile_id=profile.id, event_id=row.id, route_id=matched[0].route_id, status="scheduled",
                 due_at=schedule.due_at(profile, max(row.occurred_at, now)), target=target,
                 created_at=now, updated_at=now) for row, matched in fresh]
    made = db.session.execute(_insert_ignoring_repeats().returning(Delivery.id, Delivery.event_id, Delivery.due_at),
                              rows).all()
    customers = {row.id: row.customer_id for row, _ in fresh}
    history = [dict(customer_id=customers[event_id], event_id=event_id, delivery_id=delivery_id, created_at=now,
                    message=f"Export profile '{profile.name}': past event replayed (Send past events), "
                            f"due {due:%Y-%m-%d %H:%M:%S} UTC")
               for delivery_id, event_id, due in made if customers[event_id]]
    if history:
        db.session.execute(insert(HistoryEntry.__table__), history)
    result.created += len(made)
    return {due for _, _, due in made}


def _insert_ignoring_repeats():
    dialect = postgresql if db.engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(Delivery.__table__).on_conflict_do_nothing(index_elements=["profile_id", "event_id"])


def _make_file_rows(profile, fresh, result):
    """A row of each matching route's file for the event's day (daily_files.add_rows: late rows
    counted on their day's delivery and named in the history; a row a concurrent replay made is
    left alone), and a history line per event given a row."""
    made = daily_files.add_rows(profile, [(rule.route_id, row) for row, matched in fresh for rule in matched])
    result.created += len(made)
    events = {row.id: row for _, row in made}
    history = []
    for row in events.values():
        day = daily_files.local_day(profile, row.occurred_at)
        result.days.add(day)
        if row.customer_id:
            history.append(dict(customer_id=row.customer_id, event_id=row.id, created_at=utcnow(),
                                message=f"Export profile '{profile.name}': past event replayed into the daily file "
                                        f"of {day.isoformat()}"))
    if history:
        db.session.execute(insert(HistoryEntry.__table__), history)


def _late_days(profile, result):
    """Days given new rows whose file will not carry them on schedule: already made, or too old."""
    days = sorted(result.days)
    if not days:
        return []
    routes = [r.id for r in profile.routes]
    made = set(db.session.scalars(select(Delivery.file_date).where(
        Delivery.route_id.in_(routes), Delivery.file_date.in_(days), Delivery.status.not_in(Delivery.WAITING))))
    return [d for d in days if d in made]
