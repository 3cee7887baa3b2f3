"""The test run under another clock (issue 19): no test may depend on the day it runs.

`EXPORTER_TEST_CLOCK=+400d make test` (or `pytest --clock=+400d`) moves the clock of the test
process, from the start of the session, with time-machine: time.time(), datetime.now(),
date.today() tick on from the moved instant; time.monotonic() (timeouts, sleeps) is untouched.
The Python processes the tests start (workers, cron, `exporter run` and its children, a nested
pytest) take the same moved time: this module puts tests/clock_hook on PYTHONPATH, whose
sitecustomize.py moves their clock by the offset in PYTEST_EXPORTER_CLOCK_OFFSET (not an
EXPORTER_ name: launchers that drop the app's variables keep it, and the app never reads it).
Nothing of this is on the product's path: without a moved clock the hook is not on any path.

The product reads only Python's clock and passes it into SQL (tests/test_clock.py checks that no
SQL asks the database for its own time), so SQLite and PostgreSQL agree with the moved clock.
The embedded Redis keeps real time, which is harmless: only relative TTLs are set there, and RQ
scores its scheduled jobs with the (moved) Python time of the process that schedules them.

A clock is one of:
  +400d, -3h, +90m, +30s     the real time moved by that much
  2027-11-07T05:58:00Z       an instant (ISO 8601; no zone means UTC)
  midnight                   five seconds after the next midnight UTC
  ny-spring, ny-fall         two minutes before America/New_York's next change to, or from,
                             summer time (so the run crosses it, on the day it happens)
"""
import os
import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

OFFSET_VARIABLE = "PYTEST_EXPORTER_CLOCK_OFFSET"
HOOK_DIR = Path(__file__).parent / "clock_hook"
UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
NEW_YORK = ZoneInfo("America/New_York")


def target(spec, now):
    """The instant (aware UTC) a clock spec names, from the real time `now` (aware UTC)."""
    spec = spec.strip()
    relative = re.fullmatch(r"([+-])([0-9]+)([dhms])", spec)
    if relative:
        delta = timedelta(**{UNITS[relative[3]]: int(relative[2])})
        return now + delta if relative[1] == "+" else now - delta
    if spec == "midnight":
        return datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), timezone.utc) + timedelta(seconds=5)
    if spec in ("ny-spring", "ny-fall"):
        return dst_change(NEW_YORK, now, to_summer=spec == "ny-spring") - timedelta(minutes=2)
    try:
        instant = datetime.fromisoformat(spec.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{spec!r} is not a clock: give +400d, -3h, an ISO instant, midnight, "
                         f"ny-spring or ny-fall") from None
    return instant.replace(tzinfo=timezone.utc) if instant.tzinfo is None else instant.astimezone(timezone.utc)


def dst_change(zone, after, to_summer):
    """The next instant (aware UTC) after `after` when zone's clocks go forward (to_summer) or back.
    Clock changes fall on a whole hour of UTC in the zones we test."""
    hour = after.replace(minute=0, second=0, microsecond=0)
    for _ in range(24 * 400):
        following = hour + timedelta(hours=1)
        before, now = hour.astimezone(zone).utcoffset(), following.astimezone(zone).utcoffset()
        if before != now and (now > before) == to_summer and following > after:
            return following
        hour = following
    raise ValueError(f"{zone.key} does not change its clocks within a year")


def moved():
    """Whether this process's clock was moved by a parent test run (tests/clock_hook)."""
    return bool(os.environ.get(OFFSET_VARIABLE))


def start(spec):
    """Move this process's clock to the spec's instant, and make the processes it starts follow.
    Returns the instant (aware UTC), or None when there is nothing to do."""
    if not spec or moved():  # a nested pytest: its parent's clock already came with it
        return None
    import time_machine  # the [dev] extra; only a moved clock needs it

    real = time.time()
    instant = target(spec, datetime.fromtimestamp(real, timezone.utc))
    time_machine.travel(instant.timestamp(), tick=True).start()
    time.time()  # time-machine ticks from the first reading: from now, as the processes we start do
    os.environ[OFFSET_VARIABLE] = repr(instant.timestamp() - real)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HOOK_DIR), os.environ.get("PYTHONPATH")]))
    return instant


def real_now():
    """The real time (aware UTC) when the clock is moved: what code outside Python reads (OpenSSL
    checking a certificate's dates, Chromium, Redis)."""
    offset = float(os.environ.get(OFFSET_VARIABLE) or 0)
    return datetime.now(timezone.utc) - timedelta(seconds=offset)
