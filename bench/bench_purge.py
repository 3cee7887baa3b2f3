"""The retention purge on the big database (PostgreSQL, issue 22 point 5): how long `exporter
purge` takes, and the intake's latency (one event per POST) before and while it runs.

    EXPORTER_BENCH_BIGDB_URL=postgresql://.../bigdb .venv/bin/python bench/bench_purge.py [--days 90]

Nothing is changed in the big database: it is copied (`createdb -T bigdb bigdb_purge`, which
needs no one else connected to it), the copy is migrated and purged, then dropped (--keep-copy
keeps it). --days 90 purges the oldest 30 of bigdb.py's 120 days. The intake load: --rate events
a second, one per POST, from --clients threads, for --before seconds alone and then all through
the purge. Goal: the purge in under 60 s, the intake's p99 <= 1 s meanwhile. Last line: both.
"""
import argparse
import os
import subprocess
import threading
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import requests

import harness


def intake_load(instance, rate, clients, stop, latencies, errors):
    """Threads posting one event each at rate/clients a second; each POST's seconds into latencies."""
    def client():
        session, interval, due = requests.Session(), clients / rate, time.monotonic()
        while not stop.is_set():
            started = time.perf_counter()
            try:
                instance.post({"events": [harness.event("purge-" + uuid.uuid4().hex, 10**9)]}, session=session)
                latencies.append((time.monotonic(), time.perf_counter() - started))
            except Exception as exc:  # counted and shown: a failed POST is not a fast one
                errors.append(repr(exc)[:200])
            due += interval
            time.sleep(max(0.0, due - time.monotonic()))
    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    return threads


def p99(values):
    return harness.percentile(values, 99) if values else float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=90, help="retention days (90: bigdb's oldest 30 days go)")
    parser.add_argument("--rate", type=float, default=40.0, help="intake events a second")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--before", type=float, default=15.0, help="seconds of intake alone before the purge")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--keep-copy", action="store_true")
    args = parser.parse_args()
    big_url = os.environ.get("EXPORTER_BENCH_BIGDB_URL")
    if not big_url or not big_url.startswith("postgres"):
        parser.error("set EXPORTER_BENCH_BIGDB_URL (the big database, built by bigdb.py)")
    parts = urlsplit(big_url)
    source, copy = parts.path.lstrip("/"), parts.path.lstrip("/") + "_purge"
    server = ["-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432), "-U", parts.username or "postgres"]
    subprocess.run(["dropdb", *server, "--if-exists", copy], check=True)
    started = time.perf_counter()
    subprocess.run(["createdb", *server, "-T", source, copy], check=True)
    print(f"copied {source} to {copy} in {time.perf_counter() - started:.0f} s")
    instance = None
    try:
        instance = harness.Instance(database_url=urlunsplit(parts._replace(path="/" + copy)), keep=True)
        instance.start_web()
        print("due:", instance.exporter("purge", "--days", str(args.days), "--dry-run").strip())
        stop, latencies, errors = threading.Event(), [], []
        threads = intake_load(instance, args.rate, args.clients, stop, latencies, errors)
        time.sleep(args.before)
        purge_start = time.monotonic()
        output = instance.exporter("purge", "--days", str(args.days), "--batch-size", str(args.batch_size))
        purge_end = time.monotonic()
        time.sleep(2)
        stop.set()
        for thread in threads:
            thread.join(timeout=130)
        before = [s for t, s in latencies if t < purge_start]
        during = [s for t, s in latencies if purge_start <= t <= purge_end]
        seconds = purge_end - purge_start
        print(output.strip())
        print(f"intake alone: {len(before)} POSTs, p50 {harness.median(before) * 1000:.0f} ms, "
              f"p99 {p99(before) * 1000:.0f} ms, max {max(before, default=0) * 1000:.0f} ms")
        print(f"intake during the purge: {len(during)} POSTs, p50 {harness.median(during) * 1000:.0f} ms, "
              f"p99 {p99(during) * 1000:.0f} ms, max {max(during, default=0) * 1000:.0f} ms; {len(errors)} failed")
        for error in errors[:3]:
            print("  ", error)
        print(f"purge of {args.days} days: {seconds:.1f} s (goal < 60 s); intake p99 meanwhile {p99(during):.3f} s "
              f"(goal <= 1 s)")
    finally:
        if instance:
            instance.close()
        if not args.keep_copy:
            subprocess.run(["dropdb", *server, "--if-exists", copy], check=True)


if __name__ == "__main__":
    main()
