"""The send window's arithmetic: when it is open, when it opens next, a cap's day, in any zone."""
import math
import time
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from exporter import windows
from exporter.extensions import db
from exporter.models import AuditEntry, Delivery, HistoryEntry, utcnow

from .factories import event, make_profile, occurred
from .processes import process_env, start, stop, wait_until
from .receiver import Receiver, Reply

NY = ZoneInfo("America/New_York")


def window(days="mon,tue,wed,thu,fri", start="08:00", end="20:00", tz="America/New_York", cap=None):
    return windows.of(profile(days, start, end, tz, cap))


def profile(days="mon,tue,wed,thu,fri", start="08:00", end="20:00", tz="America/New_York", cap=None):
    return SimpleNamespace(window_days=days, window_start=windows.parse_time(start) if start else None,
                           window_end=windows.parse_time(end) if end else None, window_time_zone=tz,
                           daily_cap=cap, over_cap="wait")


# Monday 2025-01-06: New York is UTC-5, so 08:00 there is 13:00 UTC.
def test_a_second_before_the_opening_waits_for_the_opening_and_the_opening_itself_is_open():
    w = window()
    assert windows.next_open(w, datetime(2025, 1, 6, 12, 59, 59)) == datetime(2025, 1, 6, 13, 0)
    assert windows.is_open(w, datetime(2025, 1, 6, 13, 0))
    assert not windows.is_open(w, datetime(2025, 1, 6, 12, 59, 59))


def test_the_closing_time_is_closed_and_waits_for_the_next_day():
    w = window()
    assert windows.is_open(w, datetime(2025, 1, 7, 0, 59, 59))  # 19:59:59 in New York
    assert windows.next_open(w, datetime(2025, 1, 7, 1, 0)) == datetime(2025, 1, 7, 13, 0)  # 20:00: Tuesday 08:00


def test_days_of_the_week_friday_evening_waits_for_monday():
    w = window()
    friday_evening = datetime(2025, 1, 11, 2, 0)  # Friday 21:00 in New York
    assert windows.next_open(w, friday_evening) == datetime(2025, 1, 13, 13, 0)
    assert windows.describe_opening(w, datetime(2025, 1, 13, 13, 0)) == "Mon 08:00 America/New_York"


def test_an_overnight_window_runs_past_midnight_and_belongs_to_the_day_it_opens():
    w = window(days="fri", start="22:00", end="06:00", tz="UTC")
    assert windows.is_open(w, datetime(2025, 1, 10, 22, 0))  # Friday 22:00
    assert windows.is_open(w, datetime(2025, 1, 11, 5, 59))  # Saturday 05:59: Friday's window
    assert windows.next_open(w, datetime(2025, 1, 11, 6, 0)) == datetime(2025, 1, 17, 22, 0)
    assert not windows.is_open(w, datetime(2025, 1, 10, 5, 0))  # Friday morning: Thursday has no window


def test_dst_the_window_opens_at_local_eight_on_both_sides_of_a_clock_change():
    w = window(days="sat,sun,mon")
    # 2025-03-09 (Sunday) New York moves to UTC-4: 08:00 is 13:00 UTC on Saturday, 12:00 UTC on Sunday.
    assert windows.next_open(w, datetime(2025, 3, 8, 2, 0)) == datetime(2025, 3, 8, 13, 0)
    assert windows.next_open(w, datetime(2025, 3, 9, 2, 0)) == datetime(2025, 3, 9, 12, 0)
    # 02:30 does not exist that Sunday: it is read with the old offset (03:30 by the new clock), not skipped.
    early = window(days="sun", start="02:30", end="05:00")
    assert windows.next_open(early, datetime(2025, 3, 9, 0, 0)) == datetime(2025, 3, 9, 7, 30)


def test_until_24_00_and_the_cap_day_in_the_zone():
    w = window(days="mon", start="18:00", end="24:00", tz="UTC")
    assert windows.is_open(w, datetime(2025, 1, 6, 23, 59, 59))
    assert not windows.is_open(w, datetime(2025, 1, 7, 0, 0))
    p = profile(cap=500)
    assert windows.cap_day(p, datetime(2025, 1, 7, 3, 0)) == date(2025, 1, 6)  # still Monday in New York
    assert windows.after_cap(p, datetime(2025, 1, 7, 3, 0)) == datetime(2025, 1, 7, 13, 0)  # Tuesday's opening
    assert windows.cap_day(profile(cap=None), datetime(2025, 1, 7)) is None


def test_an_overnight_windows_cap_counts_the_night_against_the_evening_it_opened():
    # Friday 2025-01-10 22:00 to Saturday 06:00 UTC, and the same every night.
    p = profile(days="mon,tue,wed,thu,fri,sat,sun", start="22:00", end="06:00", tz="UTC", cap=100)
    evening, small_hours = datetime(2025, 1, 10, 23, 0), datetime(2025, 1, 11, 2, 0)
    assert windows.cap_day(p, evening) == windows.cap_day(p, small_hours) == date(2025, 1, 10)
    # Over the cap at 02:00: not midnight (still tonight's window) but Saturday evening's opening.
    assert windows.after_cap(p, small_hours) == windows.after_cap(p, evening) == datetime(2025, 1, 11, 22, 0)
    assert windows.cap_day(p, datetime(2025, 1, 11, 22, 0)) == date(2025, 1, 11)  # the next night: a new count
    friday_only = profile(days="fri", start="22:00", end="06:00", tz="UTC", cap=100)
    assert windows.cap_day(friday_only, small_hours) == date(2025, 1, 10)
    assert windows.after_cap(friday_only, small_hours) == datetime(2025, 1, 17, 22, 0)


def test_no_window_is_always_open():
    p = profile(start=None, end=None)
    assert windows.of(p) is None
    assert windows.next_open(None, datetime(2025, 1, 6, 3, 0)) == datetime(2025, 1, 6, 3, 0)
    assert windows.after_cap(SimpleNamespace(**{**vars(p), "window_time_zone": "UTC"}),
                             datetime(2025, 1, 6, 3, 0)) == datetime(2025, 1, 7)


@pytest.mark.parametrize("text", ["8", "8:5", "25:00", "24:01", "12:60", "noon", "", "-1:00"])
def test_a_bad_time_is_refused_with_the_format(text):
    with pytest.raises(ValueError, match="HH:MM"):
        windows.parse_time(text)


def test_what_is_checked():
    assert windows.parse_time("8:00") == 480 and windows.parse_time("24:00") == 1440
    assert windows.check("", None, None) == {}
    assert windows.check("mon", 480, None) == {"window_end": "Give both From and To, or leave both empty "
                                                                     "for no send window"}
    assert "whole day" in windows.check("mon", 480, 480)["window_end"]
    assert windows.check("", 480, 1200) == {"window_days": "Choose at least one day for the send window"}
    with pytest.raises(ValueError, match="not a time zone"):
        windows.zone("Mars/Olympus")
    with pytest.raises(ValueError, match="at most 64 characters"):
        windows.zone("a" * 300)  # ZoneInfo's OSError, file name too long
    for bad in ("America", "a" * 64, "a/" * 32, "/etc/passwd", "UTC\x00"):  # America: a directory, OSError
        with pytest.raises(ValueError, match="not a time zone"):
            windows.zone(bad)
    with pytest.raises(ValueError, match="'funday' is not a day"):
        windows.parse_days(["mon", "funday"])
    assert windows.parse_days(["fri", "mon"]) == "mon,fri"


# --- the engine keeps them: real workers, a real receiver ---------------------------------------

def _minute_ahead(seconds=6):
    """The next whole UTC minute at least `seconds` away (windows are set in minutes): a wait of
    half a minute on average."""
    soon = utcnow() + timedelta(seconds=seconds)
    at = soon.replace(second=0, microsecond=0)
    return at if at == soon else at + timedelta(minutes=1)


def _one_minute_window(opens):
    return {"days": [windows.DAYS[opens.weekday()]], "from": f"{opens:%H:%M}",
            "to": f"{opens + timedelta(minutes=1):%H:%M}"}


def _delivery(profile):
    db.session.expire_all()
    return db.session.scalars(db.select(Delivery).where(Delivery.profile_id == profile.id)).one()


def test_nothing_goes_out_before_the_window_opens_and_it_goes_out_at_the_opening_retries_wait(
        app, app_config, post_events, receiver, logged_in):
    opens = _minute_ahead()
    window = _one_minute_window(opens)
    dialer = make_profile(name="dialer", url=receiver.url + "/p", send_window=window)
    failing = Receiver(host="127.0.0.2").start()
    failing.default = Reply(500)
    try:
        declines = [{"customer_types": ["decline"], "campaigns": [259], "products": []}]
        late = make_profile(name="window set later", url=failing.url + "/p", routes=declines)
        post_events({"events": [event("e1", occurred_at=(opens - timedelta(seconds=1)).isoformat() + "Z"),
                                event("e2", type="decline")]})
        assert _delivery(dialer).due_at == opens  # due a second before the opening: due at the opening
        assert _delivery(late).due_at < utcnow()  # due already, but nothing sends it yet
        make_profile(name="window set later", url=failing.url + "/p", routes=declines, send_window=window)
        page = logged_in.get(f"/deliveries/{_delivery(dialer).id}").get_data(as_text=True)
        assert f"Waiting for the send window: opens {opens:%a %H:%M} UTC" in page
        worker = start(["worker"], process_env(app_config, EXPORTER_RETRY_BASE_SECONDS=120,
                                                EXPORTER_RETRY_MAX_SECONDS=3600))
        try:
            receiver.wait_for(1, timeout=75)
            wait_until(lambda: _delivery(late).status == "retrying" and _delivery(late).attempt_count == 1,
                       timeout=15, what="the failed try to be recorded")
        finally:
            stop(worker)
    finally:
        failing.stop()
    opening = opens.replace(tzinfo=timezone.utc).timestamp()
    assert [r.received_at >= opening for r in receiver.requests + failing.requests] == [True, True]
    assert receiver.requests[0].received_at < opening + 3  # at the opening, not a while after
    assert _delivery(dialer).status == "delivered"
    # The try failed inside the window; its retry (2 min on) falls after it closes: next week's opening.
    assert _delivery(late).due_at == opens + timedelta(days=7)


def _drain_at(app, at):
    """When the drain that RQ holds for the second of `at` will run; None when none waits for it."""
    from rq.registry import ScheduledJobRegistry

    from exporter.delivery import queue

    second = math.ceil(at.replace(tzinfo=timezone.utc).timestamp())
    registry = ScheduledJobRegistry(queue=queue.get_queue(app.config["REDIS_URL"], app.config["QUEUE_NAME"]))
    try:
        return registry.get_scheduled_time(f"drain-at-{second}")
    except Exception:  # rq's NoSuchJobError: nothing scheduled then
        return None


def test_an_old_event_is_due_at_the_next_opening_from_now_not_one_already_past(app, post_events, logged_in):
    """A CRM that posts late: the event occurred nine days ago, before more than one opening of a
    weekly window went by. It waits for the opening to come, and a drain is on its way for it."""
    opens = _minute_ahead()
    profile = make_profile(name="dialer", url="https://dialer.example.com/p", send_window=_one_minute_window(opens))
    post_events({"events": [event("e1", occurred_at=occurred(days=9))]})
    assert _delivery(profile).due_at == opens
    assert _drain_at(app, opens) is not None
    page = logged_in.get(f"/deliveries/{_delivery(profile).id}").get_data(as_text=True)
    assert f"Waiting for the send window: opens {opens:%a %H:%M} UTC" in page


def _window_set_after_an_old_event(post_events, url, opens):
    """An event of nine days ago that its profile owes (no worker ran since), then the profile
    gets a send window that is closed now: nothing has woken a drain for its opening."""
    make_profile(name="dialer", url=url)
    post_events({"events": [event("e1", occurred_at=occurred(days=9))]})
    return make_profile(name="dialer", url=url, send_window=_one_minute_window(opens))


def test_retry_now_while_the_window_is_closed_says_so_and_sends_only_at_the_opening(
        app, app_config, post_events, receiver, logged_in):
    opens = _minute_ahead()
    profile = _window_set_after_an_old_event(post_events, receiver.url + "/p", opens)
    delivery = _delivery(profile)
    response = logged_in.post(f"/deliveries/{delivery.id}/retry", follow_redirects=True)
    assert (f"Delivery #{delivery.id} waits for the send window: opens {opens:%a %H:%M} UTC."
            in response.get_data(as_text=True))  # not "will be sent again now"
    assert (_delivery(profile).status, _delivery(profile).due_at) == ("retrying", opens)
    entry = db.session.scalars(db.select(AuditEntry).where(AuditEntry.action == "delivery.retry")).one()
    assert entry.after == {"status": "retrying", "due": opens.isoformat()}
    worker = start(["worker"], process_env(app_config))
    try:
        receiver.wait_for(1, timeout=75)
    finally:
        stop(worker)
    assert receiver.requests[0].received_at >= opens.replace(tzinfo=timezone.utc).timestamp()
    assert _delivery(profile).status == "delivered"


def test_retry_all_while_the_window_is_closed_wakes_a_drain_at_the_opening(app, post_events, logged_in):
    opens = _minute_ahead()
    profile = _window_set_after_an_old_event(post_events, "https://dialer.example.com/p", opens)
    db.session.execute(db.update(Delivery).values(status="retrying", attempt_count=1))  # its first try failed
    db.session.commit()
    response = logged_in.post(f"/deliveries/profiles/{profile.id}/retry-all", follow_redirects=True)
    assert f"1 retrying deliveries of profile &#39;dialer&#39; wait for the send window: opens {opens:%a %H:%M} UTC." \
        in response.get_data(as_text=True)
    assert _delivery(profile).due_at == opens
    assert _drain_at(app, opens) == opens.replace(tzinfo=timezone.utc)


def test_a_daily_cap_lets_exactly_that_many_through_across_two_workers(app, app_config, post_events, receiver,
                                                                       logged_in):
    capped = make_profile(url=receiver.url + "/p", daily_cap=40, time_zone="America/New_York")
    post_events({"events": [event(f"e{i}", customerId=1000 + i, orderId=5000 + i) for i in range(150)]})
    workers = [start(["worker"], process_env(app_config)) for _ in range(2)]
    try:
        wait_until(lambda: statuses()["delivered"] == 40 and statuses()["scheduled"] == 110, timeout=60,
                   what="the cap's 40 to go out and the rest to wait")
        time.sleep(1)  # anything past the cap would have arrived by now
    finally:
        for worker in workers:
            stop(worker)
    assert len(receiver.requests) == 40 and statuses() == {"delivered": 40, "scheduled": 110}
    tomorrow = windows.next_day(NY, utcnow())
    waiting = db.session.scalars(db.select(Delivery).where(Delivery.status == "scheduled")).all()
    assert {d.due_at for d in waiting} == {tomorrow} and {d.attempt_count for d in waiting} == {0}
    # Which 40: two workers' claims are admitted in either order, so the cap goes to whichever claim
    # asks first; oldest first holds within one worker (test_over_the_cap_with_skip_...).
    page = logged_in.get(f"/deliveries/{waiting[0].id}").get_data(as_text=True)
    assert (f"Waiting: the daily cap of 40 was reached; next day opens "
            f"{windows.describe_opening(NY, tomorrow)}") in page
    assert capped.daily_cap == 40


def test_over_the_cap_with_skip_cancels_with_a_history_message(app, post_events, receiver, run_jobs):
    make_profile(name="Dialer", url=receiver.url + "/p", daily_cap=2, over_cap="skip")
    post_events({"events": [event(f"e{i}", customerId=1000 + i, orderId=5000 + i) for i in range(5)]})
    run_jobs(until=lambda: statuses() == {"delivered": 2, "cancelled": 3})
    assert len(receiver.requests) == 2
    ids = sorted(db.session.scalars(db.select(Delivery.id)))
    delivered = sorted(db.session.scalars(db.select(Delivery.id).where(Delivery.status == "delivered")))
    assert delivered == ids[:2]  # oldest first
    cancelled = db.session.scalars(db.select(Delivery).where(Delivery.status == "cancelled")).all()
    assert {d.cancel_reason for d in cancelled} == {"daily cap of 2 reached"}
    messages = db.session.scalars(db.select(HistoryEntry.message).where(
        HistoryEntry.delivery_id.in_([d.id for d in cancelled]))).all()
    assert messages == ["Not exported: Dialer reached its daily cap of 2"] * 3


def statuses():
    db.session.expire_all()
    return Counter(db.session.scalars(db.select(Delivery.status)))
