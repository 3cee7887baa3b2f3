"""The supervisor of `exporter run`'s children, on real (tiny) processes: a child that dies is
restarted with backoff and said so; stop() ends them all, a stubborn one by SIGKILL."""
import signal
import subprocess
import sys
import time

from exporter.ops.supervisor import Child, Supervisor

from ..processes import alive, wait_until

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
CRASHER = [sys.executable, "-c", "raise SystemExit(3)"]
STUBBORN = ("import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "pathlib.Path(sys.argv[1]).touch(); time.sleep(60)")


def supervise(*children, **timing):
    lines = []
    timing = {"first_delay": 0.2, "max_delay": 0.8, "stable_after": 60, **timing}
    return Supervisor(children, echo=lines.append, **timing), lines


def test_a_child_killed_is_restarted_and_said_so():
    worker = Child("worker", SLEEPER)
    supervisor, lines = supervise(worker)
    supervisor.start()
    try:
        first = worker.pid
        worker.process.send_signal(signal.SIGKILL)
        wait_until(lambda: worker.pid != first and worker.alive(), timeout=10, what="the worker to start again")
        assert lines == ["worker exited (code -9); restarting in 0.2 s"]
        assert not alive(first)
    finally:
        supervisor.stop(timeout=5)
    assert not worker.alive()


def test_a_crashing_child_backs_off_doubling_to_the_cap():
    cron = Child("cron", CRASHER)
    supervisor, lines = supervise(cron)
    supervisor.start()
    try:
        wait_until(lambda: len(lines) >= 5, timeout=20, what="five restarts")
    finally:
        supervisor.stop(timeout=5)
    delays = [line.rsplit(" in ", 1)[1] for line in lines[:5]]
    assert delays == ["0.2 s", "0.4 s", "0.8 s", "0.8 s", "0.8 s"]
    assert all(line.startswith("cron exited (code 3)") for line in lines)


def test_the_backoff_starts_over_after_a_child_ran_a_while():
    worker = Child("worker", SLEEPER)
    supervisor, lines = supervise(worker, stable_after=1.0)
    supervisor.start()
    try:
        for _ in range(2):  # two quick deaths: 0.2 s, then 0.4 s
            pid = worker.pid
            worker.process.kill()
            wait_until(lambda: worker.pid != pid and worker.alive(), timeout=10, what="a restart")
        time.sleep(1.2)  # it has run a while now
        pid = worker.pid
        worker.process.kill()
        wait_until(lambda: worker.pid != pid and worker.alive(), timeout=10, what="a restart")
    finally:
        supervisor.stop(timeout=5)
    assert [line.rsplit(" in ", 1)[1] for line in lines] == ["0.2 s", "0.4 s", "0.2 s"]


def test_stop_ends_every_child_and_kills_one_that_ignores_sigterm(tmp_path):
    ready = tmp_path / "ready"
    worker, cron = Child("worker", SLEEPER), Child("cron", [sys.executable, "-c", STUBBORN, str(ready)])
    supervisor, lines = supervise(worker, cron)
    supervisor.start()
    wait_until(ready.exists, what="the stubborn child to ignore SIGTERM")
    pids = [worker.pid, cron.pid]
    started = time.monotonic()
    supervisor.stop(timeout=1)
    assert time.monotonic() - started < 5
    assert not any(alive(pid) for pid in pids)
    assert lines == ["cron did not stop in 1 s; killing it"]  # and no restart line: a stop is no death
    assert worker.process.returncode == -signal.SIGTERM and cron.process.returncode == -signal.SIGKILL


def test_a_child_that_cannot_start_is_tried_again(tmp_path):
    missing = Child("cron", [str(tmp_path / "no-such-python"), "-m", "exporter", "cron"])
    supervisor, lines = supervise(missing)
    missing.process = subprocess.Popen(CRASHER)  # it ran once, then its interpreter went away
    try:
        wait_until(lambda: missing.process.poll() is not None, what="the first run to end")
        supervisor.check(missing)
        time.sleep(0.25)
        supervisor.check(missing)
        assert lines[0] == "cron exited (code 3); restarting in 0.2 s"
        assert lines[1].startswith("cron could not start (") and lines[1].endswith("trying again in 0.4 s")
    finally:
        supervisor.stop(timeout=1)
