"""The whole schema. The database is the source of truth; Redis only carries work.

Over 400 lines: one schema, read in one place; every part imports it, and split files would
only move the same tables apart."""
import secrets
from datetime import datetime, timezone

from flask_login import UserMixin
from sqlalchemy import text
from sqlalchemy import JSON, BigInteger, Boolean, Date, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from .extensions import db


def utcnow():
    return datetime.now(timezone.utc).replace(tzinfo=None)


# The years an event may have occurred in (intake) and a replay may cover: a time outside them
# is a CRM's or a typist's mistake, not an order, and the far ends overflow date arithmetic.
FIRST_YEAR, LAST_YEAR = 1970, 2100


# All datetimes are naive UTC in the database: one rule for SQLite and PostgreSQL.
UTC = DateTime(timezone=False)

ROLE_ADMIN, ROLE_VIEWER = "admin", "viewer"
ROLES = (ROLE_ADMIN, ROLE_VIEWER)


class User(UserMixin, db.Model):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    # Named by every session of this user: a new one (logout, password change) ends them all.
    session_token: Mapped[str] = mapped_column(String(64), default=lambda: secrets.token_urlsafe(32),
                                               server_default="")
    created_at: Mapped[datetime] = mapped_column(UTC, default=utcnow)
    # "admin" changes everything; "viewer" reads everything and changes nothing (web/__init__.py).
    role: Mapped[str] = mapped_column(String(20), default=ROLE_ADMIN, server_default=ROLE_ADMIN)
    disabled_at: Mapped[datetime | None] = mapped_column(UTC)
    last_login_at: Mapped[datetime | None] = mapped_column(UTC)
    # The one live set-password link (invite or reset), kept only as a hash; used once.
    password_link_hash: Mapped[str | None] = mapped_column(String(64), unique=True, index=True)
    password_link_expires_at: Mapped[datetime | None] = mapped_column(UTC)
    # Who made that link: disabling or demoting them ends it (an admin's invite dies with their rights).
    password_link_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)

    def get_id(self):
        return f"{self.id}:{self.session_token}"

    @property
    def is_admin(self):
        return self.role == ROLE_ADMIN

    @property
    def status(self):
        if self.disabled_at:
            return "disabled"
        if self.password_hash:
            return "active"
        return "reset" if self.last_login_at else "invited"  # waiting for the set-password link

    def end_sessions(self):
        self.session_token = secrets.token_urlsafe(32)

    def set_password(self, password):
        self.password_hash = generate_password_hash(password)
        self.end_sessions()

    def check_password(self, password):
        """False for an invited user (no password yet) and a disabled one (after the same hashing work)."""
        if not self.password_hash:
            return False
        return check_password_hash(self.password_hash, password) and not self.disabled_at


class IntakeToken(db.Model):
    __tablename__ = "intake_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTC, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTC)
    revoked_at: Mapped[datetime | None] = mapped_column(UTC)


class Campaign(db.Model):
    """A CRM campaign, by the CRM's id: upserted by intake, or added by an admin."""
    __tablename__ = "campaigns"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(255), default="")


class Product(db.Model):
    __tablename__ = "products"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(255), default="")


class Profile(db.Model):
    __tablename__ = "profiles"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    export_type: Mapped[str] = mapped_column(String(60))
    # The type's own settings; secret ones are stored encrypted ("enc:...").
    settings: Mapped[dict] = mapped_column(JSON, default=dict)
    delay_minutes: Mapped[int] = mapped_column(Integer, default=0)
    pci_documented: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    skip_converted_partials: Mapped[bool] = mapped_column(Boolean, default=True)
    # The send window (windows.py): days ("mon,tue,..."), From and To in minutes after midnight
    # (To at or before From: overnight), in window_time_zone; no From/To: any time.
    window_days: Mapped[str] = mapped_column(String(30), default="", server_default="")
    window_start: Mapped[int | None] = mapped_column(Integer)
    window_end: Mapped[int | None] = mapped_column(Integer)
    # The window's zone, and the daily cap's: its days are this zone's days.
    window_time_zone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    daily_cap: Mapped[int | None] = mapped_column(Integer)  # None: no cap
    over_cap: Mapped[str] = mapped_column(String(10), default="wait", server_default="wait")  # or "skip"
    # "Reversal of": this profile sends the reversal of that profile's export of the same order
    # when one of reversal_types ("refund,chargeback") arrives, with no route of its own needed.
    reversal_of_id: Mapped[int | None] = mapped_column(ForeignKey("profiles.id", ondelete="SET NULL"))
    reversal_types: Mapped[str] = mapped_column(String(100), default="", server_default="")
    # Duplicate suppression: never the same customer (by dedupe_by: email, phone or a catalog
    # field) to this profile twice within dedupe_days; None: no suppression.
    dedupe_days: Mapped[int | None] = mapped_column(Integer)
    dedupe_by: Mapped[str] = mapped_column(String(60), default="email", server_default="email")
    created_at: Mapped[datetime] = mapped_column(UTC, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTC, default=utcnow, onupdate=utcnow)

    mappings: Mapped[list["FieldMapping"]] = relationship(
        back_populates="profile", order_by="FieldMapping.position", cascade="all, delete-orphan")
    routes: Mapped[list["Route"]] = relationship(
        back_populates="profile", order_by="Route.id", cascade="all, delete-orphan")
    reversal_of: Mapped["Profile | None"] = relationship(remote_side=[id])


class FieldMapping(db.Model):
    __tablename__ = "field_mappings"
    id: Mapped[int] = mapped_column(primary_key=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    export_name: Mapped[str] = mapped_column(String(120))
    field: Mapped[str] = mapped_column(String(60))  # a catalog key, or "static"
    static_value: Mapped[str] = mapped_column(Text, default="")
    format: Mapped[str] = mapped_column(String(20), default="")
    format_arg: Mapped[str] = mapped_column(String(60), default="")
    default_value: Mapped[str] = mapped_column(String(255), default="")

    profile: Mapped[Profile] = relationship(back_populates="mappings")


class Route(db.Model):
    """Profile Routing: which customer types, campaigns and products a profile exports.

    Campaigns and products are lists of CRM ids; an empty list means all of them.
    """
    __tablename__ = "routes"
    id: Mapped[int] = mapped_column(primary_key=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"), index=True)
    customer_types: Mapped[list] = mapped_column(JSON, default=list)
    campaigns: Mapped[list] = mapped_column(JSON, default=list)
    products: Mapped[list] = mapped_column(JSON, default=list)

    profile: Mapped[Profile] = relationship(back_populates="routes")


class Customer(db.Model):
    __tablename__ = "customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    crm_customer_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    email: Mapped[str] = mapped_column(String(255), default="", index=True)
    first_name: Mapped[str] = mapped_column(String(120), default="")
    last_name: Mapped[str] = mapped_column(String(120), default="")
    phone: Mapped[str] = mapped_column(String(40), default="")
    created_at: Mapped[datetime] = mapped_column(UTC, default=utcnow)
    # "Forget this customer" (a data-subject request): when, and by whom (an admin's email).
    forgotten_at: Mapped[datetime | None] = mapped_column(UTC)
    forgotten_by: Mapped[str] = mapped_column(String(255), default="", server_default="")

    @property
    def name(self):
        return f"{self.first_name} {self.last_name}".strip()


class ForgottenCustomer(db.Model):
    """A forgotten customer's CRM id, and nothing else of them: a later event with that id is stored
    without personal data and never exported (intake), kept on the forgotten customer's page."""
    __tablename__ = "forgotten_customers"
    crm_customer_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    forgotten_at: Mapped[datetime] = mapped_column(UTC)


# What a purged event's order keeps (retention, and a forgotten customer's later events): what the
# screens show, and nothing that names a person. (Order and campaign ids are the CRM's keys, not
# personal data; the customer id is dropped.)
KEPT_ORDER_KEYS = ("orderId", "campaignId", "campaignName", "orderDate", "isTestCard")


def kept_order(order):
    return {key: value for key, value in (order or {}).items() if key in KEPT_ORDER_KEYS}


class Event(db.Model):
    """An order event as the CRM sent it, CVV dropped and the card number encrypted."""
    __tablename__ = "events"
    # The CRM's event id is unique per intake token: two CRMs may use the same ids. event_key first,
    # so the intake's look-up of a body's ids uses this index.
    __table_args__ = (UniqueConstraint("event_key", "intake_token_id", name="uq_event_key_token"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    event_key: Mapped[str] = mapped_column(String(120))  # the CRM's event id
    # The token it came with; None for events stored before ids were scoped per token (a
    # duplicate for every token) and for events made otherwise.
    intake_token_id: Mapped[int | None] = mapped_column(ForeignKey("intake_tokens.id"))
    type: Mapped[str] = mapped_column(String(40), index=True)  # the Deliveries list's Customer Type filter
    occurred_at: Mapped[datetime] = mapped_column(UTC, index=True)
    received_at: Mapped[datetime] = mapped_column(UTC, default=utcnow)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    order_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    campaign_id: Mapped[int | None] = mapped_column(BigInteger)
    order: Mapped[dict] = mapped_column(JSON, default=dict)  # no cardNumber, no CVV
    card_number: Mapped[str | None] = mapped_column(Text)  # encrypted
    is_test: Mapped[bool] = mapped_column(Boolean, default=False)
    # Its personal data erased (retention.py): the order cut to what the screens need, no card.
    purged_at: Mapped[datetime | None] = mapped_column(UTC)

    customer: Mapped[Customer | None] = relationship()


WAITING_SQL = "status IN ('scheduled', 'retrying')"  # Delivery.WAITING as SQL, for the partial index
# Not delivered, rejected or cancelled: the retention purge keeps an event while one of its
# deliveries is unfinished, and asks so per event through ix_deliveries_unfinished_event.
UNFINISHED_SQL = "status NOT IN ('delivered', 'rejected', 'cancelled')"
HAS_DEDUPE_KEY_SQL = "dedupe_key IS NOT NULL"


class Delivery(db.Model):
    """One export to send: an event for a per-event type, a day's file for a route of a file type."""
    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("profile_id", "event_id", name="uq_delivery_profile_event"),
        UniqueConstraint("route_id", "file_date", name="uq_delivery_route_day"),
        # Only deliveries with a dedupe key (set when a send with duplicate suppression starts):
        # the intake's new rows have none, and suppression.earlier asks for a key by equality.
        Index("ix_deliveries_profile_dedupe", "profile_id", "dedupe_key", sqlite_where=text(HAS_DEDUPE_KEY_SQL),
              postgresql_where=text(HAS_DEDUPE_KEY_SQL)),
        # The claim's index: only waiting rows, in the order a claim takes them. Small whatever
        # the history, and chosen whatever the statistics say (the claim names the same literal
        # predicate, never bound values, so a generic plan can use it too).
        Index("ix_deliveries_waiting", "due_at", "id", sqlite_where=text(WAITING_SQL),
              postgresql_where=text(WAITING_SQL)),
        # A sale's conversion check goes from the order's partial events to their deliveries
        # (the unique constraint leads with profile_id, so it cannot).
        Index("ix_deliveries_event", "event_id"),
        # The purge's "no delivery of this event unfinished" (issue 22 point 5): through
        # ix_deliveries_event the anti-join read all 1.25 M deliveries per batch of 1,000 events.
        Index("ix_deliveries_unfinished_event", "event_id", sqlite_where=text(UNFINISHED_SQL),
              postgresql_where=text(UNFINISHED_SQL)),
        # The Deliveries list's keyset pages under a filter: newest first within a status, a
        # profile or a host (keyset.py), however rare the rows that match.
        Index("ix_deliveries_status_id", "status", "id"),
        Index("ix_deliveries_profile_id_id", "profile_id", "id"),
        Index("ix_deliveries_target_id", "target", "id"),
    )
    # rejected: the partner refused it for good (a response rule), so it is never retried.
    STATUSES = ("scheduled", "sending", "retrying", "delivered", "rejected", "cancelled")
    WAITING = ("scheduled", "retrying")
    FINISHED = ("delivered", "rejected", "cancelled")

    id: Mapped[int] = mapped_column(primary_key=True)
    # No index of its own: ix_deliveries_profile_id_id and the unique constraint lead with it.
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"))
    event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id"))
    route_id: Mapped[int | None] = mapped_column(ForeignKey("routes.id", ondelete="SET NULL"))
    file_date: Mapped[datetime | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20), default="scheduled")
    due_at: Mapped[datetime] = mapped_column(UTC)
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    claimed_at: Mapped[datetime | None] = mapped_column(UTC)
    # The worker holding the claim (its RQ name): a dead worker's claims are released at once.
    claimed_by: Mapped[str] = mapped_column(String(120), default="", server_default="")
    delivered_at: Mapped[datetime | None] = mapped_column(UTC)
    cancel_reason: Mapped[str] = mapped_column(String(255), default="")
    last_error: Mapped[str] = mapped_column(Text, default="")
    target: Mapped[str] = mapped_column(String(255), default="")  # host, for the dashboard
    details: Mapped[dict] = mapped_column(JSON, default=dict)  # file name, rows, bytes, checksum
    # Why a claim put it back to wait (its send window closed, its profile's daily cap reached).
    waiting_reason: Mapped[str] = mapped_column(String(255), default="", server_default="")
    # What the partner's answer gave back (its lead or conversion id: a capture rule).
    captured_id: Mapped[str] = mapped_column(String(255), default="", server_default="")
    # Duplicate suppression: a digest of the customer's email, phone or chosen field, set when sent.
    dedupe_key: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTC, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTC, default=utcnow, onupdate=utcnow)

    profile: Mapped[Profile] = relationship()
    event: Mapped[Event | None] = relationship()
    route: Mapped[Route | None] = relationship()
    attempts: Mapped[list["Attempt"]] = relationship(
        back_populates="delivery", order_by="Attempt.number", cascade="all, delete-orphan")


class Attempt(db.Model):
    """One try at a delivery: exactly what was sent and what came back, sensitive values masked."""
    __tablename__ = "attempts"
    # The dashboard's attempts per hour reads the last day only.
    __table_args__ = (Index("ix_attempts_started_at", "started_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"), index=True)
    profile_id: Mapped[int | None] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"))
    is_test: Mapped[bool] = mapped_column(Boolean, default=False)
    number: Mapped[int] = mapped_column(Integer, default=1)
    started_at: Mapped[datetime] = mapped_column(UTC, default=utcnow)
    ok: Mapped[bool] = mapped_column(Boolean, default=False)
    method: Mapped[str] = mapped_column(String(20), default="")
    target: Mapped[str] = mapped_column(Text, default="")
    request_headers: Mapped[dict] = mapped_column(JSON, default=dict)
    request_body: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[int | None] = mapped_column(Integer)
    response_headers: Mapped[dict] = mapped_column(JSON, default=dict)
    response_body: Mapped[str] = mapped_column(Text, default="")
    elapsed_ms: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str] = mapped_column(Text, default="")
    # Its bodies, headers and the target's query string erased (retention.py).
    purged_at: Mapped[datetime | None] = mapped_column(UTC)

    delivery: Mapped[Delivery | None] = relationship(back_populates="attempts")


# Upper bounds of the send latency buckets, in milliseconds (attempts record elapsed_ms).
LATENCY_BUCKETS_MS = (25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)


class AttemptHour(db.Model):
    """The attempts (test sends left out) of one closed hour, by export type and outcome: what
    /metrics totals, so that a scrape reads a row an hour instead of every attempt (ops/metrics.py).
    Kept when the attempts are purged: the counters never go back."""
    __tablename__ = "attempt_hours"
    hour: Mapped[datetime] = mapped_column(UTC, primary_key=True)
    export_type: Mapped[str] = mapped_column(String(40), primary_key=True)
    ok: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    attempts: Mapped[int] = mapped_column(BigInteger)
    timed: Mapped[int] = mapped_column(BigInteger)  # those with an elapsed time
    sum_ms: Mapped[int] = mapped_column(BigInteger)
    # le_25 ... le_30000: how many took at most that many milliseconds
    locals().update({f"le_{bound}": mapped_column(BigInteger, nullable=False) for bound in LATENCY_BUCKETS_MS})


class HistoryEntry(db.Model):
    """A message in a customer's history, linking to the delivery it speaks of."""
    __tablename__ = "history_entries"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id"))
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("deliveries.id", ondelete="SET NULL"))
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTC, default=utcnow)

    customer: Mapped[Customer] = relationship()
    event: Mapped[Event | None] = relationship()


class FileRow(db.Model):
    """An event recorded as a row of a route's daily file.

    The day is not stored: the file takes the rows whose event occurred on that day in
    the profile's time zone, so a changed time zone still makes whole days.
    """
    __tablename__ = "file_rows"
    # The purge asks whether an event is in a file still to send: by event (the unique key leads with the route).
    __table_args__ = (UniqueConstraint("route_id", "event_id", name="uq_file_row"),
                      Index("ix_file_rows_event", "event_id"))
    id: Mapped[int] = mapped_column(primary_key=True)
    route_id: Mapped[int] = mapped_column(ForeignKey("routes.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"))
    occurred_at: Mapped[datetime] = mapped_column(UTC)  # the event's, for a day's range scan

    event: Mapped[Event] = relationship()


Index("ix_file_rows_route_time", FileRow.route_id, FileRow.occurred_at, FileRow.id)


class Host(db.Model):
    """A target host's circuit: closed (down_since is None) or open since a run of failures.

    While a host is down its deliveries wait; one probe goes out at probe_at, then each backoff
    step; a probe that succeeds closes the circuit and the host's backlog flows again."""
    __tablename__ = "hosts"
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # in a row
    down_since: Mapped[datetime | None] = mapped_column(UTC)
    probe_at: Mapped[datetime | None] = mapped_column(UTC)
    probes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # failed probes in a row
    last_error: Mapped[str] = mapped_column(Text, default="", server_default="")
    updated_at: Mapped[datetime | None] = mapped_column(UTC, default=utcnow, onupdate=utcnow)
    # The partner's limits, shared by every worker (delivery/limits.py): sends at once, and
    # rate_limit sends per rate_per seconds (1 or 60). None: no limit of that kind.
    max_in_flight: Mapped[int | None] = mapped_column(Integer)
    rate_limit: Mapped[int | None] = mapped_column(Integer)
    rate_per: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class Worker(db.Model):
    """A worker process that sends: its heartbeat. A claim names its worker (Delivery.claimed_by);
    when the heartbeat stops, the claims are released at once instead of after the claim timeout."""
    __tablename__ = "workers"
    name: Mapped[str] = mapped_column(String(120), primary_key=True)  # "hostname:pid"
    started_at: Mapped[datetime] = mapped_column(UTC, default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(UTC, default=utcnow)
    # Since when this worker limits hosts on its own, Redis not answering (None: shared limits).
    limits_own_since: Mapped[datetime | None] = mapped_column(UTC)


class SendCount(db.Model):
    """How many sends a profile with a daily cap was granted on a day of its time zone: the claim
    takes its grants with one conditional UPDATE, so workers together never pass the cap."""
    __tablename__ = "send_counts"
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[datetime] = mapped_column(Date, primary_key=True)
    sent: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_grant: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # the last UPDATE's grant


class AuditEntry(db.Model):
    """A change someone made (issue 12): who, when, what, before and after, secrets masked.

    Kept by id and name, not by foreign key: the entry outlives what it speaks of (a deleted
    profile's history stays readable)."""
    __tablename__ = "audit_entries"
    __table_args__ = (Index("ix_audit_target", "target_type", "target_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTC, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(255))  # an admin's email, "cli:<user>" or "system"
    via: Mapped[str] = mapped_column(String(20), default="")  # web, upload, cli, cron
    action: Mapped[str] = mapped_column(String(60), index=True)  # e.g. "profile.update"
    target_type: Mapped[str] = mapped_column(String(40))  # profile, token, admin, campaign, ...
    target_id: Mapped[int | None] = mapped_column(BigInteger)
    target_name: Mapped[str] = mapped_column(String(255), default="")
    profile_id: Mapped[int | None] = mapped_column(Integer, index=True)  # for "History of this profile"
    summary: Mapped[str] = mapped_column(Text, default="")
    before: Mapped[dict | None] = mapped_column(JSON)
    after: Mapped[dict | None] = mapped_column(JSON)


class AlertSettings(db.Model):
    """The Alerts page's settings (one row): how to reach the admins who opt in, and when to."""
    __tablename__ = "alert_settings"
    id: Mapped[int] = mapped_column(primary_key=True)
    smtp_host: Mapped[str] = mapped_column(String(255), default="", server_default="")
    smtp_port: Mapped[int] = mapped_column(Integer, default=587, server_default="587")
    smtp_security: Mapped[str] = mapped_column(String(10), default="starttls", server_default="starttls")
    smtp_username: Mapped[str] = mapped_column(String(255), default="", server_default="")
    smtp_password: Mapped[str] = mapped_column(Text, default="", server_default="")  # encrypted ("enc:...")
    mail_from: Mapped[str] = mapped_column(String(255), default="", server_default="")
    webhook_url: Mapped[str] = mapped_column(Text, default="", server_default="")  # Slack-compatible
    host_down_minutes: Mapped[int] = mapped_column(Integer, default=15, server_default="15")
    no_worker_minutes: Mapped[int] = mapped_column(Integer, default=5, server_default="5")
    updated_at: Mapped[datetime] = mapped_column(UTC, default=utcnow, onupdate=utcnow)


class AlertRecipient(db.Model):
    """An admin who opted in to alert emails."""
    __tablename__ = "alert_recipients"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    since: Mapped[datetime] = mapped_column(UTC, default=utcnow)

    user: Mapped[User] = relationship()


class AlertIncident(db.Model):
    """One incident of an alert's condition (a host down, a daily file failed, no worker): told
    once when it has held its grace time, and once when it ends. open_key is the condition's key
    while the incident is open and NULL after: unique, so two crons open it once."""
    __tablename__ = "alert_incidents"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(255), index=True)  # e.g. "host_down:api.partner.com"
    open_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(Text, default="")
    detail: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime] = mapped_column(UTC, default=utcnow)  # when the condition began
    ended_at: Mapped[datetime | None] = mapped_column(UTC)
    told_at: Mapped[datetime | None] = mapped_column(UTC)  # the "started" message
    told_end_at: Mapped[datetime | None] = mapped_column(UTC)  # the "ended" message
    last_error: Mapped[str] = mapped_column(Text, default="", server_default="")  # a message that failed
