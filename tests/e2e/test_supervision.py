"""`exporter run` watches its children: a worker SIGKILLed is restarted and sends the next
export; Ctrl-C or SIGTERM stops everything in seconds without a traceback; the output is quiet
unless --verbose."""
import os
import signal
import subprocess
import time

import pytest
import requests

from exporter.delivery.queue import free_port

from ..factories import event, make_profile
from ..processes import alive, children, process_env, start, stop, wait_until


class Run:
    """A real `exporter run` on a free port, its stdout and stderr kept in files."""

    def __init__(self, app_config, tmp_path, *args, **env):
        self.port = free_port()
        self.out, self.err = tmp_path / "run.out", tmp_path / "run.err"
        env = process_env(app_config, EXPORTER_INSTANCE_PATH=tmp_path / "instance", **env)
        self.process = start(["run", "--port", str(self.port), *args], env,
                             stdout=open(self.out, "w"), stderr=open(self.err, "w"))

    def wait_started(self):
        wait_until(lambda: "is running at" in self.out.read_text() and len(self.children()) == 2,
                   timeout=60, what="exporter run to start its worker and cron")

    def children(self):
        return {pid: cmd.rsplit(" ", 1)[1] for pid, cmd in children(self.process.pid).items()
                if cmd.endswith((" worker", " cron"))}

    def child(self, name):
        return next(pid for pid, what in self.children().items() if what == name)

    def stop(self):
        """Stop it as a user would; then make sure no child outlives it. Each child runs in a process
        group of its own, so when a slow machine makes stop() SIGKILL `exporter run`, a worker or a
        cron it could not stop in time would live on against this session's Redis, and its cron
        would enqueue sweeps and daily-file ticks into the tests that follow."""
        left = list(self.children())
        stop(self.process)
        for pid in left + list(self.children()):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def run(app_config, tmp_path):
    runs = []

    def start_run(*args, **env):
        runs.append(Run(app_config, tmp_path, *args, **env))
        runs[-1].wait_started()
        return runs[-1]

    yield start_run
    for r in runs:
        r.stop()


def test_a_killed_worker_is_restarted_and_sends_the_next_export(app, run, receiver, intake_token):
    make_profile(url=receiver.url + "/p")
    exporter = run()
    killed = exporter.child("worker")
    subprocess.run(["kill", "-KILL", str(killed)], check=True)
    wait_until(lambda: "worker exited (code -9); restarting in 1 s" in exporter.err.read_text(),
               what="exporter run to say it restarts the worker")
    wait_until(lambda: "worker" in exporter.children().values() and killed not in exporter.children(),
               what="a new worker")
    answer = requests.post(f"http://127.0.0.1:{exporter.port}/intake/events", json=event("evt-after-kill"),
                           headers={"Authorization": f"Bearer {intake_token}"}, timeout=10)
    assert answer.json()["deliveries"] == 1
    receiver.wait_for(1, timeout=30)
    assert receiver.requests[0].path.startswith("/p?first_name=Jane")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_stops_everything_quickly_and_quietly(app, run, sig):
    exporter = run(EXPORTER_SWEEP_INTERVAL_SECONDS=1)
    pids = list(exporter.children())
    time.sleep(2.5)  # a few sweeps run: none of them is printed
    started = time.monotonic()
    os.killpg(exporter.process.pid, sig)  # as a terminal's Ctrl-C: to run's process group (its children have their own)
    exporter.process.wait(20)
    assert time.monotonic() - started < 10  # a second or two on a quiet machine
    assert exporter.process.returncode == 0
    assert not [pid for pid in pids if alive(pid)]
    out, err = exporter.out.read_text(), exporter.err.read_text()
    assert "Traceback" not in err and "StopRequested" not in err
    assert "sweep" not in out + err and "Job OK" not in out + err
    assert "Stopping worker and cron" in err


def test_verbose_shows_the_workers_lines(app, run):
    exporter = run("--verbose", EXPORTER_SWEEP_INTERVAL_SECONDS=1)
    wait_until(lambda: "exporter.jobs.sweep" in exporter.out.read_text(), what="a sweep to be printed")
