"""The test run's clock (tests/clock.py) and the product's one clock: Python's, passed into SQL."""
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from exporter.extensions import db

from . import clock

NOW = datetime(2026, 12, 7, 1, 42, 22, tzinfo=timezone.utc)  # an input to pure arithmetic, not today
EXPORTER = Path(__file__).parent.parent / "exporter"


@pytest.mark.parametrize("spec, instant", [
    ("+400d", datetime(2028, 1, 11, 1, 42, 22, tzinfo=timezone.utc)),
    ("-3h", datetime(2026, 12, 6, 22, 42, 22, tzinfo=timezone.utc)),
    ("2027-11-07T05:58:00Z", datetime(2027, 11, 7, 5, 58, tzinfo=timezone.utc)),
    ("2027-11-07T05:58:00", datetime(2027, 11, 7, 5, 58, tzinfo=timezone.utc)),
    ("midnight", datetime(2026, 12, 8, 0, 0, 5, tzinfo=timezone.utc)),
    # New York: summer time from 2027-03-14 02:00 EST (07:00 UTC) until 2027-11-07 02:00 EDT (06:00 UTC)
    ("ny-spring", datetime(2027, 3, 14, 6, 58, tzinfo=timezone.utc)),
    ("ny-fall", datetime(2027, 11, 7, 5, 58, tzinfo=timezone.utc)),
])
def test_a_clock_names_an_instant(spec, instant):
    assert clock.target(spec, NOW) == instant


@pytest.mark.parametrize("spec", ["400d", "+400 days", "tomorrow", "2027-13-01"])
def test_a_bad_clock_says_what_a_clock_is(spec):
    with pytest.raises(ValueError, match="is not a clock: give \\+400d"):
        clock.target(spec, NOW)


def test_a_process_the_tests_start_reads_the_moved_clock():
    offset = 400 * 86400.0
    env = {**os.environ, clock.OFFSET_VARIABLE: repr(offset), "PYTHONPATH": str(clock.HOOK_DIR)}
    code = "import datetime, time; print(time.time(), datetime.date.today().isoformat())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    ours = float(os.environ.get(clock.OFFSET_VARIABLE) or 0)  # this run's own move, if any
    real = time.time() - ours
    moved, today = out.split()
    assert abs(float(moved) - (real + offset)) < 10
    assert today == datetime.fromtimestamp(float(moved)).date().isoformat()


# The database's own clock would disagree with a moved one (and with the app's, on another
# machine): the product asks Python for the time and passes it into SQL, never the other way.
DATABASE_CLOCK = re.compile(r"current_timestamp|current_date|current_time\b|localtimestamp|(?<![\w.])now\(\)|func\.now"
                            r"|datetime\(\s*['\"]now|julianday\(\s*['\"]now|strftime\([^)]*['\"]now"
                            r"|clock_timestamp|statement_timestamp|transaction_timestamp", re.IGNORECASE)


def test_no_sql_of_the_product_reads_the_databases_clock():
    found = [f"{path.relative_to(EXPORTER.parent)}:{n}: {line.strip()}"
             for path in sorted(EXPORTER.rglob("*.py"))
             for n, line in enumerate(path.read_text().splitlines(), 1) if DATABASE_CLOCK.search(line)]
    assert found == []


def test_no_column_defaults_to_the_databases_clock(app):
    defaults = [f"{table.name}.{column.name}: {column.server_default.arg}"
                for table in db.metadata.sorted_tables for column in table.columns
                if column.server_default is not None and DATABASE_CLOCK.search(str(column.server_default.arg))]
    assert defaults == []
