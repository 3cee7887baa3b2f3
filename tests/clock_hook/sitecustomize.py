"""Test-only (tests/clock.py): a Python process a moved-clock test run starts takes its moved time.

This directory is on PYTHONPATH only in such a run, never on the product's path. The offset is
the test run's moved time minus the real time, so every process reads the same moved clock."""
import os

_offset = os.environ.get("PYTEST_EXPORTER_CLOCK_OFFSET")
if _offset:
    import time

    import time_machine

    time_machine.travel(time.time() + float(_offset), tick=True).start()
    time.time()  # it ticks from the first reading: from now, not from whenever the process first asks
