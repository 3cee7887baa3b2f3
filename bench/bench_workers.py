"""Dispatch scaling: two `exporter worker` processes against one, on the same receivers.

    .venv/bin/python bench/bench_workers.py [--n-hosts 6000] [--n 6000] [--rounds 3]

Rounds as in bench_dispatch.py (the events posted with no worker running, the workers started,
timed from the first arrival until the database shows all delivered, the arrivals checked),
interleaved: two workers (A) and one worker (B). Two rows: 10 hosts answering after 50 ms
(127.0.0.1 .. 127.0.0.10), where a second worker has room to add sends, and the fast receiver.
The last line is the 10-host row, ending in its ratio (the goal: >= 1.6). Rounds are 6,000
deliveries, several seconds each: in a round of 2,000 (under two seconds with two workers) the
second worker's later start and the last claims' tail weighed on the ratio as much as the sending.
Today's engine sends about 15/s: smoke it with --n 60 --n-hosts 60.
"""
import os

import harness


def measure(instance, receiver, n, rounds, hosts=0):
    def with_workers(count):
        def run():
            rate, startup, most, (busy, per) = harness.exporter_round(
                instance, receiver, harness.round_events(n, hosts), count)
            print(f"  {count} worker{'s' if count > 1 else ' '} {harness.rate(rate):>8}/s   "
                  f"(start-up {startup:.1f} s, most in flight on one host {most}; "
                  f"cores busy {busy:.2f} of {os.cpu_count()}, workers' CPU {per:.2f} ms a delivery)")
            return rate
        return run

    harness.exporter_round(instance, receiver, harness.round_events(max(n // 10, 10), hosts))  # warm-up
    return harness.interleave(rounds, with_workers(2), with_workers(1))


def main():
    args = harness.dispatch_arguments(__doc__.split("\n")[0], n_hosts=6000, n=6000)
    with harness.dispatch_setup(args) as (instance, fast, slow):
        print(f"{instance.database}, two workers against one, HOST_CONCURRENCY {args.host_concurrency}")
        print(f"fast receiver, {args.n} deliveries a round")
        fast_rows = measure(instance, fast, args.n, args.rounds)
        print(f"{args.hosts} hosts answering after {args.delay * 1000:.0f} ms, {args.n_hosts} deliveries a round")
        slow_rows = measure(instance, slow, args.n_hosts, args.rounds, hosts=args.hosts)
    names = ("two workers", "one worker")
    harness.row("dispatch, two workers against one, fast receiver", *fast_rows, "deliveries/s", names)
    harness.row(f"dispatch, two workers against one, {args.hosts} hosts at {args.delay * 1000:.0f} ms",
                *slow_rows, "deliveries/s", names)  # the key row, last


if __name__ == "__main__":
    main()
