"""Two versions of the code, one event of the mix per POST, in the same run: the code of this tree
against another checkout's (a git worktree), and both against the bare endpoint.

    git worktree add /tmp/before <commit>
    EXPORTER_BENCH_DATABASE_URL=postgresql://.../empty .venv/bin/python bench/ab_single.py /tmp/before

PostgreSQL (the CPU figures read its backends). One empty database (wiped at the start), the CRM's profiles (bigdb.crm_profiles), three
waitress servers: this tree's app, the other checkout's (its `exporter` package first on
PYTHONPATH) and the bare endpoint; 8 clients; each side once a round, the order turned each
round; medians. On a noisy machine a change of 10 % shows here and not across separate runs.
"""
import argparse
import os

import bench_bigdb
import bigdb
import harness


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("other", help="a checkout of the code to compare with (its folder)")
    parser.add_argument("--single", type=int, default=2000, help="events a round, one per POST")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    if not os.environ.get("EXPORTER_BENCH_DATABASE_URL", "").startswith("postgres"):
        parser.error("set EXPORTER_BENCH_DATABASE_URL to a PostgreSQL database (it is wiped)")
    if not os.path.isdir(os.path.join(args.other, "exporter")):
        parser.error(f"{args.other} holds no exporter package")

    receiver = harness.Receiver()
    instance = harness.Instance()
    try:
        instance.import_profiles(bigdb.crm_profiles(receiver))
        this = instance.start_web()
        own_env, instance.env = instance.env, dict(instance.env, PYTHONPATH=os.path.abspath(args.other))
        other = instance.start_web()
        instance.env = own_env
        bare = instance.start_web("bare")
        sides = {"this": this, "other": other, "bare": bare}
        bench_bigdb.WEB_PIDS.update((url, p.pid) for url, p in zip(sides.values(), instance.processes[-3:]))
        for name, url in sides.items():  # warm-up
            bench_bigdb.single_posts(instance, url, 300, args.clients, check=name != "bare")

        def side(name):
            return bench_bigdb.printed(name, lambda: bench_bigdb.single_posts(
                instance, sides[name], args.single, args.clients, check=name != "bare", profile=name), "events/s")

        results = bench_bigdb.interleave(args.rounds, {name: side(name) for name in sides})
    finally:
        instance.close()
        receiver.close()
    harness.row("one event of the mix per POST, the other code against the bare endpoint", results["other"],
                results["bare"], "events/s", ("other", "bare"))
    harness.row("one event of the mix per POST, this code against the bare endpoint", results["this"],
                results["bare"], "events/s", ("this", "bare"))
    harness.row("one event of the mix per POST, this code against the other", results["this"], results["other"],
                "events/s", ("this", "other"))


if __name__ == "__main__":
    main()
