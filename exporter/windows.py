"""Send windows and daily caps (issue 12): when a profile's exports may go out, and its days.

Pure arithmetic, no Flask, no database. A window is a set of days of the week and a time of
day From and To in a time zone; To at or before From makes an overnight window (22:00-06:00),
whose day is the day it opens. Times in and out are naive UTC, as the database keeps them;
the zone's offsets (DST) come from zoneinfo, so a window opens at 08:00 local on either side
of a clock change.
"""
import functools
import re
import zoneinfo
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # datetime.weekday() order
DAY_LABELS = dict(zip(DAYS, ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")))
MINUTES_A_DAY = 24 * 60
MAX_DAILY_CAP = 10_000_000
CAP_MESSAGE = f"Daily Cap is a whole number from 1 to {MAX_DAILY_CAP:,}; empty means no cap"
OVER_CAP = {"wait": "Wait for the next day", "skip": "Skip (cancelled, with a history message)"}
# The profile's columns for its window and cap (the edit page and the profiles JSON set them all).
COLUMNS = ("window_days", "window_start", "window_end", "window_time_zone", "daily_cap", "over_cap")
TIME_MESSAGE = "Give a time as HH:MM, 00:00 to 24:00"


@dataclass(frozen=True)
class Window:
    days: frozenset  # weekday numbers, Monday 0
    start: int  # minutes after midnight
    end: int  # minutes after midnight, up to 1440; at or before start: the window ends the next day
    zone: ZoneInfo

    @property
    def overnight(self):
        return self.end <= self.start


# --- checking what an admin gives ---------------------------------------------------------------

def parse_time(text):
    """Minutes after midnight of "HH:MM" ("24:00" is the day's end); ValueError naming the format."""
    match = re.fullmatch(r"([0-9]{1,2}):([0-9]{2})", (text or "").strip())
    if not match:
        raise ValueError(TIME_MESSAGE)
    hours, minutes = int(match[1]), int(match[2])
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        raise ValueError(TIME_MESSAGE)
    return hours * 60 + minutes


def format_time(minutes):
    return "" if minutes is None else f"{minutes // 60:02d}:{minutes % 60:02d}"


MAX_ZONE_LENGTH = 64  # the profile's column
ZONE_LENGTH_MESSAGE = f"Time Zone is at most {MAX_ZONE_LENGTH} characters"


@functools.cache
def zone_names():
    """Every IANA zone name zoneinfo knows, sorted: the Time Zone fields' list to search."""
    return sorted(name for name in zoneinfo.available_timezones() if "/" in name or name == "UTC")


def zone(name):
    """The ZoneInfo of an IANA name; ValueError saying so (whatever ZoneInfo raises for a bad
    key: an overlong name is an OSError, "file name too long")."""
    if isinstance(name, str) and len(name) > MAX_ZONE_LENGTH:
        raise ValueError(ZONE_LENGTH_MESSAGE)
    try:
        if not isinstance(name, str) or not name or name != name.strip():
            raise ValueError
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        raise ValueError(f"{name!r} is not a time zone: give an IANA name such as America/New_York or UTC") from None


def parse_days(days):
    """The stored form ("mon,tue") of a list of day names; ValueError on one that is not a day."""
    unknown = [d for d in days if d not in DAYS]
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not a day: use {', '.join(DAYS)}")
    return ",".join(d for d in DAYS if d in days)


def check(days, start, end):
    """{field: message} of what is wrong with a window (start/end in minutes, None for no window)."""
    problems = {}
    if start is None and end is None:
        return problems
    if start is None or end is None:
        problems["window_start" if start is None else "window_end"] = (
            "Give both From and To, or leave both empty for no send window")
    elif start == end or (start == 0 and end == MINUTES_A_DAY):
        problems["window_end"] = "From and To make a whole day: leave both empty for no send window"
    elif start == MINUTES_A_DAY:
        problems["window_start"] = "From is at most 23:59"
    if not days:
        problems["window_days"] = "Choose at least one day for the send window"
    return problems


# --- a profile's window -------------------------------------------------------------------------

def of(profile):
    """The profile's window, or None when it has none (its exports go out at any time)."""
    if profile.window_start is None or profile.window_end is None or not profile.window_days:
        return None
    days = frozenset(DAYS.index(d) for d in profile.window_days.split(",") if d in DAYS)
    return Window(days, profile.window_start, profile.window_end, time_zone(profile))


def time_zone(profile):
    """The zone of the profile's window and daily cap; UTC when the stored name is unknown here."""
    try:
        return ZoneInfo(profile.window_time_zone or "UTC")
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        return ZoneInfo("UTC")


def _utc(local_day, minutes, tz):
    """The naive UTC instant of a local day's minute (a time the clocks skip is read with the old offset)."""
    local = datetime.combine(local_day, time()) + timedelta(minutes=minutes)
    return local.replace(tzinfo=tz).astimezone(timezone.utc).replace(tzinfo=None)


def local_day(tz, at):
    """The day in tz of the naive UTC instant at."""
    return at.replace(tzinfo=timezone.utc).astimezone(tz).date()


def _spans(window, around):
    """The window's (opens, closes) spans from the day before around's local day, for 9 days."""
    first = local_day(window.zone, around) - timedelta(days=1)
    for n in range(9):
        day = first + timedelta(days=n)
        if day.weekday() not in window.days:
            continue
        opens = _utc(day, window.start, window.zone)
        closes = _utc(day + timedelta(days=1) if window.overnight else day, window.end, window.zone)
        if closes > opens:
            yield opens, closes


def next_open(window, at):
    """at when the window is open then, else when it next opens (naive UTC). No window: at."""
    if window is None:
        return at
    following = None
    for opens, closes in _spans(window, at):
        if opens <= at < closes:
            return at
        if opens > at and (following is None or opens < following):
            following = opens
    return following  # a window has at least one day, so one opens within 8 days


def is_open(window, at):
    return window is None or next_open(window, at) == at


def is_opening(window, at):
    """Whether at is the moment the window opens (open then, closed a second before)."""
    return is_open(window, at) and not is_open(window, at - timedelta(seconds=1))


def next_day(tz, at):
    """The start (naive UTC) of the local day after at's."""
    return _utc(local_day(tz, at) + timedelta(days=1), 0, tz)


def describe_opening(window_or_zone, at):
    """'Mon 08:00 America/New_York': the naive UTC instant at, in the window's zone."""
    tz = window_or_zone.zone if isinstance(window_or_zone, Window) else window_or_zone
    local = at.replace(tzinfo=timezone.utc).astimezone(tz)
    return f"{DAY_LABELS[DAYS[local.weekday()]]} {local:%H:%M} {tz.key}"


def describe(profile):
    """The window and cap in words, for the profile's pages; "" when it has neither."""
    parts = []
    window = of(profile)
    if window:
        days = ", ".join(DAY_LABELS[DAYS[d]] for d in sorted(window.days))
        parts.append(f"sends {days} {format_time(window.start)}-{format_time(window.end)}")
    if profile.daily_cap:
        parts.append(f"at most {profile.daily_cap:,} a day")
    return f"{', '.join(parts)} ({time_zone(profile).key})" if parts else ""


# --- why a delivery waits -----------------------------------------------------------------------

def waiting_for_window(window, opens):
    return f"Waiting for the send window: opens {describe_opening(window, opens)}"


def waiting_for_cap(cap, tz, opens):
    return f"Waiting: the daily cap of {cap:,} was reached; next day opens {describe_opening(tz, opens)}"


def span_at(window, at):
    """The window's (opens, closes) span that at falls in; None when the window is closed then."""
    if window is None:
        return None
    return next((span for span in _spans(window, at) if span[0] <= at < span[1]), None)


def cap_day(profile, at):
    """The local day a send at `at` counts against the profile's daily cap; None without a cap.
    Inside a window it is the day the window opened: 02:00 in a 22:00-06:00 window counts
    against the evening before, so one night lets the cap through once."""
    if not profile.daily_cap:
        return None
    span = span_at(of(profile), at)
    return local_day(time_zone(profile), span[0] if span else at)


def after_cap(profile, at):
    """When a delivery over the profile's cap may go: the next span's opening (an overnight
    window's next evening, not midnight inside tonight's), or the next day without a window."""
    window = of(profile)
    span = span_at(window, at)
    if span:
        return next_open(window, span[1])
    return next_open(window, next_day(time_zone(profile), at))

