"""A worker's sending machinery: a pool of sender threads, at most HOST_CONCURRENCY sends in
flight per host from this worker (or the host's own limit), the limits every worker shares
(limits.py: each send asks for a lease first, and a send that ends passes its lease on to the
worker's next job for the same host), and a recorder thread that writes finished sends to the
database in bulk.

Plain threads and queues, no Flask and no database: the drain (drain.py) claims and renders
deliveries, hands them here, and gives the recorder the function that stores results. The
engine outlives each drain job, so sends in flight go on while the worker takes its next job.

Over 400 lines: one class, because one lock guards what the drain asks (room, busy hosts) and
what the sender threads change (slots, waiting jobs, leases passed on, holds); split, each
half would need the other's state under that lock.
"""
import logging
import queue
import threading
import random
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from . import limits as limits_module

log = logging.getLogger(__name__)

DEFAULT_SEND_THREADS = 64
RECORD_BATCH = 500  # results written in one transaction at most
# Seconds the recorder waits for more results before writing: at 5 ms, two workers on ten
# 50 ms hosts wrote 2.8 results a transaction; at 50 ms, 11 (a delivery shows delivered that
# much later; its claim holds meanwhile).
RECORD_WAIT = 0.05
PER_HOST_CLAIM = 64  # jobs of one host a claim takes at most (more when HOST_CONCURRENCY is high)
# Jobs of one host in hand (sending and waiting) per slot before the drain claims no more of it:
# enough waiting that its slots stay busy while the next claim waits its turn on the database
# (with 2 per slot, two workers on ten 50 ms hosts sent 1.6 times one worker's rate; with 4, 1.8).
IN_HAND_PER_SLOT = 4
# Jobs in hand (sending and waiting) at most, per sender thread. At 2, ten hosts of 3 slots
# filled the room with "enough" each, and claims took the few jobs each finished send freed
# (7 to 10 rows a claim in bench_limits); at 4, 20 to 30.
IN_HAND_PER_THREAD = 4
# A send its host's shared limits hold back waits on its sender thread this long at most; a
# longer wait (a Retry-After, a slow rate) gives it back to the database, due when it may go.
LIMIT_WAIT_SECONDS = 2.0
SMALL_ROOM_SECONDS = 0.05  # while full hosts hold the room, what is left is offered this often
LEASE_POLL_SECONDS = 0.01  # how long a send waits for its host's limits when they say nothing of it
_REQUEUED = object()  # _lease's answer for a job put back to wait for a lease this worker's own sends hold
# A lease is passed on from send to send at most this many times in a row (half a second at
# 50 ms a send), then given back, and the worker's next job for the host queues behind the
# other workers' waiters: each gets its turn well within LIMIT_WAIT_SECONDS, instead of giving
# its jobs back to the database.
MAX_PASSES = 10


@dataclass
class Job:
    """One claimed delivery, ready to send: `send()` runs on a sender thread and returns what the
    recorder stores (None when the send recorded itself, as a day's file does)."""
    delivery_id: int
    host: str
    send: Callable[[], Any]
    context: Any = None
    started: float = field(default=0.0)
    handed: float = field(default=0.0)  # monotonic time it was handed to the engine
    not_before: float | None = None  # held back by its host's limits: due again then (epoch seconds)
    limited: str = ""  # why: "rate", "in flight", "retry-after"
    passed: int = 0  # how many sends in a row passed its lease on to it (Engine._pass_on)
    lease: str | None = None  # that lease
    behind: bool = False  # its worker's turn at the host's lease ended: it waits behind other workers


class Engine:
    def __init__(self, record: Callable[[list], None], host_concurrency=4, threads=DEFAULT_SEND_THREADS,
                 host_failed: Callable[[Any], bool] = None, hold_after=0, limits=None,
                 slowed: Callable[[Any], tuple | None] = None, give_back: Callable[[list], None] = None):
        self.host_concurrency = int(host_concurrency or 0)  # 0: no per-host limit
        # The limits shared by every worker (limits.SharedLimits), and what says a result asks the
        # host to be slowed down: (retry after seconds or None, why) or None.
        self.limits, self._slowed = limits, slowed
        self._give_back = give_back  # where jobs not started go when the engine stops
        self._acquiring = 0  # sends waiting on their thread for their host's limits
        # Hosts a send of this worker waits on the limits of: one waits, the others are not
        # started (several waiting for one freed lease cost a Redis round trip each per lease).
        self._contended = set()
        self.threads = max(int(threads), 1)
        # After `hold_after` sends in a row to one host fail (`host_failed(result)`), its waiting
        # jobs are not started: they go back to the drain, which gives their claims back.
        self._host_failed, self.hold_after = host_failed, int(hold_after or 0)
        self._failures = defaultdict(int)
        self._held = []
        self._record = record
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="exporter-send")
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._in_flight = defaultdict(int)
        self._waiting = defaultdict(deque)  # claimed jobs waiting for a free slot of their host
        self._full = set()  # hosts with enough in hand: left out of claims until down to half of it
        self._offered = 0.0  # when room was last offered
        self._results = queue.Queue()
        self._unrecorded = 0  # sent or sending, not yet stored
        self._recorder = threading.Thread(target=self._record_loop, name="exporter-record", daemon=True)
        self._stopping = False
        self._recorder.start()

    # --- what the drain asks ---------------------------------------------------------------

    def room(self):
        """How many more jobs to claim now, and the hosts that have enough in hand already.

        Room is offered in batches (at least half the threads' worth) while no host has enough:
        a claim costs a statement, the profiles' and events' loads and a commit, and claiming the
        one job each finished send made room for spent a third of a busy worker's CPU on claims.
        Once a host has enough (a slow one's backlog may fill most of the room), it is left out of
        claims until it is down to half of that (so a claim tops it up by several jobs, not by the
        one a finished send used), and what room is left goes to other hosts: at once when a host
        in hand is short, else every SMALL_ROOM_SECONDS, as a slow host must never keep the
        others waiting."""
        with self._lock:
            total = self.threads * IN_HAND_PER_THREAD - sum(self._in_flight.values()) - sum(len(q) for q in self._waiting.values())
            in_hand = set(self._in_flight) | set(self._waiting)
            self._full = {host for host in self._full if not self._hungry(host)}
            self._full |= {host for host in in_hand if self._cap(host) and self._in_hand(host) >= self._enough(host)}
            if total < self.threads // 2 and not self._small_room_now(in_hand):
                total = 0  # no claim for the room a send or two left: wait for a claim's worth
            if total > 0:
                self._offered = time.monotonic()
            return max(total, 0), set(self._full)

    def _small_room_now(self, in_hand):  # with the lock held; in_hand: the hosts with jobs in hand
        """Whether to offer less than a claim's worth of room while full hosts hold the rest: at
        once when a host in hand is down to half of enough, else every SMALL_ROOM_SECONDS (hosts
        with nothing in hand may have work due)."""
        if not self._full:
            return False
        if any(self._cap(host) and self._hungry(host) for host in in_hand):
            return True
        return time.monotonic() - self._offered >= SMALL_ROOM_SECONDS

    def per_host_claim(self):
        """The most jobs of one host a claim takes. Each claim costs a statement, a load and a
        commit, so a fast host needs many per claim; a slow host's backlog is kept from filling
        the claim by the cap, from waiting too long by take_back(), and from being tried in full
        while it fails by the hold."""
        return max(4 * self.host_concurrency, PER_HOST_CLAIM) if self.host_concurrency else None

    def submit(self, job: Job):
        with self._lock:
            if self._stopping:
                raise RuntimeError("the engine is stopping")
            self._unrecorded += 1
            job.handed = time.monotonic()
            cap = self._cap(job.host)
            if (cap and self._in_flight[job.host] >= cap) or job.host in self._contended:
                self._waiting[job.host].append(job)
                return
            self._start(job)

    def waiting(self):
        """Jobs claimed but not started: waiting for a slot of their host, for their host's
        limits, or held."""
        with self._lock:
            return sum(len(q) for q in self._waiting.values()) + len(self._held) + self._acquiring

    def take_waiting(self):
        """Remove and return every job not started (to give their claims back)."""
        return self.take_back(0.0)

    def take_back(self, older_than):
        """Remove and return the held jobs, and those waiting for a slot that were handed in more
        than `older_than` seconds ago: their claims go back before the sweeper thinks them lost."""
        cutoff = time.monotonic() - older_than
        with self._lock:
            jobs, self._held = self._held, []
            for host in list(self._waiting):
                queue_ = self._waiting[host]
                while queue_ and queue_[0].handed <= cutoff:
                    jobs.append(queue_.popleft())
                if not queue_:
                    del self._waiting[host]
            self._unrecorded -= len(jobs)
            if jobs:
                self._room.notify_all()
            return jobs

    def wait_for_room(self, timeout):
        with self._room:
            self._room.wait(timeout)

    def wait_for_a_host(self, busy, timeout):
        """Wait until one of the busy hosts could take more, or timeout seconds pass (other hosts'
        work may fall due meanwhile). A claim that leaves them out and finds nothing is a write
        transaction: made again at each finished send, it took the database from other workers."""
        deadline = time.monotonic() + timeout
        with self._room:
            while (left := deadline - time.monotonic()) > 0:
                if self._stopping or any(self._hungry(host) for host in busy):
                    return
                self._room.wait(left)

    def _in_hand(self, host):  # with the lock held
        return self._in_flight.get(host, 0) + len(self._waiting.get(host, ()))

    def _hungry(self, host):  # with the lock held
        """Down to half of enough: claimed for again. Not at the first finished send, so that a
        claim tops up a host by several jobs, not one (each claim costs statements and a commit)."""
        return self._in_hand(host) <= self._enough(host) // 2

    def _enough(self, host):
        """Jobs of one host in hand that make it busy: IN_HAND_PER_SLOT a slot, and never more than
        the room a host can fill before the room is offered in batches (few threads)."""
        return min(IN_HAND_PER_SLOT * self._cap(host), self.threads * IN_HAND_PER_THREAD - self.threads // 2)

    def _cap(self, host):
        """Sends in flight to the host from this worker: its own limit when it has one (no more
        can go anyway, and a generous one is not cut to the default), else HOST_CONCURRENCY."""
        if self.limits is not None:
            return self.limits.setting(host).in_flight or self.host_concurrency
        return self.host_concurrency

    def idle(self, timeout=None):
        """Wait until every job handed in is sent and recorded; True when it is."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._room:
            while self._unrecorded > len(self._held):  # held jobs wait for the drain to give them back
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._room.wait(left if left is not None else 0.1)
            return True

    def stop(self, timeout=None):
        """Finish the sends in hand and record them; nothing new is accepted."""
        with self._lock:
            self._stopping = True
        done = self.idle(timeout)
        if (left := self.take_waiting()) and self._give_back:
            self._give_back(left)
        self._pool.shutdown(wait=done, cancel_futures=not done)
        self._results.put(None)
        self._recorder.join(5)
        return done

    # --- sender threads ----------------------------------------------------------------------

    def _start(self, job):  # with the lock held
        self._in_flight[job.host] += 1
        self._pool.submit(self._run, job)

    def _run(self, job):
        while job is not None:  # a send that passes its lease on runs the next one on this thread
            job = self._run_one(job)

    def _run_one(self, job):
        """Send one job; the job to send next on this thread, if it passed its lease on to one."""
        passes = job.passed
        if passes:  # its host's last send passed its lease on to it
            lease, job.passed, job.lease = job.lease, 0, None
        else:
            lease = self._lease(job) if self.limits is not None else None
        if lease is _REQUEUED:
            return None
        if lease is False:
            return self._hold_limited(job)
        job.started = time.time()
        try:
            result = job.send()
        except BaseException:  # sends catch their own failures; this is a last guard: the claim expires
            log.exception("delivery %s: the send failed outside its handler", job.delivery_id)
            result = None
        slowed = self.limits is not None and self._slow_down(job, result)
        following = None
        with self._lock:
            self._leave(job.host)
            hold = self._holding(job.host, result)
            waiting = self._waiting.get(job.host)
            if waiting and hold:
                self._held.extend(self._waiting.pop(job.host))
            elif waiting and lease is not None and not slowed and passes < MAX_PASSES:
                following = self._next_of(job.host)  # its lease is passed on to it, below
            elif waiting and job.host not in self._contended:
                if lease is not None and not slowed:  # this worker's turn is over: the lease goes back
                    self._waiting[job.host][0].behind = True
                self._start_next(job.host)
            if following is None or self._hungry(job.host):  # a pass on leaves the drain nothing new
                self._room.notify_all()
        if following is not None:  # the next send first, then the recorder
            following = self._pass_on(following, lease, passes + 1)
        elif lease is not None:
            self.limits.release(job.host, lease)
        if result is None:
            self._recorded(1)
        else:
            self._results.put(result)
        return following

    def _leave(self, host):  # with the lock held
        self._in_flight[host] -= 1
        if not self._in_flight[host]:
            del self._in_flight[host]

    def _start_next(self, host):  # with the lock held
        self._pool.submit(self._run, self._next_of(host))

    def _next_of(self, host):  # with the lock held
        """The host's next waiting job, counted in flight."""
        waiting = self._waiting[host]
        job = waiting.popleft()
        if not waiting:
            del self._waiting[host]
        self._in_flight[host] += 1
        return job

    def _pass_on(self, job, lease, passes):
        """The host's next job, to run with the lease of the send that just ended: one round trip
        to the limits (release and acquire in one), and no other worker's waiter woken in
        between. A host slowed down meanwhile may refuse it: the job then asks as any other does
        (None: it waits, as one of this worker's sends waits for a lease already)."""
        grant = self.limits.swap(job.host, lease)
        if grant.ok:
            job.passed, job.lease = passes, grant.lease
            return job
        with self._lock:
            if job.host in self._contended:
                self._put_back(job)
                return None
        return job

    def _put_back(self, job):  # with the lock held
        """A job counted in flight goes back to the front of its host's waiting jobs."""
        self._leave(job.host)
        self._waiting[job.host].appendleft(job)
        self._room.notify_all()

    def _lease(self, job):
        """Wait on this thread for the host's shared limits to let the send go: its lease, or
        False when the wait would be long (the job is then given back, due when it may go)."""
        deadline = time.monotonic() + LIMIT_WAIT_SECONDS
        if job.behind:  # wait for a lease in turn, after the waiters of other workers
            grant, job.behind = limits_module.Grant(False, None, 0.0, "in flight"), False
        else:
            grant = self.limits.acquire(job.host)
        if grant.ok:
            return grant.lease
        with self._lock:
            self._acquiring += 1  # the drain waits for it, then for it to be held (_hold_limited)
            self._contended.add(job.host)
        while True:
            left = deadline - time.monotonic()
            if self._stopping or left <= 0 or grant.wait > left:
                with self._lock:
                    if grant.why == "in flight" and not self._stopping and self._in_flight[job.host] > 1:
                        # This worker's other sends to the host hold leases, and pass them on to
                        # its waiting jobs as they end: this one waits among them, not in the database.
                        self._acquiring -= 1
                        self._contended.discard(job.host)
                        self._put_back(job)
                        return _REQUEUED
                job.not_before, job.limited = time.time() + max(grant.wait, LEASE_POLL_SECONDS), grant.why
                return False
            if grant.why == "in flight":  # until a send to the host ends, on any worker
                self.limits.wait_for_lease(job.host, left)
            else:
                time.sleep(grant.wait or LEASE_POLL_SECONDS * (0.5 + random.random()))
            grant = self.limits.acquire(job.host)
            if grant.ok:
                with self._lock:
                    self._acquiring -= 1
                    self._contended.discard(job.host)
                    cap = self._cap(job.host)
                    if self._waiting.get(job.host) and not (cap and self._in_flight[job.host] >= cap):
                        self._start_next(job.host)  # it waits for the next lease in turn
                return grant.lease

    def _slow_down(self, job, result):
        """Whether the host asked to slow down; if so it is slowed for every worker here, before
        the send's lease goes back (no send takes the lease in between) and is not passed on."""
        try:
            slowed = self._slowed(result) if (self._slowed and result is not None) else None
            if slowed:
                self.limits.slow_down(job.host, slowed[0], job.started, slowed[1])
            return bool(slowed)
        except Exception:  # the lease still goes back
            log.exception("delivery %s: could not slow its host down", job.delivery_id)
            return True

    def _hold_limited(self, job):
        """A send its host's limits hold back for long: it and the host's waiting jobs go back
        to the drain, which gives their claims back due at the time the limits name. No try is
        counted and nothing is failed: a limited send is not a failed one."""
        with self._lock:
            self._acquiring -= 1
            self._contended.discard(job.host)
            self._leave(job.host)
            held = [job, *self._waiting.pop(job.host, ())]
            for other in held[1:]:
                other.not_before, other.limited = job.not_before, job.limited
            self._held.extend(held)
            self._room.notify_all()

    def _holding(self, host, result):  # with the lock held
        """Count the host's failures in a row; True when its waiting jobs are to be held."""
        if not self.hold_after or self._host_failed is None:
            return False
        if result is not None and self._host_failed(result):
            self._failures[host] += 1
        else:
            self._failures.pop(host, None)
        return self._failures.get(host, 0) >= self.hold_after

    # --- the recorder --------------------------------------------------------------------------

    def _recorded(self, n):
        with self._lock:
            self._unrecorded -= n
            self._room.notify_all()

    def _record_loop(self):
        while True:
            first = self._results.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + RECORD_WAIT
            # A host's failure is written at once: the write opens its circuit, which must not
            # wait for the batch (more sends to a down host meanwhile).
            while len(batch) < RECORD_BATCH and not self._failed(batch[-1]):
                try:
                    item = self._results.get(timeout=max(deadline - time.monotonic(), 0))
                except queue.Empty:
                    break
                if item is None:
                    self._results.put(None)  # stop after this batch
                    break
                batch.append(item)
            self._store(batch)
            self._recorded(len(batch))

    def _failed(self, result):
        return self._host_failed is not None and self._host_failed(result)

    def _store(self, batch):
        """Keep trying: an unrecorded send is sent again once its claim expires, so a database
        that is down for a moment must not cost a resend."""
        delay = 0.1
        for _ in range(30):
            try:
                self._record(batch)
                return
            except Exception:
                log.exception("could not record %s sends; trying again in %.1f s", len(batch), delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        log.error("gave up recording %s sends: their claims expire and they are sent again", len(batch))
