"""A production-like PostgreSQL database for the benches: a CRM's mix of events, and months of history.

    .venv/bin/python bench/bigdb.py --url postgresql://postgres@127.0.0.1:5432/bigdb [--deliveries 1000000]

Built in two steps, so that setup takes minutes, not hours:
  1. through the product: a sample of the CRM's mix (crm_bodies) posted to the intake in
     1,000-event bodies, then delivered by a real `exporter worker` to a fast receiver;
  2. by SQL: that sample copied with INSERT ... SELECT (new ids, keys, orders, customers, dates
     spread over `--days`, ids growing with the dates as in production) until deliveries reach
     `--deliveries`, then VACUUM ANALYZE, with
     nothing waiting: the statistics say no delivery waits, as they do on a quiet production day.

A database built once is kept: `Instance(database_url=..., keep=True)` reuses it, and build()
does nothing when it holds the deliveries asked for. The mix (crm_bodies, crm_profiles) is
also what bench_bigdb.py posts in its intake rows.
"""
import argparse
import itertools
import time

import harness

PARTIAL_CAMPAIGNS = 20  # two partial profiles, each routing 10 of them
MIX = {"new_sale": 0.45, "upsell": 0.12, "refund": 0.04}  # of a body's first half's orders
BODY_ROUND = itertools.count(1)


def crm_profiles(receiver):
    """Four postback profiles, as a CRM's: two for partials (10 of the 20 campaigns each), one for
    new sales and upsells, one for new sales and refunds; plus "Fast" (campaign 259's partials,
    the dispatch rows' events)."""
    def profile(name, types, campaigns=()):
        made = harness.postback(name, receiver.url(), campaigns=campaigns)
        made["routes"][0]["customer_types"] = list(types)
        return made
    half = PARTIAL_CAMPAIGNS // 2
    return [profile("Call center A", ["partial"], range(1, half + 1)),
            profile("Call center B", ["partial"], range(half + 1, PARTIAL_CAMPAIGNS + 1)),
            profile("Sales and upsells", ["new_sale", "upsell"]),
            profile("Sales and refunds", ["new_sale", "refund"]),
            harness.postback("Fast", receiver.url(), campaigns=[259])]


def crm_bodies(n, sales=True, body=1000, tag="m"):
    """n events in bodies of `body`, in a CRM's mix: in each body, the first half are partials
    (each a new order of a customer with two orders); then sales of 45 % of those orders, upsells
    of 12 %, refunds of 4 %, and the rest more partials. Without sales, the same bodies with
    partials in their place (the twin row). Ids, orders and customers new to this run."""
    bodies = []
    for start in range(0, n, body):
        size = min(body, n - start)
        r = next(BODY_ROUND)
        base = r * 10_000_000
        half = size // 2
        orders = [base + i for i in range(half)]
        events = [_event(f"{tag}{r}-{i}", "partial", o) for i, o in enumerate(orders)]
        follow = []
        if sales:
            for kind, share in MIX.items():
                follow += [(kind, o) for o in orders[:int(half * share)]]
        follow = follow[:size - half]
        events += [_event(f"{tag}{r}-{kind}-{o}", kind, o) for kind, o in follow]
        extra = size - len(events)
        events += [_event(f"{tag}{r}-p{i}", "partial", base + half + i) for i in range(extra)]
        bodies.append(events)
    return bodies


FIRST = ("Jane", "John", "Maria", "Ahmed", "Li", "Olga", "Pedro", "Aisha", "Tom", "Yuki", "Sara", "Ivan")
LAST = ("Doe", "Smith", "Garcia", "Khan", "Wang", "Petrova", "Silva", "Okafor", "Brown", "Sato", "Cohen")


def _event(key, kind, order_id):
    """An event of the order; its customer (two orders each) has a name, email and phone of
    their own, as a CRM's customers do, so that a search finds few of them."""
    made = harness.event(key, order_id, campaign_id=1 + order_id % PARTIAL_CAMPAIGNS)
    made["type"] = kind
    customer = order_id // 2
    made["order"].update(customerId=customer, firstName=FIRST[customer % len(FIRST)],
                         lastName=LAST[customer // len(FIRST) % len(LAST)], emailAddress=f"c{customer}@example.com",
                         phoneNumber=f"555{customer % 10_000_000:07d}")
    return made


# --- the build -------------------------------------------------------------------------------------

# Per table: the columns a copy changes (k is the copy's number, s its shift back in time, the
# MAX_* the sample's largest ids); every other column is copied as it is.
COPIES = {
    "customers": {"id": "id + k * {customers}", "crm_customer_id": "crm_customer_id + k * 1000000000000",
                  "email": "'k' || k || email", "phone": "'5' || lpad(k::text, 2, '0') || substr(phone, 4)",
                  "created_at": "created_at - s"},
    "events": {"id": "id + k * {events}", "event_key": "event_key || '-c' || k",
               "occurred_at": "occurred_at - s", "received_at": "received_at - s",
               "customer_id": "customer_id + k * {customers}", "order_id": "order_id + k * 1000000000000"},
    "deliveries": {"id": "id + k * {deliveries}", "event_id": "event_id + k * {events}",
                   "due_at": "due_at - s", "delivered_at": "delivered_at - s", "created_at": "created_at - s",
                   "updated_at": "updated_at - s"},
    "attempts": {"id": "id + k * {attempts}", "delivery_id": "delivery_id + k * {deliveries}",
                 "started_at": "started_at - s"},
    "history_entries": {"id": "id + k * {history_entries}", "customer_id": "customer_id + k * {customers}",
                        "event_id": "event_id + k * {events}", "delivery_id": "delivery_id + k * {deliveries}",
                        "created_at": "created_at - s"},
}


def counts(instance):
    return {t: instance.scalar(f"SELECT count(*) FROM {t}") for t in COPIES}


def seed_sample(instance, receiver, events):
    """The sample through the product: intake bodies of the mix, then one worker delivers all."""
    started = time.monotonic()
    for body in crm_bodies(events, tag="seed"):
        instance.post({"events": body})
    posted = time.monotonic()
    waiting = "SELECT count(*) FROM deliveries WHERE status IN ('scheduled', 'retrying', 'sending')"
    workers = instance.start_workers(1)
    try:
        deadline = time.monotonic() + 60 + events / 20
        while instance.scalar(waiting) and time.monotonic() < deadline:
            time.sleep(0.5)
        if instance.scalar(waiting):
            raise AssertionError(f"the sample is not delivered after {deadline - posted:.0f} s\n{instance.log_tails()}")
    finally:
        instance.stop(workers)
    receiver.take()
    print(f"  sample: {events:,} events posted in {posted - started:.0f} s, delivered in "
          f"{time.monotonic() - posted:.0f} s: {counts(instance)}")


def quoted(column):
    return f'"{column}"'  # "order" is a keyword


def multiply(instance, copies, days):
    """`copies` copies of every table's rows, each shifted further back, spread over `days`."""
    largest = {t: instance.scalar(f"SELECT coalesce(max(id), 0) FROM {t}") for t in COPIES}
    step = days * 86400 / copies  # seconds between copies: the last copy is today's, the sample the oldest
    with instance.engine.begin() as conn:
        for table, changed in COPIES.items():
            started = time.monotonic()
            columns = [r[0] for r in conn.exec_driver_sql(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                "AND table_schema = 'public' ORDER BY ordinal_position", (table,))]
            values = [changed[c].format(**largest) if c in changed else quoted(c) for c in columns]
            conn.exec_driver_sql(
                f"INSERT INTO {table} ({', '.join(map(quoted, columns))}) SELECT {', '.join(values)} "
                f"FROM (SELECT *, make_interval(secs => ({copies} - k) * {step}) AS s "
                f"FROM {table}, generate_series(1, {copies}) AS k WHERE id <= {largest[table]}) AS sample")
            conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                 f"(SELECT max(id) FROM {table}))")
            # Ids grow with time, as in production (a list newest first by id is newest first by
            # date): the sample, which has the smallest ids, goes furthest back.
            times = [c for c, expression in changed.items() if expression.endswith(" - s")]
            conn.exec_driver_sql(f"UPDATE {table} SET " + ", ".join(
                f"{c} = {c} - make_interval(secs => {copies * step})" for c in times) + f" WHERE id <= {largest[table]}")
            print(f"  {table}: copied {copies} times in {time.monotonic() - started:.0f} s")


def build(instance, receiver, deliveries=1_000_000, sample=20_000, days=120):
    """Make the instance's database a big one (see the module's docstring); nothing to do when
    it holds `deliveries` already. Its profiles are imported either way (the receiver's port)."""
    instance.import_profiles(crm_profiles(receiver))
    if instance.scalar("SELECT count(*) FROM deliveries") >= deliveries:  # built before
        print(f"  big database kept: {counts(instance)}")
        return
    started = time.monotonic()
    instance.start_web()
    seed_sample(instance, receiver, sample)
    smallest = min(n for t, n in counts(instance).items() if t != "customers")
    multiply(instance, -(-deliveries // smallest) - 1, days)
    with instance.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
    size = instance.scalar("SELECT pg_size_pretty(pg_database_size(current_database()))")
    print(f"  built in {time.monotonic() - started:.0f} s: {counts(instance)}, {size}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True, help="a PostgreSQL database of its own: it is wiped first")
    parser.add_argument("--deliveries", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=20_000, help="events posted through the product")
    parser.add_argument("--days", type=int, default=120)
    args = parser.parse_args()
    receiver = harness.Receiver()
    instance = harness.Instance(database_url=args.url, keep=False)
    try:
        build(instance, receiver, args.deliveries, args.sample, args.days)
    finally:
        instance.close()
        receiver.close()


if __name__ == "__main__":
    main()
