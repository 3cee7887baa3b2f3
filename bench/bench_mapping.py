"""Mapping: the model's 5 fields rendered for N orders, against a hand-written dict build of the same pairs.

    .venv/bin/python bench/bench_mapping.py                 # 100,000 orders, 5 rounds
    .venv/bin/python bench/bench_mapping.py --records 1000000 --rounds 7

Exporter: the profile's renderer, looked up once (mapping.renderer_for, compiled once per
version of the mappings), then per order what a daily file does per row and what a send
does per delivery: renderer.from_order(order, event_type), the pairs read straight from the
order as stored (no flat record built first). Baseline: a hand-written function building a
dict of the same 5 pairs (same texts: the campaign id as a string). Both run over the same
N distinct orders; rounds interleaved (A B, B A, ...); medians. Also printed, not in the
ratio: the renderer looked up per order, and the older path (catalog.record_from_order, then
the renderer on the flat record). Last line: the ratio, baseline time / Exporter time.
"""
import argparse
import statistics
import time
from types import SimpleNamespace

from exporter import catalog, mapping

MODEL_MAPPINGS = [
    {"export_name": "first_name", "field": "firstName"},
    {"export_name": "order_date", "field": "orderDate"},
    {"export_name": "list_id", "field": "static", "static_value": "400"},
    {"export_name": "email_address", "field": "emailAddress"},
    {"export_name": "campaign_number", "field": "campaignId"},
]


def orders(n):
    return [{"orderId": 104233 + i, "customerId": 55821 + i, "campaignId": 259, "campaignName": "Test Lander",
             "firstName": f"Jane{i}", "lastName": "Doe", "emailAddress": f"jane{i}@example.com",
             "phoneNumber": "5552013344", "orderDate": "2026-11-27 14:03:22", "isTestCard": False,
             "products": [{"productId": 33, "productName": "Keto 30ct", "price": "49.95", "qty": 1}]}
            for i in range(n)]


def by_hand(o):
    return {"first_name": o["firstName"], "order_date": o["orderDate"], "list_id": "400",
            "email_address": o["emailAddress"], "campaign_number": str(o["campaignId"])}


def baseline(records, _profile):
    build = by_hand
    for o in records:
        build(o)


def exporter(records, profile):
    render = mapping.renderer_for(profile).from_order
    for o in records:
        render(o, "partial")


def exporter_lookup_per_order(records, profile):
    renderer_for = mapping.renderer_for
    for o in records:
        renderer_for(profile).from_order(o, "partial")


def exporter_flat_record(records, profile):
    renderer, record_from_order = mapping.renderer_for(profile), catalog.record_from_order
    for o in records:
        renderer(record_from_order(o, "partial"))


def timed(run, records, profile):
    started = time.perf_counter()
    run(records, profile)
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    records, profile = orders(args.records), SimpleNamespace(mappings=MODEL_MAPPINGS)
    renderer = mapping.renderer_for(profile)
    for o in records[:1000]:  # the work checked: the same pairs, in mapping order
        assert renderer.from_order(o, "partial") == list(by_hand(o).items())
    sides = {"exporter": exporter, "baseline": baseline, "lookup per order": exporter_lookup_per_order,
             "flat record": exporter_flat_record}
    times = {side: [] for side in sides}
    for run in sides.values():  # warm-up
        run(records[:1000], profile)
    for i in range(args.rounds):
        order = list(sides) if i % 2 == 0 else list(reversed(sides))
        for side in order:
            times[side].append(timed(sides[side], records, profile))
    median = {side: statistics.median(t) for side, t in times.items()}
    print(f"N = {args.records:,} orders, {args.rounds} rounds, medians")
    print(f"Exporter, renderer.from_order: {median['exporter']:.3f} s ({args.records / median['exporter']:,.0f}/s)")
    print(f"baseline, a hand-written dict build: {median['baseline']:.3f} s "
          f"({args.records / median['baseline']:,.0f}/s)")
    print(f"  (not in the ratio) renderer_for(profile) per order: {median['lookup per order']:.3f} s; "
          f"record_from_order + renderer(record): {median['flat record']:.3f} s")
    print(f"ratio (baseline time / Exporter time): {median['baseline'] / median['exporter']:.2f}")


if __name__ == "__main__":
    main()
