"""Real `exporter` processes for tests: start, stop, kill, wait."""
import os
import signal
import subprocess
import sys
import time

import requests


def process_env(app_config, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTER_")}
    env.update({
        "EXPORTER_DATABASE_URL": app_config["DATABASE_URL"], "EXPORTER_REDIS_URL": app_config["REDIS_URL"],
        "EXPORTER_SECRET_KEY": app_config["SECRET_KEY"], "EXPORTER_ALLOW_PRIVATE_TARGETS": "true",
        "EXPORTER_RETRY_BASE_SECONDS": "0.5", "EXPORTER_RETRY_MAX_SECONDS": "1",
    })
    env.update({k: str(v) for k, v in extra.items()})
    return env


def start(args, env, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "exporter", *args], env=env, start_new_session=True, **kwargs)


def stop(process, sig=signal.SIGTERM):
    if process.poll() is None:
        os.killpg(process.pid, sig)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


def kill_tree(process):
    """SIGKILL a worker and its children: RQ's work horse runs in a session of its own."""
    children = []
    for stat in os.listdir("/proc"):
        if stat.isdigit():
            try:
                fields = open(f"/proc/{stat}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == process.pid:
                children.append(int(stat))
    for pid in [process.pid, *children]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(5)


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def answers(url):
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


def wait_until(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def children(pid):
    """{pid: command line} of the live processes whose parent is pid."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            cmdline = open(f"/proc/{entry}/cmdline").read().replace("\0", " ").strip()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found[int(entry)] = cmdline
    return found


def alive(pid):
    """True while pid runs (a zombie waiting for its parent counts as gone)."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
