"""Latency with no Export Delay: from an event's occurred_at to its arrival at the receiver.

    .venv/bin/python bench/bench_latency.py [--events 1000] [--rate 100]
    EXPORTER_BENCH_BIGDB_URL=... EXPORTER_BENCH_DATABASE_URL=... \\
    .venv/bin/python bench/bench_latency.py --bigdb [--rounds 2]

One `exporter worker` and `exporter cron` run, as in production; after a warm-up event, the
events are posted one per POST at a steady rate (occurred_at = the moment each is posted) to a
profile without delay, and each delivery's latency is its arrival time at the receiver minus
its event's occurred_at. The arrivals are checked against what the database marks delivered.
Runs on SQLite, and again on PostgreSQL when EXPORTER_BENCH_DATABASE_URL is set (that database
is wiped). Goal: p99 <= 1 s on both. The last line is the p99 of each database.
Today's engine sends about 15/s: smoke it with --events 60 --rate 10.

--bigdb (issue 22): the same rows on the big database (EXPORTER_BENCH_BIGDB_URL, built by
bigdb.py when missing, kept) and on the empty one, interleaved, with the CRM's profiles and
events: partials alone, and the mix (bigdb.crm_bodies: sales that convert 45 % of the partials,
upsells, refunds; 200-event bodies, so a sale is posted about a second after its partial). A
mix delivery's latency is its arrival minus its own event's occurred_at; partials a sale
cancelled before they were sent are not counted (none did in the runs so far: delay 0).
"""
import argparse
import os
import time
import uuid

import bigdb
import harness

GOAL_SECONDS = 1.0
RUN = uuid.uuid4().hex[:6]  # event ids new to a kept database
UNFINISHED = "status IN ('scheduled', 'retrying', 'sending')"


def latencies(sqlite, events, rate):
    receiver = harness.Receiver()
    instance = harness.Instance(sqlite=sqlite)
    try:
        instance.import_profiles(harness.latency_profiles(receiver, delay_minutes=0))
        instance.start_web()
        instance.start_workers(1)
        instance.start_cron()
        harness.warm_up(instance, receiver)
        after = instance.last_delivery_id()
        harness.post_paced(instance, harness.round_events(events), rate)
        times = harness.arrival_times(instance, receiver, after, events, timeout=120 + events / 5)
        return instance.database, [latency for latency, _ in times]
    finally:
        instance.close()
        receiver.close()


# --- the big database ------------------------------------------------------------------------------

def crm_latencies(database_url, events, rate, sales):
    """One row on a database of the CRM's profiles: `events` of crm_bodies posted at `rate`; the
    latencies of every delivery they made. A big database (EXPORTER_BENCH_BIGDB_URL) is kept
    and built first when missing; anything an earlier run left waiting in it is cancelled."""
    receiver = harness.Receiver()
    big = database_url == os.environ["EXPORTER_BENCH_BIGDB_URL"]
    instance = harness.Instance(database_url=database_url, keep=big)
    try:
        if big:
            _cancel_waiting(instance)
            bigdb.build(instance, receiver)
        else:
            instance.import_profiles(bigdb.crm_profiles(receiver))
        instance.start_web()
        instance.start_workers(1)
        instance.start_cron()
        harness.warm_up(instance, receiver)
        after = instance.last_delivery_id()
        tag = f"lat{RUN}-{'m' if sales else 'p'}"
        posted = [e for body in bigdb.crm_bodies(events, sales=sales, body=200, tag=tag) for e in body]
        harness.post_paced(instance, posted, rate)
        delivered = _settled(instance, after, timeout=120 + events / 5)
        return [latency for latency, _ in harness.arrival_times(instance, receiver, after, delivered, timeout=10)]
    finally:
        instance.close()
        receiver.close()


def _cancel_waiting(instance):
    with instance.engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE deliveries SET status = 'cancelled', cancel_reason = 'bench' WHERE {UNFINISHED}")


def _settled(instance, after_id, timeout):
    """Wait until no delivery above after_id is still to send; how many were delivered (the mix's
    count is not known in advance: a sale makes two, a partial it cancels none)."""
    deadline = time.monotonic() + timeout
    while instance.scalar(f"SELECT count(*) FROM deliveries WHERE id > :i AND {UNFINISHED}", i=after_id):
        if time.monotonic() > deadline:
            raise AssertionError(f"deliveries still unfinished after {timeout} s\n{instance.log_tails()}")
        time.sleep(0.05)
    return instance.scalar("SELECT count(*) FROM deliveries WHERE id > :i AND status = 'delivered'", i=after_id)


def bigdb_rows(args):
    big_url, empty_url = os.environ.get("EXPORTER_BENCH_BIGDB_URL"), os.environ.get("EXPORTER_BENCH_DATABASE_URL")
    if not big_url or not (empty_url or "").startswith("postgres"):
        raise SystemExit("--bigdb: set EXPORTER_BENCH_BIGDB_URL and EXPORTER_BENCH_DATABASE_URL (PostgreSQL)")
    sides = {(events, db): (url, events == "mix") for events in ("partials", "mix")
             for db, url in (("big", big_url), ("empty", empty_url))}
    results = {side: [] for side in sides}
    order = list(sides)
    for r in range(args.rounds):  # the order turns each round
        for side in order[r % len(order):] + order[:r % len(order)]:
            url, sales = sides[side]
            values = crm_latencies(url, args.events, args.rate, sales)
            results[side].append(values)
            print(f"  round {r + 1}, {side[0]:<8} {side[1]:<5}: {len(values):>5} deliveries, "
                  f"p50 {harness.percentile(values, 50):.3f} s, p99 {harness.percentile(values, 99):.3f} s, "
                  f"max {max(values):.3f} s", flush=True)
    p99 = {side: harness.median([harness.percentile(v, 99) for v in runs]) for side, runs in results.items()}
    for events in ("partials", "mix"):
        big, empty = p99[(events, "big")], p99[(events, "empty")]
        print(f"latency p99, delay 0, {events}, big against empty (median of {args.rounds} rounds): "
              f"big {big:.3f} s, empty {empty:.3f} s, ratio {big / empty:.2f}")
    print("latency p99, delay 0, big database: " + ", ".join(f"{events} {p99[(events, 'big')]:.3f} s"
                                                            for events in ("partials", "mix"))
          + f" (goal <= {GOAL_SECONDS:g} s)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100, help="events posted a second")
    parser.add_argument("--bigdb", action="store_true", help="big against empty database, partials and the mix")
    parser.add_argument("--rounds", type=int, default=2, help="with --bigdb: rounds of the four rows")
    args = parser.parse_args()
    if args.bigdb:
        print(f"delay 0, {args.events} events at {args.rate:g}/s, one worker: occurred_at to arrival")
        return bigdb_rows(args)
    runs = [latencies(True, args.events, args.rate)]
    if os.environ.get("EXPORTER_BENCH_DATABASE_URL"):
        runs.append(latencies(False, args.events, args.rate))
    print(f"delay 0, {args.events} events at {args.rate:g}/s, one worker: occurred_at to arrival")
    for database, values in runs:
        print(f"  {database}: p50 {harness.percentile(values, 50):.3f} s, p99 {harness.percentile(values, 99):.3f} s, "
              f"max {max(values):.3f} s")
    print("latency p99, delay 0: " + ", ".join(f"{database} {harness.percentile(values, 99):.3f} s"
                                               for database, values in runs) + f" (goal <= {GOAL_SECONDS:g} s)")


if __name__ == "__main__":
    main()
