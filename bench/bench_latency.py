"""Latency with no Export Delay: from an event's occurred_at to its arrival at the receiver.

    .venv/bin/python bench/bench_latency.py [--events 1000] [--rate 100]

One `exporter worker` and `exporter cron` run, as in production; after a warm-up event, the
events are posted one per POST at a steady rate (occurred_at = the moment each is posted) to a
profile without delay, and each delivery's latency is its arrival time at the receiver minus
its event's occurred_at. The arrivals are checked against what the database marks delivered.
Runs on SQLite, and again on PostgreSQL when EXPORTER_BENCH_DATABASE_URL is set (that database
is wiped). Goal: p99 <= 1 s on both. The last line is the p99 of each database.
Today's engine sends about 15/s: smoke it with --events 60 --rate 10.
"""
import argparse
import os

import harness

GOAL_SECONDS = 1.0


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100, help="events posted a second")
    args = parser.parse_args()
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
