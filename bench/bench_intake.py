"""Intake: events posted to POST /intake/events, against bare baselines, in the same run.

    .venv/bin/python bench/bench_intake.py [--single 2000] [--batches 5] [--clients 8] [--rounds 5]

Two rows, each a warm-up then interleaved rounds (A B, B A, ...), medians:
  one event per POST, 8 clients (threads, a requests.Session each): the intake served by waitress
      as `exporter run` serves it, against a bare Flask JSON endpoint on the same waitress settings;
  1,000-event POSTs, one client: the intake, against an executemany of the same rows into the
      events table in one transaction (in this process, no HTTP).
One active postback profile matches every event, so each event is stored, matched and
scheduled (no worker runs: nothing is sent). Every round checks that the database holds each
event and its delivery. The last line is the 1,000-event row, ending in its ratio.
"""
import argparse
import json
import time
from datetime import datetime, timezone

from sqlalchemy import MetaData, Table

import harness


def single_posts(instance, url, n, clients, check=True):
    """n new events, each posted alone, from `clients` threads; events/s."""
    events = harness.round_events(n)
    seconds = harness.drain_concurrently([events], clients, lambda session, e: instance.post(e, session, url))
    if check:
        check_stored(instance, events)
    return n / seconds


def batch_posts(instance, n):
    """n new events posted 1,000 a POST by one client; events/s."""
    events = harness.round_events(n)
    # Encoded before the clock starts, as the baseline's rows are built before it: the client's
    # JSON encoder is not the intake.
    bodies = [json.dumps({"events": events[i:i + 1000]}).encode() for i in range(0, n, 1000)]
    started = time.perf_counter()
    for body in bodies:
        instance.post(body)
    rate = n / (time.perf_counter() - started)
    check_stored(instance, events)
    return rate


def executemany(instance, n):
    """The rows of n new events inserted with one executemany in one transaction; rows/s.
    They are deleted afterwards."""
    table = Table("events", MetaData(), autoload_with=instance.engine)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    rows = [{"event_key": "bare-" + e["id"], "type": e["type"], "occurred_at": now, "received_at": now,
             "customer_id": None, "order_id": e["order"]["orderId"], "campaign_id": e["order"]["campaignId"],
             "order": e["order"], "card_number": None, "is_test": False} for e in harness.round_events(n)]
    started = time.perf_counter()
    with instance.engine.begin() as conn:
        conn.execute(table.insert(), rows)
    rate = n / (time.perf_counter() - started)
    with instance.engine.begin() as conn:
        conn.execute(table.delete().where(table.c.event_key.like("bare-%")))
    return rate


def printed(label, measure):
    """One side's round: measure() -> events/s, printed."""
    def run():
        rate = measure()
        print(f"  {label} {harness.rate(rate):>8} events/s")
        return rate
    return run


def check_stored(instance, events):
    """Each event is in the database with its delivery."""
    keys = [e["id"] for e in events]
    stored = delivered = 0
    for start in range(0, len(keys), 500):
        part = {f"k{i}": k for i, k in enumerate(keys[start:start + 500])}
        where = f"e.event_key IN ({', '.join(':' + name for name in part)})"
        stored += instance.scalar(f"SELECT count(*) FROM events e WHERE {where}", **part)
        delivered += instance.scalar(f"SELECT count(*) FROM deliveries d JOIN events e ON e.id = d.event_id "
                                     f"WHERE {where}", **part)
    assert stored == delivered == len(events), f"{stored} events, {delivered} deliveries of {len(events)} posted"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--single", type=int, default=2000, help="events per round, one per POST")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batches", type=int, default=5, help="1,000-event POSTs per round")
    parser.add_argument("--rounds", type=int, default=5)  # the executemany baseline swings by half from round to round
    args = parser.parse_args()

    instance = harness.Instance()
    try:
        instance.import_profiles([harness.postback("Partials", "http://127.0.0.1:9/p")])  # never sent
        exporter_url, bare_url = instance.start_web(), instance.start_web("bare")
        print(f"{instance.database}; waitress with 8 threads, as `exporter run`")

        print(f"one event per POST, {args.clients} clients, {args.single} events a round; "
              f"baseline: a bare Flask JSON endpoint")
        single_posts(instance, exporter_url, 200, args.clients)  # warm-up
        single_posts(instance, bare_url, 200, args.clients, check=False)
        single_rows = harness.interleave(
            args.rounds,
            printed("Exporter", lambda: single_posts(instance, exporter_url, args.single, args.clients)),
            printed("baseline", lambda: single_posts(instance, bare_url, args.single, args.clients, check=False)))

        print(f"1,000-event POSTs, {args.batches} a round; baseline: executemany of the same rows")
        batch_posts(instance, 1000), executemany(instance, 1000)  # warm-up
        batch_rows = harness.interleave(
            args.rounds,
            printed("Exporter", lambda: batch_posts(instance, args.batches * 1000)),
            printed("baseline", lambda: executemany(instance, args.batches * 1000)))
    finally:
        instance.close()
    harness.row(f"intake, one event per POST, {args.clients} clients", *single_rows, "events/s")
    harness.row("intake, 1,000-event POSTs", *batch_rows, "events/s")  # the key row, last


if __name__ == "__main__":
    main()
