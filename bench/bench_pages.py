"""The admin's pages on the big database (PostgreSQL): each page's median and slowest time, next
to the same page on an empty database in the same run.

    EXPORTER_BENCH_BIGDB_URL=postgresql://.../bigdb EXPORTER_BENCH_DATABASE_URL=postgresql://.../empty \\
    .venv/bin/python bench/bench_pages.py [--deliveries 1000000] [--times 7]

The big database is bigdb.py's (built the first time, then kept). Each page is fetched once to
warm up, then `--times` times by a logged-in admin through the served app (waitress, as `exporter
run`), the big and the empty database taking turns. Goal (issue 22): median <= 200 ms and none
over 500 ms on the big database. The last line says how many pages meet it.
"""
import argparse
import os
import re
import time

import bigdb
import harness

EMAIL, PASSWORD = "bench@example.com", "bench-password-22"
METRICS_TOKEN = "bench-metrics-22"


def login(instance):
    instance.exporter("create-admin", EMAIL, "--password", PASSWORD)
    session = instance.session
    form = session.get(instance.web_url + "/login", timeout=30).text
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', form)
    data = {"email": EMAIL, "password": PASSWORD, **({"csrf_token": token.group(1)} if token else {})}
    answer = session.post(instance.web_url + "/login", data=data, timeout=30)
    if "Wrong email" in answer.text or answer.status_code >= 400:
        raise AssertionError("could not log in")


def pages(instance):
    """(name, path) of each page measured, with ids and values taken from this database."""
    one = lambda sql: instance.scalar(sql)  # noqa: E731
    oldest = one("SELECT id FROM deliveries ORDER BY id LIMIT 1 OFFSET 50") or 1
    middle = one("SELECT id FROM deliveries ORDER BY id LIMIT 1 OFFSET (SELECT count(*) / 2 FROM deliveries)") or 1
    profile = one("SELECT id FROM profiles WHERE name = 'Call center A'") or 1
    customer = one("SELECT id FROM customers ORDER BY id LIMIT 1 OFFSET 100") or 1
    email = (one(f"SELECT email FROM customers WHERE id = {customer}") or "c1@example.com").split("@")[0][-6:]
    phone = one(f"SELECT phone FROM customers WHERE id = {customer}") or "5552013344"
    name = one(f"SELECT first_name || ' ' || last_name FROM customers WHERE id = {customer}") or "Jane Doe"
    order = one("SELECT order_id FROM events WHERE order_id IS NOT NULL ORDER BY id LIMIT 1 OFFSET 100") or 1
    month = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 30 * 86400))
    return [("Deliveries, newest page", "/deliveries/"),
            ("Deliveries, a middle page", f"/deliveries/?before={middle}"),
            ("Deliveries, the oldest page", f"/deliveries/?before={oldest}"),
            ("Deliveries, status delivered", "/deliveries/?status=delivered"),
            ("Deliveries, status retrying", "/deliveries/?status=retrying"),
            ("Deliveries, a profile", f"/deliveries/?profile={profile}"),
            ("Deliveries, customer type refund", "/deliveries/?customer_type=refund"),
            ("Deliveries, a host", "/deliveries/?host=127.0.0.1"),
            ("Deliveries, since 30 days ago", f"/deliveries/?since={month}"),
            ("Customers, newest", "/customers/"),
            ("Customers, search by email", f"/customers/?q={email}"),
            ("Customers, search by phone", f"/customers/?q={phone}"),
            ("Customers, search by name", f"/customers/?q={name}"),
            ("Customers, search by order id", f"/customers/?q={order}"),
            ("a customer", f"/customers/{customer}"),
            ("Dashboard", "/"),
            ("Audit", "/audit/"),
            ("/metrics", "/metrics")]


def fetch(instance, path):
    started = time.perf_counter()
    headers = {"Authorization": f"Bearer {METRICS_TOKEN}"} if path == "/metrics" else {}
    answer = instance.session.get(instance.web_url + path, headers=headers, timeout=120)
    seconds = time.perf_counter() - started
    if answer.status_code != 200:
        raise AssertionError(f"{path} answered {answer.status_code}")
    return seconds * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deliveries", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=20_000)
    parser.add_argument("--times", type=int, default=7)
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="measure only the pages whose name contains NAME (repeatable), e.g. --only Dashboard")
    args = parser.parse_args()
    big_url = os.environ.get("EXPORTER_BENCH_BIGDB_URL")
    if not big_url or not os.environ.get("EXPORTER_BENCH_DATABASE_URL", "").startswith("postgres"):
        parser.error("set EXPORTER_BENCH_BIGDB_URL and EXPORTER_BENCH_DATABASE_URL (two PostgreSQL databases)")
    receiver = harness.Receiver()
    big = empty = None
    try:
        big = harness.Instance(database_url=big_url, keep=True)
        bigdb.build(big, receiver, args.deliveries, args.sample)
        empty = harness.Instance()
        empty.import_profiles(bigdb.crm_profiles(receiver))
        for db in (big, empty):
            db.env["EXPORTER_METRICS_TOKEN"] = METRICS_TOKEN
            db.start_web()
            login(db)
        empty.post({"events": bigdb.crm_bodies(100)[0]})
        size = big.scalar("SELECT count(*) FROM deliveries")
        results = []
        for (name, path), (_, empty_path) in zip(pages(big), pages(empty)):
            if args.only and not any(word.lower() in name.lower() for word in args.only):
                continue
            fetch(big, path), fetch(empty, empty_path)  # warm-up
            times = {"big": [], "empty": []}
            for _ in range(args.times):
                times["big"].append(fetch(big, path))
                times["empty"].append(fetch(empty, empty_path))
            results.append((name, times))
            print(f"  {name:<36} big: median {harness.median(times['big']):6.0f} ms, max {max(times['big']):6.0f} ms"
                  f"   empty: median {harness.median(times['empty']):5.0f} ms, max {max(times['empty']):5.0f} ms")
    finally:
        for db in (big, empty):
            if db:
                db.close()
        receiver.close()
    met = [name for name, t in results if harness.median(t["big"]) <= 200 and max(t["big"]) <= 500]
    missed = [name for name, t in results if name not in met]
    print(f"big database: {size:,} deliveries; missed: {', '.join(missed) or 'none'}")
    print(f"pages at a million rows: {len(met)} of {len(results)} meet median <= 200 ms and none over 500 ms")


if __name__ == "__main__":
    main()
