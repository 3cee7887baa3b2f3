"""An Export Delay is kept: none early, and on time once due.

    .venv/bin/python bench/bench_delay.py [--events 500] [--rate 50] [--delay-minutes 1]

One `exporter worker` and `exporter cron` run, as in production; after a warm-up event, the
events are posted one per POST at a steady rate (occurred_at = the moment each is posted) to a
profile with a 1-minute Export Delay (a real minute), so each is due 60 s after it was posted.
Each delivery's lateness is its arrival at the receiver minus its due_at; an arrival before
due_at is early. The arrivals are checked against what the database marks delivered.
SQLite, or PostgreSQL when EXPORTER_BENCH_DATABASE_URL is set (that database is wiped).
Goal: none early, p99 lateness <= 2 s. It takes the delay plus the posting time, about 75 s.
The last line: how many were early, and the p99 lateness.
Today's engine sends about 15/s: smoke it with --events 60 --rate 10.
"""
import argparse

import harness

GOAL_SECONDS = 2.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--rate", type=float, default=50, help="events posted a second")
    parser.add_argument("--delay-minutes", type=int, default=1)
    args = parser.parse_args()

    receiver = harness.Receiver()
    instance = harness.Instance()
    try:
        instance.import_profiles(harness.latency_profiles(receiver, delay_minutes=args.delay_minutes))
        instance.start_web()
        instance.start_workers(1)
        instance.start_cron()
        harness.warm_up(instance, receiver)
        after = instance.last_delivery_id()
        harness.post_paced(instance, harness.round_events(args.events), args.rate)
        lateness = [late for _, late in harness.arrival_times(
            instance, receiver, after, args.events, timeout=120 + 60 * args.delay_minutes + args.events / 5)]
    finally:
        instance.close()
        receiver.close()
    early = sum(late < 0 for late in lateness)
    print(f"{instance.database}, delay {args.delay_minutes} minute(s), {args.events} events at {args.rate:g}/s, "
          f"one worker: arrival - due_at")
    print(f"  earliest {min(lateness):+.3f} s, p50 {harness.percentile(lateness, 50):.3f} s, "
          f"p99 {harness.percentile(lateness, 99):.3f} s, max {max(lateness):.3f} s")
    print(f"delay {args.delay_minutes} minute(s): {early} early, p99 lateness {harness.percentile(lateness, 99):.3f} s "
          f"(goal: none early, p99 <= {GOAL_SECONDS:g} s)")


if __name__ == "__main__":
    main()
