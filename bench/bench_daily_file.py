"""Flat memory for daily files: a day of 1,000,000 rows streamed from the database into an FTP upload.

Run it from the project folder (not a test; it takes a few minutes and ~1 GB of disk in /tmp):

    .venv/bin/python bench/bench_daily_file.py                 # 10,000-row baseline, then 1,000,000 rows
    .venv/bin/python bench/bench_daily_file.py --rows 200000   # a smaller day

For each size this script makes a SQLite database with a day of file rows for one route
of an FTP profile (bulk inserts), then builds and uploads that day's file to a pyftpdlib
server on loopback through dispatch.deliver(), as a worker does. The database is made and
the file sent in child processes of their own, so the send's peak RSS (resource.getrusage)
is that send's alone (the parent only serves FTP). It prints
rows, seconds and peak RSS for each size, and the ratio of the big day's peak to the
baseline's: flat memory means a ratio near 1.
"""
import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timedelta

BASELINE_ROWS = 10_000
DAY = date(2026, 11, 27)
CHUNK = 20_000
MAPPINGS = [
    {"export_name": "first_name", "field": "firstName"},
    {"export_name": "last_name", "field": "lastName"},
    {"export_name": "order_date", "field": "orderDate"},
    {"export_name": "list_id", "field": "static", "static_value": "400"},
    {"export_name": "email_address", "field": "emailAddress"},
    {"export_name": "phone", "field": "phoneNumber", "format": "digits"},
    {"export_name": "campaign_number", "field": "campaignId"},
    {"export_name": "product", "field": "productName"},
]


def app_for(db_url, files_dir):
    from exporter import create_app

    return create_app({"DATABASE_URL": db_url, "SECRET_KEY": "bench", "FILES_DIR": files_dir,
                       "ALLOW_PRIVATE_TARGETS": True, "REDIS_URL": None})


# --- the parent: a database per size, and the FTP server ------------------------------------

def start_ftp_server(root):
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import FTPServer

    logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
    logging.getLogger("pyftpdlib").addHandler(logging.NullHandler())
    authorizer = DummyAuthorizer()
    authorizer.add_user("bench", "bench-pw", root, perm="elradfmwMT")
    handler = type("Handler", (FTPHandler,), {"authorizer": authorizer})
    server = FTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"handle_exit": False}, daemon=True).start()
    return server.address[1]


def make_day(db_url, files_dir, rows, ftp_port):
    """A migrated SQLite database holding `rows` file rows of DAY for one route; the delivery's id."""
    from flask_migrate import upgrade
    from sqlalchemy import insert

    from exporter import profiles_io
    from exporter.extensions import db
    from exporter.models import Customer, Delivery, Event, FileRow, Profile

    app = app_for(db_url, files_dir)
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
        profiles_io.import_all({"version": 1, "profiles": [{
            "name": "Bench file", "export_type": "ftp", "mappings": MAPPINGS,
            "settings": {"protocol": "ftp", "host": "127.0.0.1", "port": ftp_port, "username": "bench",
                         "password": "bench-pw", "directory": "/", "time_zone": "UTC", "send_at": "01:00"},
            "routes": [{"customer_types": ["partial"], "campaigns": [], "products": []}]}]})
        profile = db.session.scalar(db.select(Profile))
        route_id = profile.routes[0].id
        start = datetime.combine(DAY, datetime.min.time())
        step = 86_400 / rows
        for first in range(0, rows, CHUNK):
            ids = range(first + 1, min(first + CHUNK, rows) + 1)
            at = [start + timedelta(seconds=(i - 1) * step) for i in ids]
            db.session.execute(insert(Customer), [
                {"id": i, "crm_customer_id": i, "email": f"c{i}@example.com", "first_name": f"First{i}",
                 "last_name": "Doe"} for i in ids])
            db.session.execute(insert(Event), [
                {"id": i, "event_key": f"evt-{i}", "type": "partial", "occurred_at": t, "received_at": t,
                 "customer_id": i, "order_id": 100000 + i, "campaign_id": 259, "is_test": False,
                 "order": order(i, t)} for i, t in zip(ids, at)])
            db.session.execute(insert(FileRow), [
                {"route_id": route_id, "event_id": i, "occurred_at": t} for i, t in zip(ids, at)])
            db.session.commit()
        delivery = Delivery(profile=profile, route_id=route_id, file_date=DAY, status="scheduled",
                            due_at=datetime(2000, 1, 1), target="127.0.0.1")
        db.session.add(delivery)
        db.session.commit()
        delivery_id = delivery.id
        db.engine.dispose()
    return delivery_id


def order(i, t):
    return {"orderId": 100000 + i, "customerId": i, "campaignId": 259, "campaignName": "Test Lander",
            "firstName": f"First{i}", "lastName": "Doe", "emailAddress": f"c{i}@example.com",
            "phoneNumber": f"555-{i % 10000:04d}", "orderDate": t.strftime("%Y-%m-%d %H:%M:%S"),
            "products": [{"productId": 33, "productName": "Keto 30ct", "price": "49.95", "qty": 1}]}


def child(*args):
    """Run this script as a child process; its last line of output, as JSON."""
    done = subprocess.run([sys.executable, __file__, *map(str, args)], capture_output=True, text=True)
    if done.returncode:
        sys.exit(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(rows, workdir, ftp_root, ftp_port):
    # Both steps in children: Linux carries a parent's peak RSS into a child's ru_maxrss,
    # so the parent stays small (an FTP server) and the send is measured alone.
    db_url = f"sqlite:///{workdir}/day-{rows}.sqlite"
    files_dir = os.path.join(workdir, "files")
    made = time.monotonic()
    delivery_id = child("--make", db_url, files_dir, rows, ftp_port)
    made = time.monotonic() - made
    result = child("--send", db_url, files_dir, delivery_id)
    uploaded = os.path.join(ftp_root, result["file_name"])
    with open(uploaded, "rb") as f:
        lines = sum(chunk.count(b"\r\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    assert result["status"] == "delivered" and result["rows"] == rows and lines == rows + 1, result
    os.unlink(uploaded)
    return {**result, "insert_seconds": made}


# --- the child: one send, measured ----------------------------------------------------------

def send(db_url, files_dir, delivery_id):
    from exporter import dispatch
    from exporter.extensions import db
    from exporter.models import Delivery

    app = app_for(db_url, files_dir)
    with app.app_context():
        started = time.monotonic()
        dispatch.deliver(delivery_id)
        seconds = time.monotonic() - started
        delivery = db.session.get(Delivery, delivery_id)
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux: this process's peak
        print(json.dumps({"status": delivery.status, "rows": delivery.details.get("rows"),
                          "bytes": delivery.details.get("bytes"), "file_name": delivery.details.get("file_name"),
                          "seconds": seconds, "peak_mb": peak_kb / 1024, "error": delivery.last_error}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--make", nargs=4, help=argparse.SUPPRESS)  # DB_URL FILES_DIR ROWS FTP_PORT
    parser.add_argument("--send", nargs=3, help=argparse.SUPPRESS)  # DB_URL FILES_DIR DELIVERY_ID
    args = parser.parse_args()
    if args.make:
        return print(json.dumps(make_day(args.make[0], args.make[1], int(args.make[2]), int(args.make[3]))))
    if args.send:
        return send(args.send[0], args.send[1], int(args.send[2]))
    with tempfile.TemporaryDirectory(prefix="bench-daily-file-") as workdir:
        ftp_root = os.path.join(workdir, "ftp")
        os.mkdir(ftp_root)
        port = start_ftp_server(ftp_root)
        results = [run(n, workdir, ftp_root, port) for n in (BASELINE_ROWS, args.rows)]
    print(f"{'rows':>10} {'insert s':>9} {'send s':>8} {'rows/s':>9} {'MB sent':>8} {'peak RSS MB':>12}")
    for r in results:
        print(f"{r['rows']:>10,} {r['insert_seconds']:>9.1f} {r['seconds']:>8.1f} {r['rows'] / r['seconds']:>9,.0f} "
              f"{r['bytes'] / 1e6:>8.1f} {r['peak_mb']:>12.1f}")
    ratio = results[1]["peak_mb"] / results[0]["peak_mb"]
    print(f"peak memory ratio, {results[1]['rows']:,} rows to {results[0]['rows']:,}: {ratio:.2f} (flat memory: near 1)")


if __name__ == "__main__":
    main()
