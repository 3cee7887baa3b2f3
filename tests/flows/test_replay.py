"""Send past events to a profile: events stored before the profile (or its route) existed, replayed
through the same deliveries, delay, drain and history as live events, never twice."""
import time
from datetime import datetime, timedelta, timezone

import pytest

from exporter.flows import replay
from exporter.extensions import db
from exporter.models import AuditEntry, Customer, Delivery, Event, FileRow, HistoryEntry, Profile

from ..factories import event, make_profile
from ..plugins.conftest import ftp_server  # noqa: F401 - a fixture
from ..files.test_daily_files import DAY, all_delivered, at, file_name, ftp_profile

TODAY = datetime.now(timezone.utc).date()
WEEK_AGO = TODAY - timedelta(days=7)


def days_ago(n, hour=10):
    return datetime.combine(TODAY - timedelta(days=n), datetime.min.time(), tzinfo=timezone.utc).replace(
        hour=hour).isoformat()


def past_partials(post_events, n, prefix="p", **order):
    """n partials of n customers, three days ago, stored while no profile wanted them."""
    body = {"events": [event(f"{prefix}{i}", customerId=7000 + i, orderId=8000 + i, occurred_at=days_ago(3), **order)
                       for i in range(n)]}
    assert post_events(body).json["deliveries"] == 0
    return body


def deliveries(profile):
    db.session.expire_all()
    return db.session.scalars(db.select(Delivery).where(Delivery.profile_id == profile.id)
                              .order_by(Delivery.id)).all()


def history_of(crm_customer_id):
    return [h.message for h in db.session.scalars(db.select(HistoryEntry).join(Customer).where(
        Customer.crm_customer_id == crm_customer_id).order_by(HistoryEntry.id))]


def test_a_replay_run_twice_sends_nothing_new(app, post_events):
    past_partials(post_events, 5)
    profile = make_profile(url="http://127.0.0.1:9/p")
    first = replay.replay(profile, WEEK_AGO, TODAY)
    assert (first.matched, first.created) == (5, 5)
    again = replay.replay(profile, WEEK_AGO, TODAY)
    assert (again.matched, again.already, again.created, again.to_send) == (5, 5, 0, 0)
    assert len(deliveries(profile)) == 5


def test_the_count_shown_before_sending_is_what_gets_created(app, post_events):
    past_partials(post_events, 4)
    post_events(event("sale", type="new_sale", customerId=7000, orderId=9999, occurred_at=days_ago(2)))
    profile = make_profile(url="http://127.0.0.1:9/p")
    counted = replay.matching_events(profile, WEEK_AGO, TODAY)
    assert (counted.matched, counted.converted, counted.to_send) == (4, 1, 3)
    assert deliveries(profile) == []  # counting makes nothing
    made = replay.replay(profile, WEEK_AGO, TODAY)
    assert made.created == counted.to_send == len(deliveries(profile))


def test_events_already_exported_or_cancelled_are_never_replayed(app, post_events):
    profile = make_profile(url="http://127.0.0.1:9/p", delay_minutes=500_000)
    post_events({"events": [event(f"live{i}", customerId=100 + i, orderId=200 + i, occurred_at=days_ago(1))
                            for i in range(3)]})
    live = deliveries(profile)
    live[0].status, live[0].cancel_reason = "cancelled", "by hand"
    live[1].status = "delivered"
    db.session.commit()
    result = replay.replay(profile, WEEK_AGO, TODAY)
    assert (result.matched, result.already, result.created) == (3, 3, 0)
    assert [d.status for d in deliveries(profile)] == ["cancelled", "delivered", "scheduled"]


def test_test_card_orders_are_never_replayed(app, post_events):
    past_partials(post_events, 2, prefix="test", isTestCard=True)
    past_partials(post_events, 1, prefix="real")
    profile = make_profile(url="http://127.0.0.1:9/p")
    result = replay.replay(profile, WEEK_AGO, TODAY)
    assert (result.test_orders, result.matched, result.created) == (2, 1, 1)
    assert [d.event.event_key for d in deliveries(profile)] == ["real0"]


@pytest.mark.parametrize("skip,created", [(True, 1), (False, 2)])
def test_converted_partials_are_skipped_when_the_profile_says_so(app, post_events, skip, created):
    past_partials(post_events, 2)  # customers 7000 and 7001
    post_events(event("upsell", type="upsell", customerId=7001, orderId=1, occurred_at=days_ago(1)))
    profile = make_profile(url="http://127.0.0.1:9/p", skip_converted_partials=skip)
    result = replay.replay(profile, WEEK_AGO, TODAY)
    assert (result.converted, result.created) == (int(skip), created)
    assert ("p1" in [d.event.event_key for d in deliveries(profile)]) is not skip


def test_only_events_in_the_range_and_matching_the_routes_and_types_are_replayed(app, post_events):
    post_events({"events": [
        event("in", customerId=1, occurred_at=days_ago(3)),
        event("first-day", customerId=2, occurred_at=days_ago(7, hour=0)),
        event("too-old", customerId=3, occurred_at=days_ago(8, hour=23)),
        event("other-campaign", customerId=4, campaignId=1, occurred_at=days_ago(3)),
        event("a-decline", type="decline", customerId=5, occurred_at=days_ago(3)),
        event("a-refund", type="refund", customerId=6, occurred_at=days_ago(3)),
        event("no-product", type="decline", customerId=7, occurred_at=days_ago(3), products=[]),
    ]})
    profile = make_profile(url="http://127.0.0.1:9/p", routes=[
        {"customer_types": ["partial"], "campaigns": [259], "products": []},
        {"customer_types": ["decline"], "campaigns": [], "products": [33]}])
    assert replay.matching_events(profile, WEEK_AGO, TODAY).to_send == 3
    result = replay.replay(profile, WEEK_AGO, TODAY, ["partial"])
    assert sorted(d.event.event_key for d in deliveries(profile)) == ["first-day", "in"]
    assert result.customer_types == ["partial"]
    replay.replay(profile, WEEK_AGO, TODAY)
    assert sorted(d.event.event_key for d in deliveries(profile)) == ["a-decline", "first-day", "in"]


def test_replayed_deliveries_are_sent_by_a_worker_after_the_delay_with_history(app, post_events, receiver,
                                                                               run_jobs):
    past_partials(post_events, 3)
    profile = make_profile(url=receiver.url + "/p", delay_minutes=2)  # a minute is a second in tests
    replayed_at = time.time()
    result = replay.replay(profile, WEEK_AGO, TODAY)
    assert result.created == 3
    run_jobs(until=lambda: all(d.status == "delivered" for d in deliveries(profile)), timeout=20)
    assert len(receiver.requests) == 3
    assert min(r.received_at for r in receiver.requests) >= replayed_at + 2 - 0.05
    assert {r.headers["Idempotency-Key"] for r in receiver.requests} == {str(d.id) for d in deliveries(profile)}
    messages = history_of(7000)
    assert messages[0].startswith("Export profile 'Call center partials': past event replayed (Send past events)")
    assert messages[1].startswith("Export profile 'Call center partials' fired:")


def test_every_replay_is_audited(app, post_events):
    past_partials(post_events, 2)
    profile = make_profile(url="http://127.0.0.1:9/p")
    replay.matching_events(profile, WEEK_AGO, TODAY)
    assert db.session.scalars(db.select(AuditEntry).where(AuditEntry.action == "profile.replay")).all() == []
    replay.replay(profile, WEEK_AGO, TODAY)
    replay.replay(profile, WEEK_AGO, TODAY)
    entries = db.session.scalars(db.select(AuditEntry).where(AuditEntry.action == "profile.replay")
                                 .order_by(AuditEntry.id)).all()
    assert [e.after["created"] for e in entries] == [2, 0]
    first = entries[0]
    assert (first.target_type, first.target_id, first.profile_id) == ("profile", profile.id, profile.id)
    assert first.after["since"] == WEEK_AGO.isoformat() and first.after["customer_types"] == ["partial"]
    assert "2 deliveries created" in first.summary


def test_a_daily_file_replay_makes_rows_of_each_days_file(app, post_events, ftp_server, run_jobs):
    post_events({"events": [event("old", customerId=1, occurred_at=at(DAY - timedelta(days=1), 9)),
                            event("day", customerId=2, firstName="Replayed", occurred_at=at(DAY, 9))]})
    profile = ftp_profile(ftp_server, created=DAY - timedelta(days=1))
    route = profile.routes[0]
    yesterday_file = _sent_file(profile, route, DAY - timedelta(days=1))  # a day whose file is already sent
    result = replay.replay(profile, DAY - timedelta(days=1), DAY)
    assert (result.daily_file, result.created, result.late_days) == (True, 2, [DAY - timedelta(days=1)])
    assert "re-run those days to send them" in result.summary()
    assert db.session.scalar(db.select(db.func.count()).select_from(FileRow)) == 2
    assert yesterday_file.details["late_rows"] == 1
    assert replay.replay(profile, DAY - timedelta(days=1), DAY).created == 0  # never twice
    # The day whose file is still to be made carries its row on schedule.
    from exporter.files import daily_files

    daily_files.tick()
    run_jobs(until=all_delivered)
    assert b"Replayed" in ftp_server.files()[file_name(profile, route)]
    assert history_of(2)[0] == f"Export profile 'Daily partials': past event replayed into the daily file of {DAY}"


def _sent_file(profile, route, day):
    delivery = Delivery(profile=profile, route_id=route.id, file_date=day, status="delivered",
                        due_at=datetime(2000, 1, 1), details={})
    db.session.add(delivery)
    db.session.commit()
    return delivery


@pytest.mark.parametrize("since,until,types,field,message", [
    ("2026-02-01", "2026-01-01", (), "until", "To date 2026-01-01 is before From date 2026-02-01"),
    ("01/02/2026", "2026-01-01", (), "since", "'01/02/2026' is not a date as YYYY-MM-DD"),
    ("2026-01-01", "", (), "until", "'' is not a date as YYYY-MM-DD"),
    ("2024-01-01", "2026-01-01", (), "until", f"at most {replay.MAX_DAYS} days at a time"),
    ("2026-01-01", "2026-01-31", ("partials",), "customer_types", "'partials' is not a customer type"),
    ("2026-01-01", "2026-01-31", ("refund",), "customer_types", "Refund is not among this profile's routes'"),
])
def test_bad_input_is_refused_naming_the_field(app, since, until, types, field, message):
    profile = make_profile(url="http://127.0.0.1:9/p")
    with pytest.raises(replay.ReplayError) as error:
        replay.replay(profile, since, until, types)
    assert error.value.field == field and message in str(error.value)
    assert db.session.scalar(db.select(db.func.count()).select_from(AuditEntry)
                             .where(AuditEntry.action == "profile.replay")) == 0


def test_an_inactive_profile_or_one_without_routes_is_refused(app):
    profile = make_profile(url="http://127.0.0.1:9/p", active=False)
    with pytest.raises(replay.ReplayError, match="is not Active"):
        replay.replay(profile, WEEK_AGO, TODAY)
    bare = make_profile(name="bare", url="http://127.0.0.1:9/p", routes=[])
    with pytest.raises(replay.ReplayError, match="has no routes"):
        replay.replay(bare, WEEK_AGO, TODAY)
    assert db.session.get(Profile, bare.id) is not None


def test_a_large_range_is_read_and_made_in_chunks(app, post_events, monkeypatch):
    monkeypatch.setattr(replay, "CHUNK", 7)  # many chunks from few events: the paging is what is tested
    for start in range(0, 50, 25):
        past_partials(post_events, 25, prefix=f"c{start}-", campaignId=259)
    profile = make_profile(url="http://127.0.0.1:9/p")
    assert replay.matching_events(profile, WEEK_AGO, TODAY).to_send == 50
    assert replay.replay(profile, WEEK_AGO, TODAY).created == 50
    assert len({d.event_id for d in deliveries(profile)}) == 50


# --- purged events, extreme dates, per-chunk commits, concurrent daily-file replays -------------

def test_purged_events_are_never_replayed_and_counted_apart(app, post_events):
    """A forgotten customer's event and one purged by retention: left out, shown as purged."""
    from exporter.flows import retention

    past_partials(post_events, 3)  # customers 7000..7002, three days ago
    old = event("old", customerId=7100, orderId=8100, occurred_at=days_ago(100))
    assert post_events(old).json["deliveries"] == 0
    assert retention.purge(replay.utcnow(), 90).events == 1  # "old" is purged by retention
    retention.forget(db.session.scalar(db.select(Customer).where(Customer.crm_customer_id == 7001)), by="admin")
    profile = make_profile(url="http://127.0.0.1:9/p")
    since = TODAY - timedelta(days=120)
    counted = replay.matching_events(profile, since, TODAY)
    assert (counted.matched, counted.purged, counted.to_send) == (4, 2, 2)
    assert "2 purged: their data is gone, not sent" in counted.summary()
    result = replay.replay(profile, since, TODAY)
    assert (result.purged, result.created) == (2, 2)
    assert sorted(d.event.event_key for d in deliveries(profile)) == ["p0", "p2"]
    assert replay.replay(profile, since, TODAY).created == 0


def test_purged_events_get_no_row_of_a_daily_file(app, post_events, ftp_server):
    from exporter.flows import retention

    post_events(event("gone", customerId=1, occurred_at=at(DAY, 9)))
    retention.forget(db.session.scalar(db.select(Customer)), by="admin")
    profile = ftp_profile(ftp_server)
    result = replay.replay(profile, DAY, DAY)
    assert (result.purged, result.created) == (1, 0)
    assert db.session.scalar(db.select(db.func.count()).select_from(FileRow)) == 0


@pytest.mark.parametrize("since,until,field", [
    ("9999-12-31", "9999-12-31", "since"),
    ("0001-01-01", "0001-01-01", "since"),
    ("2026-01-01", "2101-01-01", "until"),
    ("1969-12-31", "1970-01-02", "since"),
])
@pytest.mark.parametrize("time_zone", ["UTC", "Pacific/Kiritimati", "Etc/GMT+12"])
def test_dates_beyond_the_years_1970_to_2100_are_refused_naming_the_field(app, ftp_server, since, until, field,
                                                                          time_zone):
    """No OverflowError at the calendar's ends, for a daily file east or west of UTC too."""
    profile = ftp_profile(ftp_server, time_zone=time_zone)
    for dry_run in (True, False):
        with pytest.raises(replay.ReplayError, match="is not in the years 1970 to 2100") as error:
            replay.replay(profile, since, until, dry_run=dry_run)
        assert error.value.field == field


def test_each_chunk_is_committed_and_a_stopped_replay_run_again_makes_the_rest(app, post_events, monkeypatch):
    """Committed per chunk (the intake writes between two), so a replay that fails half-way keeps what
    it made, without an audit entry; run again, it makes the rest and counts the first as exported."""
    import threading

    monkeypatch.setattr(replay, "CHUNK", 4)
    past_partials(post_events, 10)
    profile = make_profile(url="http://127.0.0.1:9/p")
    make, seen_elsewhere = replay._make, []

    def failing_third(profile_, fresh, result):
        if len(seen_elsewhere) == 2:
            raise RuntimeError("the process stopped")

        def count():  # another connection, as another process would look
            with app.app_context():
                seen_elsewhere.append(db.session.scalar(db.select(db.func.count()).select_from(Delivery)))
        thread = threading.Thread(target=count)
        thread.start()
        thread.join(10)
        return make(profile_, fresh, result)

    monkeypatch.setattr(replay, "_make", failing_third)
    with pytest.raises(RuntimeError):
        replay.replay(profile, WEEK_AGO, TODAY)
    assert seen_elsewhere == [0, 4]  # the first chunk was committed before the second was made
    assert len(deliveries(profile)) == 8
    assert db.session.scalar(db.select(db.func.count()).select_from(AuditEntry)
                             .where(AuditEntry.action == "profile.replay")) == 0
    monkeypatch.setattr(replay, "_make", make)
    again = replay.replay(profile, WEEK_AGO, TODAY)
    assert (again.already, again.created) == (8, 2) and len(deliveries(profile)) == 10


def test_a_daily_file_row_another_replay_made_meanwhile_is_left_alone(app, post_events, ftp_server, monkeypatch):
    """Two replays of one daily-file profile: rows the other made between this one's read and its
    insert are skipped (the unique route and event), not an IntegrityError."""
    post_events({"events": [event(f"e{i}", customerId=i + 1, orderId=i + 1, occurred_at=at(DAY, 9))
                            for i in range(3)]})
    profile = ftp_profile(ftp_server)
    make = replay._make

    def other_replay_first(profile_, fresh, result):
        row, matched = fresh[0]  # the other replay stored this event's row and committed
        db.session.add(FileRow(route_id=matched[0].route_id, event_id=row.id, occurred_at=row.occurred_at))
        db.session.flush()
        return make(profile_, fresh, result)

    monkeypatch.setattr(replay, "_make", other_replay_first)
    result = replay.replay(profile, DAY, DAY)
    assert result.created == 2 and db.session.scalar(db.select(db.func.count()).select_from(FileRow)) == 3
    monkeypatch.setattr(replay, "_make", make)
    again = replay.replay(profile, DAY, DAY)
    assert (again.already, again.created) == (3, 0)


# --- one event (Send this event to a profile) ---------------------------------------------------

def test_one_event_goes_to_a_profile_once_and_is_sent(app, post_events, receiver, run_jobs):
    post_events(event("one", occurred_at=days_ago(2)))  # no profile yet: nothing made
    stored = db.session.scalars(db.select(Event)).one()
    profile = make_profile(url=receiver.url + "/p")
    made, words = replay.replay_event(profile, stored.id)
    assert made and words == "Event one goes to 'Call center partials': a delivery, sent after its Export Delay."
    made, words = replay.replay_event(profile, stored.id)  # never twice
    assert not made and words.endswith("it was already sent or queued for this profile: never twice.")
    assert len(deliveries(profile)) == 1
    run_jobs(until=lambda: deliveries(profile)[0].status == "delivered")
    assert len(receiver.requests) == 1
    entry = db.session.scalars(db.select(AuditEntry).where(AuditEntry.action == "profile.replay_event")).one()
    assert entry.after["event"] == "one"


@pytest.mark.parametrize("order, fields, why", [
    ({"isTestCard": True}, {}, "it is a test-card order: never sent"),
    ({}, {"active": False}, "is not Active"),
    ({"campaignId": 999}, {}, "do not take this event (Partial, campaign 999)"),
])
def test_one_event_is_refused_in_words(app, post_events, order, fields, why):
    post_events(event("one", occurred_at=days_ago(2), **order))
    stored = db.session.scalars(db.select(Event)).one()
    profile = make_profile(**fields)
    try:
        made, words = replay.replay_event(profile, stored.id)
    except replay.ReplayError as exc:
        made, words = False, str(exc)
    assert not made and why in words
    assert deliveries(profile) == []
