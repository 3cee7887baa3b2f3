"""A partner's limits, shared by every worker on every machine through Redis: how many sends may
be in flight to a host at once, how many may start per second or minute, and how far the host
has asked us to slow down.

- **In flight**: each send holds a lease, a member of the host's sorted set scored by when it
  expires (LEASE_SECONDS past the send's timeout), so a worker that dies mid-send frees its
  leases when they expire, not never.
- **Rate**: GCRA with no burst (one "theoretical arrival time" per host). Chosen over a token
  bucket or fixed windows because a partner's "10 a second" must hold in *any* second, not only
  in aligned ones: a full bucket lets 2x the limit through in the second that spans a refill,
  and fixed windows do at their edges. GCRA is one key per host and one step of arithmetic; the
  `limits` library has it for Redis too, but one Lua script here checks the Retry-After block,
  the leases and the rate together, atomically, so a rate slot is never spent on a send that has
  no lease (and the script reads Redis's clock: machines' clocks may differ).
- **Adaptive back-off** (AIMD, as RudderStack's adaptive throttle): a 429, or a 503 with a
  Retry-After, halves the host's allowance (its rate, and its sends in flight, at least one)
  for every worker, and blocks it until the Retry-After passes; the allowance then comes back
  by RECOVER_STEP of the limit every RECOVER_SECONDS. Only a send that started after the last
  halving halves again: a burst of 429s to sends already in flight counts once.

A host with no limits set costs no Redis call per send until some worker slows it down (each
worker reads the slowed hosts every SLOWED_READ_SECONDS): the common case stays as cheap as it
was before limits existed.

When Redis does not answer, each worker applies the same limits on its own (LocalLimits) and
says so (`fallback`): with N workers a host may then get up to N times its limit.

No Flask and no database: the drain hands in each host's settings (HostLimit) and the engine
asks acquire() before a send and release() after it, or swap() to pass its lease on to its
next send to the same host (one round trip where release and acquire took two, and no wait
for another worker's turn in between).

Over 400 lines: the Lua scripts and the in-memory LocalLimits are one contract (the same rules,
with Redis and without it), kept side by side so that a change to one is seen in the other.
"""
import logging
import threading
import time
import uuid
from dataclasses import dataclass

log = logging.getLogger(__name__)

LEASE_SECONDS = 30  # past the send's own timeout: a lease outlives any send, not a dead worker by much
RECOVER_SECONDS = 10  # a slowed host gets RECOVER_STEP of its limit back this often
RECOVER_STEP = 0.1
MIN_FACTOR = 1 / 64  # halving stops here: a host is never slowed to nothing
STATE_TTL_SECONDS = 86400  # a host's state in Redis outlives a quiet day, not forever
RETRY_REDIS_SECONDS = 5  # while Redis is down, it is tried again this often
# A host with no limits set asks Redis only once some worker has slowed it down: each worker
# reads the set of such hosts this often (a send to any other host costs no round trip).
SLOWED_READ_SECONDS = 1.0
KEY = "exporter:limits:"


def key_prefix(queue_name="exporter"):
    """The Redis keys of one install's limits: installs sharing a Redis (each its own QUEUE_NAME)
    keep theirs apart. The default queue keeps the plain prefix, so an upgrade's workers and
    the ones before it count the same leases."""
    return KEY if queue_name in ("", "exporter") else f"{KEY}{queue_name}:"


@dataclass(frozen=True)
class HostLimit:
    """A host's settings: sends in flight across all workers (0: none), and `rate` sends per
    `per` seconds (0: none)."""
    in_flight: int = 0
    rate: int = 0
    per: int = 1

    @property
    def limited(self):
        return bool(self.in_flight or self.rate)


@dataclass
class Grant:
    ok: bool
    lease: str | None = None  # None: none kept (the host has no limit of sends at once), none to release
    wait: float = 0.0  # seconds before asking again makes sense (0: unknown, ask again soon)
    why: str = ""  # "retry-after", "in flight", "rate"


@dataclass
class HostState:
    """What the dashboard shows of a host: its allowance now and why."""
    host: str
    factor: float
    in_flight: int
    blocked_until: float | None  # epoch seconds
    reason: str
    changed_at: float | None


# A freed lease wakes one worker waiting for one (a blocking pop on the host's free list); the
# list is kept short and expires with the leases. Shared by _ACQUIRE (a swap refused) and _RELEASE.
_WAKE_ONE = """
local function wake_one(list, ttl_ms)
  redis.call('LPUSH', list, 1)
  redis.call('LTRIM', list, 0, 15)
  redis.call('PEXPIRE', list, ttl_ms)
end
"""

# KEYS: state hash, leases zset, free list. ARGV: lease, lease ms, in flight, rate, per ms, default
# in flight, recover ms, recover step, state ttl ms, the lease given back for this one ('' none: a
# swap when set). Returns {granted, wait ms, why, lease kept}. A lease given back and not taken
# again wakes one worker waiting for one, as _RELEASE does.
_ACQUIRE = _WAKE_ONE + """
local freed = ARGV[10] ~= '' and redis.call('ZREM', KEYS[2], ARGV[10]) == 1
local function refuse(wait, why)
  if freed then wake_one(KEYS[3], tonumber(ARGV[2])) end
  return {0, wait, why}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', KEYS[1], 'factor', 'changed', 'blocked', 'tat')
local factor, changed = tonumber(s[1]) or 1, tonumber(s[2]) or now
local blocked, tat = tonumber(s[3]) or 0, tonumber(s[4]) or 0
local recover_ms, step = tonumber(ARGV[7]), tonumber(ARGV[8])
if factor < 1 then
  local steps = math.floor((now - changed) / recover_ms)
  if steps > 0 then
    factor = math.min(1, factor + steps * step)
    changed = changed + steps * recover_ms
    redis.call('HSET', KEYS[1], 'factor', factor, 'changed', changed)
    if factor >= 1 then redis.call('HSET', KEYS[1], 'reason', '') end
  end
end
if blocked > now then return refuse(blocked - now, 'retry-after') end
local cap = tonumber(ARGV[3])
if cap == 0 and factor < 1 then cap = tonumber(ARGV[6]) end
if cap > 0 then
  cap = math.max(1, math.floor(cap * factor))
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= cap then return refuse(0, 'in flight') end
end
local rate = tonumber(ARGV[4])
if rate > 0 then
  local interval = tonumber(ARGV[5]) / (rate * factor)
  if tat > now then return refuse(math.ceil(tat - now), 'rate') end
  redis.call('HSET', KEYS[1], 'tat', now + interval)
end
if cap > 0 then
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]))
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[9]))
return {1, 0, '', cap > 0 and 1 or 0}
"""

# KEYS: state hash. ARGV: retry-after ms (0: none), ms since the send started, reason, ttl ms, min factor.
# Halves the allowance unless the send started before the last halving; blocks until Retry-After.
_SLOW_DOWN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', KEYS[1], 'factor', 'halved', 'blocked')
local factor, halved, blocked = tonumber(s[1]) or 1, tonumber(s[2]) or 0, tonumber(s[3]) or 0
local started = now - tonumber(ARGV[2])
if started >= halved then
  factor = math.max(factor / 2, tonumber(ARGV[5]))
  redis.call('HSET', KEYS[1], 'factor', factor, 'changed', now, 'halved', now, 'reason', ARGV[3])
end
local retry_after = tonumber(ARGV[1])
if retry_after > 0 and now + retry_after > blocked then
  redis.call('HSET', KEYS[1], 'blocked', now + retry_after)
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
return factor * 1000000
"""


# KEYS: leases zset, free list. ARGV: lease, ttl ms. A freed lease wakes one worker waiting for one.
_RELEASE = _WAKE_ONE + """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then wake_one(KEYS[2], tonumber(ARGV[2])) end
return 1
"""


class SharedLimits:
    """The limits of every host, kept in Redis for all workers; LocalLimits while it is away.
    Give it a connection that does not retry (connect()): a send must not wait out a client's
    backoff for a Redis that is gone."""

    def __init__(self, connection, default_in_flight=4, lease_seconds=LEASE_SECONDS, prefix=KEY):
        self.redis, self.key = connection, prefix
        self.default_in_flight = int(default_in_flight or 0)
        self.lease_ms = int(lease_seconds * 1000)
        self.local = LocalLimits(default_in_flight)
        self.fallback_since = None  # epoch seconds Redis stopped answering, None while it answers
        self._next_try = 0.0
        self._probe_lock = threading.Lock()
        self._settings = {}
        self._slowed, self._slowed_read = set(), 0.0  # hosts some worker slowed down, and when read
        self._acquire = connection.register_script(_ACQUIRE)
        self._slow_down = connection.register_script(_SLOW_DOWN)
        self._release = connection.register_script(_RELEASE)

    def configure(self, settings):
        """{host: HostLimit} for the hosts that have limits set; the others have none."""
        self._settings = dict(settings)
        self.local.configure(settings)

    def setting(self, host):
        return self._settings.get(host) or HostLimit()

    def acquire(self, host):
        if self._on_redis():
            limit = self.setting(host)
            if not limit.limited and host not in self._slowed_hosts():
                return Grant(True)  # nothing to check, nothing to keep
            try:
                return self._acquired(host, limit)
            except Exception as exc:
                self._lost(exc)
        return self.local.acquire(host)

    def swap(self, host, lease):
        """Give back a lease and ask for one for the next send to the host, in one round trip: a
        worker with more to send to the host passes its lease on, by the same rules as
        acquire() (a host slowed down meanwhile may refuse it; the lease then wakes a waiter)."""
        if lease is None or lease.startswith("local:"):
            self.release(host, lease)
            return self.acquire(host)
        if self._on_redis():
            try:
                return self._acquired(host, self.setting(host), given_back=lease)
            except Exception as exc:
                self._lost(exc)
        return self.local.acquire(host)  # the Redis lease expires on its own

    def _acquired(self, host, limit, given_back=""):
        lease = uuid.uuid4().hex
        granted, wait_ms, why, *kept = self._acquire(  # kept: only when granted
            keys=[self.key + host, self.key + host + ":leases", self.key + host + ":free"],
            args=[lease, self.lease_ms, limit.in_flight, limit.rate, limit.per * 1000, self.default_in_flight,
                  RECOVER_SECONDS * 1000, RECOVER_STEP, STATE_TTL_SECONDS * 1000, given_back])
        why = why.decode() if isinstance(why, bytes) else why
        if not granted:
            return Grant(False, None, wait_ms / 1000, why)
        return Grant(True, lease if kept and kept[0] else None)  # no lease kept: nothing to release

    def _slowed_hosts(self):
        """The hosts some worker slowed down lately, read again every SLOWED_READ_SECONDS: a 429
        that another worker got reaches this one's sends to a host with no limits that fast."""
        if time.monotonic() >= self._slowed_read:
            self._slowed_read = time.monotonic() + SLOWED_READ_SECONDS
            try:
                self._slowed = {h.decode() if isinstance(h, bytes) else h for h in self.redis.smembers(self.key + "hosts")}
            except Exception as exc:
                self._lost(exc)
        return self._slowed

    def release(self, host, lease):
        if lease is None:
            return
        if lease.startswith("local:"):
            return self.local.release(host, lease)
        try:
            self._release(keys=[self.key + host + ":leases", self.key + host + ":free"], args=[lease, self.lease_ms])
        except Exception as exc:  # the lease expires on its own
            self._lost(exc)

    def wait_for_lease(self, host, timeout):
        """Wait until some worker frees a lease of the host, or timeout seconds (at most 0.5: the
        connection's own timeout is 1 s): a blocking pop, not a poll, so waiting costs no CPU."""
        if self.fallback_since is not None:
            return self.local.wait_for_lease(host, timeout)
        try:
            self.redis.blpop([self.key + host + ":free"], timeout=max(min(timeout, 0.5), 0.01))
        except Exception as exc:
            self._lost(exc)

    def slow_down(self, host, retry_after, started, reason):
        """The host said slow down (a 429, or a 503 with Retry-After) to a send that started at
        `started` (epoch seconds): every worker halves its allowance and honours Retry-After."""
        self.local.slow_down(host, retry_after, started, reason)
        self._slowed = self._slowed | {host}  # this worker's next sends to it ask Redis at once
        if not self._on_redis():
            return
        try:
            ago = max(int((time.time() - started) * 1000), 0)  # Redis's clock decides, not this machine's
            self._slow_down(keys=[self.key + host], args=[int((retry_after or 0) * 1000), ago, reason[:200],
                                                     STATE_TTL_SECONDS * 1000, MIN_FACTOR])
            self.redis.sadd(self.key + "hosts", host)
        except Exception as exc:
            self._lost(exc)

    def _on_redis(self):
        if self.fallback_since is None:
            return True
        with self._probe_lock:  # one thread asks Redis again; the others go on on their own meanwhile
            if time.monotonic() < self._next_try:
                return False
            self._next_try = time.monotonic() + RETRY_REDIS_SECONDS
        try:
            self.redis.ping()
        except Exception:
            self._next_try = time.monotonic() + RETRY_REDIS_SECONDS
            return False
        log.warning("Redis answers again: host limits are shared by all workers again")
        self.fallback_since = None
        return True

    def _lost(self, exc):
        if self.fallback_since is None:
            log.warning("Redis did not answer (%s): each worker limits hosts on its own until it does",
                        type(exc).__name__)
            self.fallback_since = time.time()
        self._next_try = time.monotonic() + RETRY_REDIS_SECONDS


class LocalLimits:
    """The same limits in this process's memory: while Redis is away, and where there is no Redis."""

    def __init__(self, default_in_flight=4):
        self.default_in_flight = int(default_in_flight or 0)
        self._settings = {}
        self._lock = threading.Lock()
        self._leases = {}  # host: set of leases
        self._freed = threading.Condition(self._lock)
        self._state = {}  # host: [factor, changed, halved, blocked, tat, reason]
        self.fallback_since = None

    def configure(self, settings):
        self._settings = dict(settings)

    def setting(self, host):
        return self._settings.get(host) or HostLimit()

    def acquire(self, host):
        limit, now = self.setting(host), time.time()
        with self._lock:
            factor, changed, halved, blocked, tat, reason = state = self._recovered(host, now)
            if blocked > now:
                return Grant(False, None, blocked - now, "retry-after")
            cap = limit.in_flight or (self.default_in_flight if factor < 1 else 0)
            leases = self._leases.setdefault(host, set())
            if cap and len(leases) >= max(1, int(cap * factor)):
                return Grant(False, None, 0.0, "in flight")
            if limit.rate:
                if tat > now:
                    return Grant(False, None, tat - now, "rate")
                state[4] = now + limit.per / (limit.rate * factor)
            lease = f"local:{uuid.uuid4().hex}"
            if cap:
                leases.add(lease)
            return Grant(True, lease)

    def release(self, host, lease):
        with self._lock:
            self._leases.get(host, set()).discard(lease)
            self._freed.notify_all()

    def swap(self, host, lease):
        self.release(host, lease)
        return self.acquire(host)

    def wait_for_lease(self, host, timeout):
        with self._freed:
            self._freed.wait(timeout)

    def slow_down(self, host, retry_after, started, reason):
        now = time.time()
        with self._lock:
            state = self._recovered(host, now)
            if started >= state[2]:
                state[0:3] = [max(state[0] / 2, MIN_FACTOR), now, now]
                state[5] = reason
            if retry_after:
                state[3] = max(state[3], now + retry_after)

    def _recovered(self, host, now):  # with the lock held
        state = self._state.setdefault(host, [1.0, now, 0.0, 0.0, 0.0, ""])
        if state[0] < 1:
            steps = int((now - state[1]) // RECOVER_SECONDS)
            if steps > 0:
                state[0] = min(1.0, state[0] + steps * RECOVER_STEP)
                state[1] += steps * RECOVER_SECONDS
        return state


def connect(url, timeout=1.0):
    """A connection for the limits: short timeouts and no retries (redis-py's default retries
    with backoff took 8 s to give up on a refused port), so a dead Redis costs a send a second
    at most, once, before the worker limits on its own."""
    from redis import Redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))


def host_states(connection, hosts=(), prefix=KEY):
    """Each host's allowance now, from Redis, for the dashboard: the hosts given (those with
    limits set) and every host that was slowed down lately."""
    names = sorted(set(hosts) | {h.decode() if isinstance(h, bytes) else h
                                 for h in connection.smembers(prefix + "hosts")})
    pipe = connection.pipeline(transaction=False)
    for host in names:
        pipe.hmget(prefix + host, "factor", "changed", "blocked", "reason")
        pipe.zcount(prefix + host + ":leases", int(time.time() * 1000), "+inf")
    replies = pipe.execute()
    states = []
    for i, host in enumerate(names):
        factor, changed, blocked, reason = replies[2 * i]
        factor = float(factor) if factor else 1.0
        if factor < 1 and changed:  # the recovery the next acquire would apply
            steps = int((time.time() - float(changed) / 1000) // RECOVER_SECONDS)
            factor = min(1.0, factor + max(steps, 0) * RECOVER_STEP)
        blocked = float(blocked) / 1000 if blocked else None
        states.append(HostState(host, factor, int(replies[2 * i + 1]),
                                blocked if blocked and blocked > time.time() else None,
                                (reason.decode() if isinstance(reason, bytes) else reason or "") if factor < 1 else "",
                                float(changed) / 1000 if changed else None))
    return states
