"""The dashboard's figures: deliveries by status, attempts per hour, the oldest waiting
delivery, the endpoints failing now, the PGP keys about to expire. Plain queries; no Flask
beyond the db."""
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, func, select

from ..export_types import PgpKeyError, pgp_key_info
from ..extensions import db
from ..models import Attempt, Delivery, Profile, utcnow

HOURS = 24
# Counted exactly up to here; above it, on PostgreSQL, the planner's estimate ("about ...").
COUNT_CAP = 10_000
FAILING_LIMIT = 20
# A partner's PGP key expiring within this many days is flagged: time to ask them for a new one.
PGP_WARNING_DAYS = 30


@dataclass
class HourBar:
    start: datetime
    delivered: int = 0
    failed: int = 0

    @property
    def total(self):
        return self.delivered + self.failed


@dataclass
class Waiting:
    delivery: Delivery
    since: datetime  # when it first became due (its first attempt, for a retrying one)
    waited: timedelta


@dataclass
class FailingEndpoint:
    target: str
    count: int
    last_error: str
    last_failed_at: datetime


@dataclass(frozen=True)
class Count:
    n: int
    estimated: bool = False  # PostgreSQL's estimate, not a count

    def __str__(self):
        return f"about {self.n:,}" if self.estimated else f"{self.n:,}"


def status_counts():
    """{status: Count} for every status, zeros included, in the model's order.

    On PostgreSQL a status is counted through the (status, id) index no further than COUNT_CAP;
    above it the figure is the planner's estimate, marked as one: an exact count of the delivered
    at 1.25 M deliveries scanned them all (340 ms a dashboard), where a number of that size is
    read as an order of magnitude. The waiting, sending and failed ones stay exact while they are
    few, which is when an operator reads them one by one. SQLite counts them all (at 100,000
    deliveries a pass over the index is cheap).
    """
    if db.engine.dialect.name != "postgresql":
        found = dict(db.session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all())
        return {status: Count(found.get(status, 0)) for status in Delivery.STATUSES}
    counts = {}
    for status in Delivery.STATUSES:
        limited = select(Delivery.id).where(Delivery.status == status).limit(COUNT_CAP + 1).subquery()
        n = db.session.scalar(select(func.count()).select_from(limited))
        counts[status] = Count(n) if n <= COUNT_CAP else Count(max(_estimated_rows(status), n), True)
    return counts


def _estimated_rows(status):
    """The planner's estimate of the deliveries in a status (statistics scaled to the table's size
    now). The status is one of the model's constants, written into the statement as a literal."""
    query = select(Delivery.id).where(Delivery.status == status)
    sql = str(query.compile(db.engine, compile_kwargs={"literal_binds": True}))
    plan = db.session.execute(db.text("EXPLAIN (FORMAT JSON) " + sql)).scalar()
    return int(plan[0]["Plan"]["Plan Rows"])


def hour_of(column):
    """The hour a timestamp falls in, as the dialect can group by."""
    if db.engine.dialect.name == "sqlite":
        return func.strftime("%Y-%m-%d %H:00:00", column)
    return func.date_trunc("hour", column)


def as_datetime(value):
    return datetime.fromisoformat(value) if isinstance(value, str) else value.replace(tzinfo=None)


def attempts_per_hour(now=None, hours=HOURS):
    """Delivered and failed attempts in each of the last `hours` hours, oldest first.

    Test sends from a profile's page are not deliveries and are left out.
    """
    now = now or utcnow()
    first = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    bars = {first + timedelta(hours=i): HourBar(first + timedelta(hours=i)) for i in range(hours)}
    hour = hour_of(Attempt.started_at)
    rows = db.session.execute(
        db.select(hour, Attempt.ok, func.count())
        .where(Attempt.is_test.is_(False), Attempt.started_at >= first)
        .group_by(hour, Attempt.ok)).all()
    for start, ok, count in rows:
        bar = bars.get(as_datetime(start))
        if bar is None:  # an attempt stamped in the future (clock skew): not in the window
            continue
        if ok:
            bar.delivered += count
        else:
            bar.failed += count
    return list(bars.values())


def oldest_waiting(now=None):
    """The waiting delivery that has been due the longest, or None.

    A retrying delivery has waited since its first attempt; a scheduled one since its due time,
    or since it was made when that is later (an event that occurred a day before it reached us
    has not waited a day). A scheduled delivery not yet due is not waiting on anything.
    """
    now = now or utcnow()
    became_due = case((Delivery.due_at > Delivery.created_at, Delivery.due_at), else_=Delivery.created_at)
    since = func.coalesce(func.min(Attempt.started_at), became_due)
    row = db.session.execute(
        db.select(Delivery, since.label("since"))
        .outerjoin(Attempt, Attempt.delivery_id == Delivery.id)
        .where(Delivery.status.in_(Delivery.WAITING))
        .group_by(Delivery.id)
        .having(since <= now)
        .order_by(since, Delivery.id)
        .limit(1)).first()
    if row is None:
        return None
    delivery, first_due = row
    first_due = as_datetime(first_due)
    return Waiting(delivery, first_due, now - first_due)


def failing_endpoints(limit=FAILING_LIMIT):
    """Targets of deliveries retrying now: how many, and the latest error from each."""
    rows = db.session.execute(
        db.select(Delivery.target, func.count(), func.max(Delivery.updated_at))
        .where(Delivery.status == "retrying")
        .group_by(Delivery.target)
        .order_by(func.count().desc(), Delivery.target)
        .limit(limit)).all()
    latest = _latest_errors([target for target, _, _ in rows])
    return [FailingEndpoint(target, count, latest.get(target) or "", as_datetime(last))
            for target, count, last in rows]


def _latest_errors(targets):
    """The newest last_error of the retrying deliveries of each target, in one query."""
    newest_first = func.row_number().over(partition_by=Delivery.target,
                                          order_by=(Delivery.updated_at.desc(), Delivery.id.desc()))
    ranked = (db.select(Delivery.target, Delivery.last_error, newest_first.label("rank"))
              .where(Delivery.status == "retrying", Delivery.target.in_(targets)).subquery())
    return dict(db.session.execute(db.select(ranked.c.target, ranked.c.last_error).where(ranked.c.rank == 1)).all())


@dataclass
class ExpiringKey:
    profile: Profile
    fingerprint: str
    expires: datetime
    days_left: float  # 0 or less: expired, files cannot be encrypted


def expiring_pgp_keys(now=None, days=PGP_WARNING_DAYS):
    """Active profiles whose PGP Public Key expires within `days` (or has), soonest first."""
    now = now or utcnow()
    found = []
    for profile in db.session.scalars(db.select(Profile).where(Profile.active.is_(True)).order_by(Profile.id)):
        armored = ((profile.settings or {}).get("pgp_key") or "").strip()
        if not armored:
            continue
        try:
            key = pgp_key_info(armored)
        except PgpKeyError:  # refused at save; a key no gpg here can read shows on its deliveries
            continue
        left = key.days_left(now.replace(tzinfo=key.expires.tzinfo) if key.expires else None)
        if left is not None and left <= days:
            found.append(ExpiringKey(profile, key.fingerprint, key.expires.replace(tzinfo=None), left))
    return sorted(found, key=lambda k: k.days_left)
