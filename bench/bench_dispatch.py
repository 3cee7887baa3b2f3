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
import harness


def measure(instance, receiver, n, rounds, bare, hosts=0):
    def exporter():
        rate, startup, most, (busy, per) = harness.exporter_round(instance, receiver, harness.round_events(n, hosts))
        print(f"  Exporter {harness.rate(rate):>8}/s   (worker start-up {startup:.1f} s, "
              f"most in flight on one host {most}; cores busy {busy:.2f}, worker CPU {per:.2f} ms a delivery)")
        return rate

    def baseline():
        rate = bare(receiver, harness.bare_requests(receiver, harness.round_events(n, hosts)))
        print(f"  baseline {harness.rate(rate):>8}/s")
        return rate

    harness.exporter_round(instance, receiver, harness.round_events(max(n // 10, 10), hosts))  # warm-up
    bare(receiver, harness.bare_requests(receiver, harness.round_events(max(n // 10, 10), hosts)))
    return harness.interleave(rounds, exporter, baseline)


def main():
    args = harness.dispatch_arguments(__doc__.split("\n")[0], n_hosts=1000)
    with harness.dispatch_setup(args) as (instance, fast, slow):
        print(f"{instance.database}, one worker, HOST_CONCURRENCY {args.host_concurrency}")
        print(f"fast receiver, {args.n} deliveries a round; baseline: a requests.Session loop")
        fast_rows = measure(instance, fast, args.n, args.rounds, harness.session_loop)
        print(f"{args.hosts} hosts answering after {args.delay * 1000:.0f} ms, {args.n_hosts} deliveries a round; "
              f"baseline: {args.host_concurrency} requests.Sessions per host")
        per_host = lambda receiver, requests_: harness.concurrent_clients(receiver, requests_, args.host_concurrency)
        slow_rows = measure(instance, slow, args.n_hosts, args.rounds, per_host, hosts=args.hosts)
    harness.row(f"dispatch, one worker, {args.hosts} hosts at {args.delay * 1000:.0f} ms", *slow_rows, "deliveries/s")
    harness.row("dispatch, one worker, fast receiver", *fast_rows, "deliveries/s")  # the key row, last


if __name__ == "__main__":
    main()
