"""What the benches share: a temporary Exporter install run as users run it, the receiver,
bare clients, and timing helpers.

An Instance is a temp folder with its own database (SQLite there, or the PostgreSQL database of
EXPORTER_BENCH_DATABASE_URL, which is WIPED), its own Redis (embedded, or EXPORTER_BENCH_REDIS_URL
with a queue name of its own), migrated and given an intake token by the `exporter` command.
Its web app is waitress serving create_app() exactly as `exporter run` does, its workers are
`exporter worker` processes. The benches only use the public surface: the `exporter` commands,
POST /intake/events, the profiles JSON, and the tables deliveries, attempts and events.
"""
import argparse
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from urllib.parse import urlencode

import requests
from sqlalchemy import create_engine, text

import cpu

HERE = os.path.dirname(os.path.abspath(__file__))
EXPORTER = os.path.join(os.path.dirname(sys.executable), "exporter")  # the venv's console script
MAPPINGS = [{"export_name": "first_name", "field": "firstName"},
            {"export_name": "order_id", "field": "orderId"},
            {"export_name": "list_id", "field": "static", "static_value": "400"}]


# --- figures --------------------------------------------------------------------------------

def median(values):
    return statistics.median(values)


def percentile(values, p):
    """The nearest-rank percentile: p99 of 1,000 values is the 990th smallest."""
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * p // 100) - 1)]


def interleave(rounds, exporter, baseline):
    """Run the two sides in rounds A B, B A, A B ...; each side's results in a list."""
    results = {exporter: [], baseline: []}
    for r in range(rounds):
        for side in (exporter, baseline) if r % 2 == 0 else (baseline, exporter):
            results[side].append(side())
    return results[exporter], results[baseline]


def rate(value):
    """A rate for the eye: whole numbers, with one decimal below 100."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def row(what, exporter, baseline, unit, names=("Exporter", "baseline")):
    """One summary line: the medians and their ratio (higher is better for the Exporter)."""
    ratio = median(exporter) / median(baseline)
    print(f"{what}: {names[0]} {rate(median(exporter))} {unit}, {names[1]} {rate(median(baseline))} {unit}, "
          f"ratio {ratio:.3f}")
    return ratio


def utc_now_iso():
    return datetime.now(timezone.utc).isoformat()


def epoch(value):
    """A naive-UTC datetime from the database (SQLite hands text back to raw SQL) as a Unix time."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc).timestamp()


# --- events and profiles ----------------------------------------------------------------------

def event(key, order_id, campaign_id=259):
    """A partial as the CRM posts it; without occurred_at, it occurred (and is due) when received."""
    return {"id": key, "type": "partial", "order": {
        "orderId": order_id, "customerId": order_id, "campaignId": campaign_id, "campaignName": "Bench",
        "firstName": "Jane", "lastName": "Doe", "emailAddress": f"c{order_id}@example.com",
        "phoneNumber": "5552013344", "orderDate": "2026-11-27 14:03:22",
        "products": [{"productId": 33, "productName": "Keto 30ct", "price": "49.95", "qty": 1}]}}


def postback(name, url, campaigns=(), delay_minutes=0):
    """A postback profile (GET, MAPPINGS as the query) for partials of these campaigns (all when empty)."""
    return {"name": name, "export_type": "postback", "active": True, "delay_minutes": delay_minutes,
            "settings": {"url": url, "method": "GET"}, "mappings": MAPPINGS,
            "routes": [{"customer_types": ["partial"], "campaigns": list(campaigns), "products": []}]}


def dispatch_profiles(fast, slow):
    """"Fast" (campaign 259) sends to the fast receiver; "Host k" (campaign 1000+k) to host k of the slow one."""
    return [postback("Fast", fast.url(), campaigns=[259])] + [
        postback(f"Host {k}", slow.url(host=k), campaigns=[1000 + k]) for k in range(1, slow.hosts + 1)]


def sent_path(order_id):
    """The path and query the postback sends for an event of `event()`."""
    return "/p?" + urlencode([("first_name", "Jane"), ("order_id", order_id), ("list_id", "400")])


ROUND = itertools.count(1)


def round_events(n, hosts=0):
    """n partials with ids new to this run; with hosts, spread over campaigns 1001 .. 1000+hosts
    (a profile per host routes one each), else all of campaign 259."""
    r = next(ROUND)
    return [event(f"r{r}-{i}", r * 1_000_000 + i, campaign_id=1001 + i % hosts if hosts else 259)
            for i in range(n)]


def host_of(event_):
    """127.0.0.<host> for campaign 1000+host; campaign 259 goes to 127.0.0.1."""
    campaign = event_["order"]["campaignId"]
    return campaign - 1000 if campaign > 1000 else 1


def bare_requests(receiver, events):
    """The (url, Idempotency-Key) pairs a bare client sends for the events: the postback's URLs."""
    return [(receiver.url(host_of(e), sent_path(e["order"]["orderId"])), str(i)) for i, e in enumerate(events)]


# --- processes ------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, process, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def stop(*processes):
    """TERM (a worker finishes what it holds), then KILL what is still there after 15 s."""
    for p in processes:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in processes:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class Receiver:
    """bench/receiver.py in a process of its own, on 127.0.0.1 .. 127.0.0.<hosts>."""

    def __init__(self, hosts=1, delay=0.0):
        self.hosts = hosts
        self.process = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "receiver.py"), "--hosts", str(hosts), "--delay", str(delay)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.port = int(self.process.stdout.readline())

    def url(self, host=1, path="/p"):
        return f"http://127.0.0.{host}:{self.port}{path}"

    def take(self):
        """What arrived since the last take: {"arrivals": [[time, host, path, key], ...], "max_in_flight"}."""
        return requests.get(self.url(path="/_bench/arrivals"), timeout=30).json()

    def close(self):
        self.process.stdin.close()
        stop(self.process)


def check_delivered(instance, after_id, arrivals, expected_paths=None):
    """What arrived is what the database marks delivered (deliveries above after_id), each once by
    its Idempotency-Key, each with its successful attempt recorded; and, when given, the URLs."""
    delivered = set(instance.delivered_ids(after_id))
    keys = Counter(int(a[3]) for a in arrivals)
    twice = [k for k, n in keys.items() if n > 1]
    if twice:
        raise AssertionError(f"{len(twice)} deliveries arrived more than once, e.g. {twice[:5]}")
    if set(keys) != delivered:
        raise AssertionError(f"arrived {len(keys)} keys, the database marks {len(delivered)} delivered; "
                             f"{len(set(keys) ^ delivered)} differ")
    recorded = instance.scalar("SELECT count(DISTINCT delivery_id) FROM attempts WHERE delivery_id > :i AND ok",
                               i=after_id)
    if recorded != len(delivered):
        raise AssertionError(f"{recorded} successful attempts recorded for {len(delivered)} deliveries")
    if expected_paths is not None and Counter(a[2] for a in arrivals) != Counter(expected_paths):
        raise AssertionError("the URLs that arrived are not the ones the events should make")


# --- a temporary install -------------------------------------------------------------------------

def engine_url(url):
    """The SQLAlchemy URL create_app makes of a DATABASE_URL (psycopg 3 for PostgreSQL)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


class Instance:
    """A fresh Exporter: folder, database, Redis, token; web server and workers on demand."""

    def __init__(self, sqlite=False, host_concurrency=4, database_url=None, keep=False):
        """database_url: that database instead of EXPORTER_BENCH_DATABASE_URL; keep: it is not
        wiped (a big database built once, bigdb.py), only migrated."""
        self.folder = tempfile.mkdtemp(prefix="exporter-bench-")
        self.redis = None
        redis_url = os.environ.get("EXPORTER_BENCH_REDIS_URL")
        if not redis_url:
            from exporter.delivery.queue import EmbeddedRedis

            self.redis = EmbeddedRedis().start()
            redis_url = self.redis.url
        database_url = database_url or (None if sqlite else os.environ.get("EXPORTER_BENCH_DATABASE_URL"))
        database_url = database_url or f"sqlite:///{self.folder}/exporter.sqlite"
        self.engine = create_engine(engine_url(database_url))
        if not database_url.startswith("sqlite") and not keep:
            with self.engine.begin() as conn:  # a bench database starts empty
                conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        self.database = "SQLite" if database_url.startswith("sqlite") else "PostgreSQL"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTER_")}
        self.env.update(EXPORTER_DATABASE_URL=database_url, EXPORTER_REDIS_URL=redis_url,
                        EXPORTER_SECRET_KEY="bench-" + uuid.uuid4().hex, EXPORTER_ALLOW_PRIVATE_TARGETS="true",
                        EXPORTER_HOST_CONCURRENCY=str(host_concurrency), EXPORTER_INSTANCE_PATH=self.folder,
                        EXPORTER_QUEUE_NAME="bench-" + uuid.uuid4().hex[:8])
        self.processes, self.started = [], itertools.count()
        self.session = requests.Session()
        self.web_url = None
        try:
            self.exporter("migrate")
            self.token = self.exporter("create-token", "bench").strip().splitlines()[-1]
        except Exception:
            self.close()
            raise

    def exporter(self, *args):
        """Run an `exporter` command; its output."""
        done = subprocess.run([EXPORTER, *args], env=self.env, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"exporter {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def import_profiles(self, profiles):
        path = os.path.join(self.folder, "profiles.json")
        with open(path, "w") as f:
            json.dump({"version": 1, "profiles": profiles}, f)
        self.exporter("profiles", "import", path)

    def start(self, name, *args):
        """A process of this install; its output goes to a log in the folder (shown on failure)."""
        log = open(os.path.join(self.folder, f"{name}-{next(self.started)}.log"), "w")
        process = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.processes.append(process)
        return process

    def log_tails(self, lines=15):
        tails = []
        for name in sorted(n for n in os.listdir(self.folder) if n.endswith(".log")):
            with open(os.path.join(self.folder, name), errors="replace") as f:
                tails.append(f"--- {name}\n" + "".join(f.readlines()[-lines:]))
        return "\n".join(tails)

    def start_web(self, app="exporter"):
        """waitress serving create_app() as `exporter run` does (or the bare baseline app); its URL."""
        port = free_port()
        process = self.start(f"web-{app}", sys.executable, os.path.join(HERE, "serve.py"), app, str(port))
        wait_for_port(port, process)
        url = f"http://127.0.0.1:{port}"
        if app == "exporter":
            self.web_url = url
        return url

    def start_workers(self, n=1):
        return [self.start("worker", EXPORTER, "worker") for _ in range(n)]

    def start_cron(self):
        return self.start("cron", EXPORTER, "cron")

    def stop(self, processes):
        stop(*processes)
        self.processes = [p for p in self.processes if p not in processes]

    def close(self):
        stop(*self.processes)
        self.session.close()
        self.engine.dispose()
        if self.redis:
            self.redis.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    # --- the intake ------------------------------------------------------------------------

    def post(self, body, session=None, url=None):
        """POST one intake body (a dict, or its JSON already encoded); the counts it answers with
        (202 or an AssertionError)."""
        encoded = body if isinstance(body, bytes) else json.dumps(body).encode()
        answer = (session or self.session).post(
            (url or self.web_url) + "/intake/events", data=encoded, timeout=120,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        if answer.status_code != 202:
            raise AssertionError(f"intake answered {answer.status_code}: {answer.text[:300]}")
        return answer.json()

    def seed(self, events, batch=1000):
        """Post events in bodies of `batch` (the intake's maximum); the deliveries it made."""
        made = 0
        for start in range(0, len(events), batch):
            made += self.post({"events": events[start:start + batch]})["deliveries"]
        return made

    # --- the database ---------------------------------------------------------------------------

    def scalar(self, sql, **params):
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def rows(self, sql, **params):
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).all()

    def last_delivery_id(self):
        return self.scalar("SELECT coalesce(max(id), 0) FROM deliveries")

    def wait_delivered(self, after_id, count, timeout):
        """Poll until `count` deliveries above after_id are delivered; the time.time() it saw that."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # `status || ''` keeps the status index out: a scan of this round's rows by id costs the
            # machine a third of what the index's scan of every delivered row did, 80 times a second
            done = self.scalar("SELECT count(*) FROM deliveries WHERE id > :i AND status || '' = 'delivered'",
                               i=after_id)
            if done >= count:
                return time.time()
            time.sleep(0.01)
        raise AssertionError(f"{done} of {count} delivered after {timeout} s\n{self.log_tails()}")

    def delivered_ids(self, after_id):
        return [r[0] for r in self.rows("SELECT id FROM deliveries WHERE id > :i AND status = 'delivered'",
                                        i=after_id)]


# --- a dispatch round, and the bare clients -------------------------------------------------------

def exporter_round(instance, receiver, events, workers=1):
    """Post the events with no worker running, start the workers, wait until the database shows
    every delivery delivered. Timed from the first arrival at the receiver (a worker's start-up
    is not sending); returns (deliveries/s, start-up s, most in flight on one host, CPU): CPU is
    (cores busy on the machine, the workers' CPU ms per delivery) over that same window."""
    after = instance.last_delivery_id()
    made = instance.seed(events)
    assert made == len(events), f"{made} deliveries made of {len(events)} events"
    receiver.take()
    started = time.time()
    processes = instance.start_workers(workers)
    sampler = cpu.Sampler([p.pid for p in processes])
    try:
        done = instance.wait_delivered(after, made, timeout=120 + made / 5)
    finally:
        sampler.stop()
        instance.stop(processes)
    got = receiver.take()
    check_delivered(instance, after, got["arrivals"], [sent_path(e["order"]["orderId"]) for e in events])
    first = min(a[0] for a in got["arrivals"])
    busy, worker_seconds = sampler.window(first, done)
    return made / (done - first), first - started, max(got["max_in_flight"].values()), \
        (busy, worker_seconds / made * 1000)


def get(session, url, key):
    answer = session.get(url, headers={"Idempotency-Key": key, "User-Agent": "bench"}, timeout=30)
    if answer.status_code != 200 or answer.content != b"OK":
        raise AssertionError(f"receiver answered {answer.status_code}")


def session_loop(receiver, requests_):
    """One requests.Session sending (url, key) pairs one after another; requests/s."""
    receiver.take()
    started = time.perf_counter()
    with requests.Session() as session:
        for url, key in requests_:
            get(session, url, key)
    rate = len(requests_) / (time.perf_counter() - started)
    check_bare(receiver, requests_)
    return rate


def drain_concurrently(lists, clients, send):
    """For each list, `clients` threads with a requests.Session each, calling send(session, item)
    until that list runs out; the seconds it took. A failed send fails the whole run."""
    errors = []

    def drain(pending):
        with requests.Session() as session:
            while not errors:
                try:
                    item = pending.popleft()
                except IndexError:
                    return
                try:
                    send(session, item)
                except Exception as exc:
                    errors.append(exc)

    threads = [threading.Thread(target=drain, args=(pending,))
               for pending in map(deque, lists) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started


def concurrent_clients(receiver, requests_, per_host):
    """`per_host` requests.Sessions in flight per host, as many connections as one worker may
    hold; requests/s."""
    by_host = {}
    for url, key in requests_:
        by_host.setdefault(url.split("/")[2], []).append((url, key))
    receiver.take()
    seconds = drain_concurrently(by_host.values(), per_host, lambda session, pair: get(session, *pair))
    check_bare(receiver, requests_)
    return len(requests_) / seconds


def check_bare(receiver, requests_):
    arrived = Counter(a[2] for a in receiver.take()["arrivals"])
    if arrived != Counter("/" + url.split("/", 3)[3] for url, _ in requests_):
        raise AssertionError("the bare client's requests did not all arrive once")


# --- latency: events posted at a steady rate while a worker runs --------------------------------

WARM_UP_CAMPAIGN = 1


def latency_profiles(receiver, delay_minutes):
    """"Bench" (campaign 259) with the Export Delay; "Warm-up" (campaign 1) sends at once."""
    return [postback("Bench", receiver.url(), campaigns=[259], delay_minutes=delay_minutes),
            postback("Warm-up", receiver.url(), campaigns=[WARM_UP_CAMPAIGN])]


def warm_up(instance, receiver):
    """One event through intake, worker and receiver: everything is up and warm."""
    after = instance.last_delivery_id()
    instance.post(event(f"warm-up-{next(ROUND)}", 1, campaign_id=WARM_UP_CAMPAIGN))
    instance.wait_delivered(after, 1, timeout=120)
    receiver.take()


def post_paced(instance, events, rate, clients=8):
    """Post the events one per POST, `rate` a second, each with occurred_at = its moment in that
    schedule, as a CRM would; a pool of clients keeps the pace when one POST is slow, and an
    intake slower than the rate shows as latency."""
    local = threading.local()

    def send(e):
        if not hasattr(local, "session"):
            local.session = requests.Session()
        instance.post(e, session=local.session)

    with ThreadPoolExecutor(clients) as pool:
        started, futures = time.monotonic(), []
        for i, e in enumerate(events):
            time.sleep(max(0.0, started + i / rate - time.monotonic()))
            futures.append(pool.submit(send, {**e, "occurred_at": utc_now_iso()}))
        for f in futures:
            f.result()


def arrival_times(instance, receiver, after_id, count, timeout):
    """Wait until `count` deliveries above after_id are delivered; check what arrived; for each
    delivery (arrival - occurred_at, arrival - due_at) in seconds."""
    instance.wait_delivered(after_id, count, timeout)
    arrivals = receiver.take()["arrivals"]
    check_delivered(instance, after_id, arrivals)
    arrived = {int(a[3]): a[0] for a in arrivals}
    rows = instance.rows("SELECT d.id, e.occurred_at, d.due_at FROM deliveries d JOIN events e ON e.id = d.event_id "
                         "WHERE d.id > :i", i=after_id)
    return [(arrived[i] - epoch(occurred), arrived[i] - epoch(due)) for i, occurred, due in rows]


# --- the dispatch benches' common set-up (bench_dispatch.py, bench_workers.py) ---------------------

def dispatch_arguments(description, n_hosts, n=2000):
    """The options both dispatch benches take; n, n_hosts: their default deliveries a round on the
    fast receiver and on the slow hosts."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--n", type=int, default=n, help="deliveries per round, fast receiver")
    parser.add_argument("--n-hosts", type=int, default=n_hosts, help="deliveries per round, 10 slow hosts")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--delay", type=float, default=0.05, help="the slow hosts' answer time, seconds")
    parser.add_argument("--host-concurrency", type=int, default=4)
    return parser.parse_args()


@contextlib.contextmanager
def dispatch_setup(args):
    """(instance, fast receiver, slow hosts): the dispatch profiles imported and the web app
    started; all three closed afterwards."""
    fast = Receiver()
    slow = Receiver(hosts=args.hosts, delay=args.delay)
    instance = Instance(host_concurrency=args.host_concurrency)
    try:
        instance.import_profiles(dispatch_profiles(fast, slow))
        instance.start_web()
        yield instance, fast, slow
    finally:
        instance.close()
        fast.close()
        slow.close()
