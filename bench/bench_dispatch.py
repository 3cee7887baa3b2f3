"""Dispatch, one `exporter worker`, against bare clients sending the same URLs to the same receiver.

    .venv/bin/python bench/bench_dispatch.py [--n 2000] [--n-hosts 1000] [--rounds 3]

Two rows, each a warm-up then interleaved rounds (A B, B A, ...), medians:
  fast receiver: deliveries/s of one worker, against a requests.Session loop (one connection);
  10 hosts answering after 50 ms (127.0.0.1 .. 127.0.0.10, one profile each): one worker,
      against bare clients with the same connections in flight (HOST_CONCURRENCY threads per host,
      each with its own requests.Session).
An Exporter round posts the events through the intake with no worker running, starts the worker,
and is timed from the first arrival at the receiver until the database shows every delivery
delivered; then it checks that what arrived (by Idempotency-Key and URL) is what the database
marks delivered, each once. The last line is the fast receiver's row, ending in its ratio.
Today's engine sends about 15/s: smoke it with --n 60 --n-hosts 60.
"""
import argparse

import harness


def measure(instance, receiver, n, rounds, bare, hosts=0):
    def exporter():
        rate, startup, most = harness.exporter_round(instance, receiver, harness.round_events(n, hosts))
        print(f"  Exporter {harness.rate(rate):>8}/s   (worker start-up {startup:.1f} s, "
              f"most in flight on one host {most})")
        return rate

    def baseline():
        rate = bare(receiver, harness.bare_requests(receiver, harness.round_events(n, hosts)))
        print(f"  baseline {harness.rate(rate):>8}/s")
        return rate

    harness.exporter_round(instance, receiver, harness.round_events(max(n // 10, 10), hosts))  # warm-up
    bare(receiver, harness.bare_requests(receiver, harness.round_events(max(n // 10, 10), hosts)))
    return harness.interleave(rounds, exporter, baseline)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="deliveries per round, fast receiver")
    parser.add_argument("--n-hosts", type=int, default=1000, help="deliveries per round, 10 slow hosts")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--delay", type=float, default=0.05, help="the slow hosts' answer time, seconds")
    parser.add_argument("--host-concurrency", type=int, default=4)
    args = parser.parse_args()

    fast = harness.Receiver()
    slow = harness.Receiver(hosts=args.hosts, delay=args.delay)
    instance = harness.Instance(host_concurrency=args.host_concurrency)
    try:
        instance.import_profiles(harness.dispatch_profiles(fast, slow))
        instance.start_web()
        print(f"{instance.database}, one worker, HOST_CONCURRENCY {args.host_concurrency}")
        print(f"fast receiver, {args.n} deliveries a round; baseline: a requests.Session loop")
        fast_rows = measure(instance, fast, args.n, args.rounds, harness.session_loop)
        print(f"{args.hosts} hosts answering after {args.delay * 1000:.0f} ms, {args.n_hosts} deliveries a round; "
              f"baseline: {args.host_concurrency} requests.Sessions per host")
        per_host = lambda receiver, requests_: harness.concurrent_clients(receiver, requests_, args.host_concurrency)
        slow_rows = measure(instance, slow, args.n_hosts, args.rounds, per_host, hosts=args.hosts)
    finally:
        instance.close()
        fast.close()
        slow.close()
    harness.row(f"dispatch, one worker, {args.hosts} hosts at {args.delay * 1000:.0f} ms", *slow_rows, "deliveries/s")
    harness.row("dispatch, one worker, fast receiver", *fast_rows, "deliveries/s")  # the key row, last


if __name__ == "__main__":
    main()
