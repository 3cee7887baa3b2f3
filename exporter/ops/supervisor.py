"""`exporter run`'s children: started, watched, restarted with backoff when they die, stopped
together. Plain processes and threads, no Flask.

Each child runs in a process group of its own, so a terminal's Ctrl-C reaches only
`exporter run`, which then stops each child once with SIGTERM (a worker given two signals
stops cold, and RQ prints its StopRequested traceback).
"""
import os
import signal
import subprocess
import threading
import time

FIRST_DELAY = 1.0  # seconds before the first restart, doubling up to MAX_DELAY
MAX_DELAY = 30.0
STABLE_AFTER = 60.0  # a child that ran this long starts again from FIRST_DELAY
POLL_SECONDS = 0.2


class Child:
    """One supervised command: its process, and when it may start again."""

    def __init__(self, name, argv, env=None):
        self.name, self.argv, self.env = name, list(argv), env
        self.process = None
        self.started_at = 0.0
        self.delay = FIRST_DELAY
        self.restart_at = None  # set while waiting out a backoff
        self.restarts = 0

    @property
    def pid(self):
        return self.process.pid if self.process else None

    def alive(self):
        return self.process is not None and self.process.poll() is None


class Supervisor:
    """Start the children, restart any that dies (1 s doubling to 30 s, reset once a child has
    run a minute), and stop them all on stop(). `echo` prints the one line each event earns."""

    def __init__(self, children, echo=print, first_delay=FIRST_DELAY, max_delay=MAX_DELAY,
                 stable_after=STABLE_AFTER):
        self.children = list(children)
        self.echo = echo
        self.first_delay, self.max_delay, self.stable_after = first_delay, max_delay, stable_after
        for child in self.children:
            child.delay = first_delay
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = None

    # --- starting and watching ------------------------------------------------------------------

    def start(self):
        """Start every child now, then watch them from a background thread."""
        for child in self.children:
            self._spawn(child)
        self._thread = threading.Thread(target=self._watch, name="exporter-supervisor", daemon=True)
        self._thread.start()
        return self

    def _spawn(self, child):
        with self._lock:
            if self._stopping.is_set():
                return
            child.process = subprocess.Popen(child.argv, env=child.env, process_group=0)
            child.started_at, child.restart_at = time.monotonic(), None

    def _watch(self):
        while not self._stopping.wait(POLL_SECONDS):
            for child in self.children:
                self.check(child)

    def check(self, child, now=None):
        """One look at a child: note its death and plan a restart, or restart it when due."""
        now = time.monotonic() if now is None else now
        if child.restart_at is not None:
            if now >= child.restart_at:
                child.restarts += 1
                try:
                    self._spawn(child)
                except OSError as exc:  # cannot even start (a missing interpreter): keep trying
                    child.restart_at = now + child.delay
                    self.echo(f"{child.name} could not start ({exc}); trying again in {child.delay:g} s")
                    child.delay = min(child.delay * 2, self.max_delay)
            return
        code = child.process.poll() if child.process else None
        if code is None or self._stopping.is_set():
            return
        _signal_group(child, signal.SIGKILL)  # what it forked (RQ's scheduler) goes with it
        if now - child.started_at >= self.stable_after:
            child.delay = self.first_delay  # it ran a while: this death is news, not a crash loop
        delay = child.delay
        child.delay = min(child.delay * 2, self.max_delay)
        child.restart_at = now + delay
        # Popen's convention: a negative code is the signal that killed it ("code -9": SIGKILL)
        self.echo(f"{child.name} exited (code {code}); restarting in {delay:g} s")

    # --- stopping -------------------------------------------------------------------------------

    def stop(self, timeout=15.0):
        """SIGTERM each child once, wait for them up to `timeout` seconds, then SIGKILL what is
        left (with anything it forked: each child leads its own process group)."""
        with self._lock:
            self._stopping.set()
        if self._thread and self._thread is not threading.current_thread():
            self._thread.join(POLL_SECONDS * 5)
        running = [c for c in self.children if c.alive()]
        for child in running:
            _signal_group(child, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in running:
            try:
                child.process.wait(max(deadline - time.monotonic(), 0))
            except subprocess.TimeoutExpired:
                self.echo(f"{child.name} did not stop in {timeout:g} s; killing it")
                _signal_group(child, signal.SIGKILL)
                child.process.wait(5)
        for child in self.children:  # an RQ scheduler a worker forked, if the worker left it
            _signal_group(child, signal.SIGKILL)

    def kill(self):
        """Stop at once (a second Ctrl-C)."""
        self._stopping.set()
        for child in self.children:
            _signal_group(child, signal.SIGKILL)


def _signal_group(child, sig):
    if child.process is None:
        return
    try:
        os.killpg(child.process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
