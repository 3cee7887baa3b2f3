"""The dispatch and intake rows on a big database and with a CRM's mix, each next to its twin on
an empty database, in the same run (PostgreSQL).

    EXPORTER_BENCH_BIGDB_URL=postgresql://.../bigdb EXPORTER_BENCH_DATABASE_URL=postgresql://.../empty \\
    .venv/bin/python bench/bench_bigdb.py [--deliveries 1000000] [--backlog 20000] [--rounds 3]

The big database (EXPORTER_BENCH_BIGDB_URL) is built by bigdb.py the first time (minutes) and
kept; what an earlier run left waiting in it is cancelled first. The empty one
(EXPORTER_BENCH_DATABASE_URL) is wiped at each start. Both get the same profiles (bigdb.crm_profiles).
Rows, each a warm-up then interleaved rounds (the order turns each round), medians:
  dispatch: one `exporter worker` draining a backlog of partials, big against empty;
  intake, 1,000-event bodies of the mix: big against empty; on each, the mix against the same
      bodies without sales (partials in their place) and against an executemany of the same rows;
  intake, one event per POST of the mix, 8 clients: big against empty, and against the bare endpoint.
No worker runs during the intake rows: their deliveries wait, as a backlog grows (cancelled at the end).
"""
import argparse
import json
import os
import time
import uuid
from datetime import datetime, timezone

from sqlalchemy import MetaData, Table

import bigdb
import cpu
import harness

RUN = uuid.uuid4().hex[:6]  # event ids new to a kept database


def interleave(rounds, sides):
    """Each side once a round, the order turned each round; each side's results by name."""
    names = list(sides)
    results = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            results[name].append(sides[name]())
    return results


def printed(label, measure, unit):
    def run():
        value = measure()
        print(f"  {label:<28} {harness.rate(value):>8} {unit}")
        return value
    return run


def fresh(events):
    for e in events:
        e["id"] = f"{RUN}-{e['id']}"
    return events


# --- dispatch ---------------------------------------------------------------------------------------

def dispatch(instance, receiver, n):
    rate, startup, _, (busy, per) = harness.exporter_round(instance, receiver, fresh(harness.round_events(n)))
    return rate


# --- intake -----------------------------------------------------------------------------------------

def executemany(instance, n, repeats=3):
    """bench_intake.executemany's baseline (n new events' rows, one executemany, one transaction;
    rows/s), its rows left in place: deleting events from the big database checks each one's
    history entries, whose event_id has no index (a scan of 1.25 M rows per event).
    The median of `repeats` inserts: one insert of 5,000 rows takes 0.1-0.3 s, short enough that
    a neighbour's burst on this shared machine moved it between 14,600 and 43,400 rows/s."""
    return harness.median([_executemany(instance, n) for _ in range(repeats)])


def _executemany(instance, n):
    table = Table("events", MetaData(), autoload_with=instance.engine)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    rows = [{"event_key": f"bare-{RUN}-" + e["id"], "type": e["type"], "occurred_at": now, "received_at": now,
             "customer_id": None, "order_id": e["order"]["orderId"], "campaign_id": e["order"]["campaignId"],
             "order": e["order"], "card_number": None, "is_test": False} for e in harness.round_events(n)]
    started = time.perf_counter()
    with instance.engine.begin() as conn:
        conn.execute(table.insert(), rows)
    return n / (time.perf_counter() - started)


def check_stored(instance, events):
    keys = [e["id"] for e in events]
    stored = 0
    for start in range(0, len(keys), 500):
        part = {f"k{i}": k for i, k in enumerate(keys[start:start + 500])}
        stored += instance.scalar(f"SELECT count(*) FROM events WHERE event_key IN "
                                  f"({', '.join(':' + name for name in part)})", **part)
    assert stored == len(events), f"{stored} events stored of {len(events)} posted"


def bodies_posts(instance, n, sales):
    """n events of the mix (or without its sales) posted 1,000 a POST by one client; events/s."""
    bodies = [fresh(body) for body in bigdb.crm_bodies(n, sales=sales)]
    encoded = [json.dumps({"events": body}).encode() for body in bodies]
    started = time.perf_counter()
    for body in encoded:
        instance.post(body)
    rate = n / (time.perf_counter() - started)
    check_stored(instance, [e for body in bodies for e in body])
    return rate


def single_posts(instance, url, n, clients, check=True, profile=None):
    """n events of the mix, each posted alone, from `clients` threads; events/s. With `profile`
    (a label), where the CPU went is printed: the cores busy, and per event the CPU of the web
    server process and of this database's PostgreSQL backends (its pool's connections)."""
    events = [e for body in bigdb.crm_bodies(n, body=200) for e in fresh(body)]
    before = _cpu(instance, url) if profile else None
    seconds = harness.drain_concurrently([events], clients, lambda session, e: instance.post(e, session, url))
    if profile:
        after = _cpu(instance, url)
        busy = (after[0][0] - before[0][0]) / max(1, after[0][1] - before[0][1]) * os.cpu_count()
        web, backends = ((a - b) / n * 1000 for a, b in zip(after[1:], before[1:]))
        print(f"  {profile:<28} cores busy {busy:.2f} of {os.cpu_count()}; CPU per event: web process "
              f"{web:.2f} ms, PostgreSQL backends {backends:.2f} ms")
    if check:
        check_stored(instance, events)
    return n / seconds


WEB_PIDS = {}  # a web server's URL: its process id (single_rows)


def _cpu(instance, url):
    """(the machine's busy and total jiffies, the web process's CPU seconds, the CPU seconds of
    the database's other backends: the web server's pool, and a worker's if one ran)."""
    pids = [r[0] for r in instance.rows("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                        "AND pid <> pg_backend_pid()")]
    return (cpu.machine(), cpu.process_seconds(WEB_PIDS[url]), sum(cpu.process_seconds(pid) for pid in pids))


def cancel_waiting(instance):
    """What a run leaves waiting (the intake rows' backlog) is cancelled: the next run starts clean."""
    with instance.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE deliveries SET status = 'cancelled', cancel_reason = 'bench' "
                             "WHERE status IN ('scheduled', 'retrying', 'sending')")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deliveries", type=int, default=1_000_000, help="the big database's size")
    parser.add_argument("--sample", type=int, default=20_000, help="events of the big database's real-path sample")
    parser.add_argument("--backlog", type=int, default=20_000, help="deliveries a dispatch round drains")
    parser.add_argument("--batches", type=int, default=5, help="1,000-event POSTs a round")
    parser.add_argument("--single", type=int, default=2000, help="events a round, one per POST")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", default="dispatch,bodies,single", help="which rows, of dispatch, bodies, single")
    args = parser.parse_args()
    wanted = set(args.rows.split(","))
    big_url = os.environ.get("EXPORTER_BENCH_BIGDB_URL")
    if not big_url or not os.environ.get("EXPORTER_BENCH_DATABASE_URL", "").startswith("postgres"):
        parser.error("set EXPORTER_BENCH_BIGDB_URL and EXPORTER_BENCH_DATABASE_URL (two PostgreSQL databases)")

    receiver = harness.Receiver()
    big = empty = None
    try:
        big = harness.Instance(database_url=big_url, keep=True)
        cancel_waiting(big)
        print("big database:")
        bigdb.build(big, receiver, args.deliveries, args.sample)
        empty = harness.Instance()
        empty.import_profiles(bigdb.crm_profiles(receiver))
        urls = {db: (db.start_web(), db.start_web("bare")) for db in (big, empty)}
        WEB_PIDS.update((url, p.pid) for db in (big, empty) for url, p in zip(urls[db], db.processes[-2:]))
        rows = {}
        if "dispatch" in wanted:
            rows["dispatch"] = dispatch_rows(big, empty, receiver, args)
        if "bodies" in wanted:
            rows["bodies"] = bodies_rows(big, empty, args)
        if "single" in wanted:
            rows["single"] = single_rows(big, empty, urls, args)
        size = big.scalar("SELECT count(*) FROM deliveries")
        cancel_waiting(big)
    finally:
        for db in (big, empty):
            if db:
                db.close()
        receiver.close()
    print(f"big database: {size:,} deliveries")
    summary(rows)


def dispatch_rows(big, empty, receiver, args):
    print(f"dispatch, one worker, fast receiver, a backlog of {args.backlog:,} partials a round")
    dispatch(big, receiver, 500), dispatch(empty, receiver, 500)  # warm-up
    return interleave(args.rounds, {
        "big": printed("big database", lambda: dispatch(big, receiver, args.backlog), "deliveries/s"),
        "empty": printed("empty database", lambda: dispatch(empty, receiver, args.backlog), "deliveries/s")})


def bodies_rows(big, empty, args):
    n = args.batches * 1000
    print(f"intake, 1,000-event bodies of the mix, {args.batches} a round")
    for db in (big, empty):  # warm-up
        bodies_posts(db, 1000, True), executemany(db, 1000)
    sides = {}
    for name, db in (("big", big), ("empty", empty)):
        sides[f"{name}, mix"] = printed(f"{name}, mix", lambda db=db: bodies_posts(db, n, True), "events/s")
        sides[f"{name}, no sales"] = printed(f"{name}, no sales", lambda db=db: bodies_posts(db, n, False), "events/s")
        sides[f"{name}, executemany"] = printed(f"{name}, executemany", lambda db=db: executemany(db, n), "rows/s")
    return interleave(args.rounds, sides)


def single_rows(big, empty, urls, args):
    print(f"intake, one event of the mix per POST, {args.clients} clients, {args.single} a round")
    for db in (big, empty):  # warm-up
        single_posts(db, urls[db][0], 200, args.clients), single_posts(db, urls[db][1], 200, args.clients, False)
    return interleave(args.rounds, {
        "big": printed("big, mix", lambda: single_posts(big, urls[big][0], args.single, args.clients,
                                                        profile="  (big, mix)"), "events/s"),
        "empty": printed("empty, mix", lambda: single_posts(empty, urls[empty][0], args.single, args.clients,
                                                            profile="  (empty, mix)"), "events/s"),
        "bare": printed("bare endpoint", lambda: single_posts(empty, urls[empty][1], args.single, args.clients, False,
                                                              profile="  (bare endpoint)"), "events/s")})


def summary(rows):
    if "single" in rows:
        s = rows["single"]
        harness.row("intake, one event per POST, mix, big against empty", s["big"], s["empty"], "events/s",
                    ("big", "empty"))
        for name in ("empty", "big"):
            harness.row(f"intake, one event per POST, mix on the {name} database, against the bare endpoint",
                        s[name], s["bare"], "events/s", ("mix", "bare"))
    if "bodies" in rows:
        b = rows["bodies"]
        for name in ("empty", "big"):
            harness.row(f"intake, 1,000-event bodies on the {name} database, mix against no sales",
                        b[f"{name}, mix"], b[f"{name}, no sales"], "events/s", ("mix", "no sales"))
            harness.row(f"intake, 1,000-event bodies on the {name} database, mix against executemany",
                        b[f"{name}, mix"], b[f"{name}, executemany"], "events/s", ("mix", "executemany"))
        harness.row("intake, 1,000-event bodies of the mix, big against empty", b["big, mix"], b["empty, mix"],
                    "events/s", ("big", "empty"))
    if "dispatch" in rows:
        harness.row("dispatch, one worker, fast receiver, big against empty", rows["dispatch"]["big"],
                    rows["dispatch"]["empty"], "deliveries/s", ("big", "empty"))  # the key row, last


if __name__ == "__main__":
    main()
