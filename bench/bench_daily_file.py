"""Daily file: a day of N rows streamed from the database into a CSV uploaded to a loopback FTP server.

    .venv/bin/python bench/bench_daily_file.py                      # 1,000,000 rows, 3 rounds, SQLite
    .venv/bin/python bench/bench_daily_file.py --rows 100000 --rounds 5
    .venv/bin/python bench/bench_daily_file.py --database-url postgresql://postgres@127.0.0.1/exporter_bench

Exporter: the worker's own job, exporter.jobs.drain() (then the sender thread it starts), on a day re-run as
`exporter files send` does (daily_files.rerun): claim, stream the rows, write the CSV and
the masked copy kept for download, upload (temporary name, then rename), write one history
message per customer. Baseline: a hand-written script: one SELECT of the same rows,
json.loads, csv.writer into a temporary file, ftplib upload. Both upload to the same
pyftpdlib server (in this parent process) and must upload byte-identical files.

Each side runs in a child process of its own, rounds interleaved (A B, B A, ...); the time is
from the app (or the script) being loaded to the upload being done, the peak RSS the child's
own high-water mark (VmHWM). Medians. Last line: the ratio of rows/s, Exporter to baseline.
The database (made once, with bulk inserts) holds the day's rows for one route of an FTP
profile mapping 8 fields, one customer per row; the history the product writes is emptied
between rounds, outside the timing.

Then the same day as a partner's file spec asks for it (issue 26): gzip, then PGP to the partner's
key (a key pair made for the run by Debian's gpg). Exporter: the command a user runs,
`exporter files send --profile ... --date ... --now`, in a process of its own, timed from its
start to its exit (start-up, the migration check and the re-run included). Baseline: the bare
pipeline in a process of its own, timed the same way: SELECT, csv.writer, gzip (same level, no
name, no time, so the same bytes), then `gpg --encrypt` to the same key, ftplib upload. The two
uploads are decrypted with the secret key and decompressed after each round: same CSV, every
row. Peak RSS: the process's high-water mark as its exit status reports it (os.wait4's
ru_maxrss; for the baseline, its Python process, gpg apart). Its last line is this row's ratio.
"""
import argparse
import gzip
import hashlib
import io
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timedelta

DAY = date(2026, 11, 27)
PROFILE = "Bench file"
PGP_PROFILE = "Bench file gzip pgp"
PGP_FILE_NAME = "{profile}_{route}_{date:%Y%m%d}.csv.gz.pgp"
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


def config(db_url, workdir):
    """The product's configuration, as a worker gets it: EXPORTER_* variables."""
    return {"EXPORTER_DATABASE_URL": db_url, "EXPORTER_SECRET_KEY": "bench", "EXPORTER_REDIS_URL": "",
            "EXPORTER_FILES_DIR": os.path.join(workdir, "files"), "EXPORTER_INSTANCE_PATH": workdir,
            "EXPORTER_ALLOW_PRIVATE_TARGETS": "true"}


def peak_mb():
    """This process's own peak RSS (VmHWM: not the parent's, which ru_maxrss carries over exec)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


# --- the parent: the FTP server, the day, the rounds ----------------------------------------

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


def child(env, *args):
    """Run this script as a child process with the product's configuration; its last line, as JSON."""
    done = subprocess.run([sys.executable, __file__, *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **env})
    if done.returncode:
        sys.exit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def checked(result, ftp_root, rows):
    """The uploaded file: every row and the header, then its digest (both sides must agree)."""
    path = os.path.join(ftp_root, result["file_name"])
    digest, lines = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
            lines += chunk.count(b"\r\n")
    os.unlink(path)
    assert lines == rows + 1, (result, lines)
    return digest.hexdigest()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", help="default: a SQLite file in a temporary directory")
    parser.add_argument("--files", default="plain,gzip-pgp",
                        help="which files, comma-separated: plain (the worker's job), gzip-pgp (`exporter files send "
                             "--now`); default both")
    parser.add_argument("--side", choices=["make", "reset", "exporter", "baseline", "pgp-baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        return print(json.dumps({"make": make_day, "reset": reset_history, "exporter": exporter_side,
                                  "baseline": baseline_side, "pgp-baseline": pgp_baseline_side}[args.side](
            args.rows, args.port)))
    with tempfile.TemporaryDirectory(prefix="bench-daily-file-") as workdir:
        ftp_root = os.path.join(workdir, "ftp")
        os.mkdir(ftp_root)
        port = start_ftp_server(ftp_root)
        env = config(args.database_url or f"sqlite:///{workdir}/day.sqlite", workdir)
        files = args.files.split(",")
        if "gzip-pgp" in files:
            env.update(make_key_pair(workdir))
        made = time.monotonic()
        made_day = child(env, "--side", "make", "--rows", args.rows, "--port", port)
        if PGP_PROFILE in made_day["route_ids"]:
            env["BENCH_PGP_ROUTE_ID"] = str(made_day["route_ids"][PGP_PROFILE])
        print(f"N = {args.rows:,} rows, {args.rounds} rounds, {env['EXPORTER_DATABASE_URL'].split(':')[0]}; "
              f"day made in {time.monotonic() - made:.0f} s")
        if "plain" in files:
            plain_rounds(args, env, ftp_root, port)
        if "gzip-pgp" in files:
            pgp_rounds(args, env, ftp_root, port)


def plain_rounds(args, env, ftp_root, port):
    """The plain CSV: the worker's job in a child against SELECT + csv.writer + ftplib."""
    runs = {"exporter": [], "baseline": []}
    digests = set()
    for i in range(args.rounds):
        for side in ("exporter", "baseline") if i % 2 == 0 else ("baseline", "exporter"):
            if side == "exporter":
                child(env, "--side", "reset", "--rows", args.rows, "--port", port)
            result = child(env, "--side", side, "--rows", args.rows, "--port", port)
            digests.add(checked(result, ftp_root, args.rows))
            runs[side].append(result)
            print_round(i, side, args.rows, result)
    assert len(digests) == 1, "Exporter and the baseline uploaded different files"
    summary(runs, args.rows, "SELECT + csv.writer + ftplib")


def pgp_rounds(args, env, ftp_root, port):
    """gzip + PGP: `exporter files send --now` against SELECT, csv, gzip, gpg (+ ftplib), both timed
    from process start to exit."""
    print(f"gzip + PGP: `exporter files send --profile '{PGP_PROFILE}' --now` / SELECT, csv, gzip, gpg, ftplib")
    exporter = os.path.join(os.path.dirname(sys.executable), "exporter")
    command = {"exporter": [exporter, "files", "send", "--profile", PGP_PROFILE, "--date", DAY.isoformat(), "--now"],
               "baseline": [sys.executable, __file__, "--side", "pgp-baseline", "--rows", args.rows, "--port", port]}
    runs = {"exporter": [], "baseline": []}
    digests = set()
    for i in range(args.rounds):
        for side in ("exporter", "baseline") if i % 2 == 0 else ("baseline", "exporter"):
            if side == "exporter":
                child(env, "--side", "reset", "--rows", args.rows, "--port", port)
            result = timed_process(command[side], env)
            digests.add(decrypted_and_checked(ftp_root, args.rows, env))
            runs[side].append(result)
            print_round(i, side, args.rows, result)
    assert len(digests) == 1, "Exporter and the baseline uploaded different CSVs"
    print(f"  (this script's own peak RSS, a floor of what a child's ru_maxrss can show: {peak_mb():.0f} MB)")
    summary(runs, args.rows, "SELECT, csv, gzip, gpg, ftplib")


def print_round(i, side, rows, result):
    print(f"  round {i + 1} {side:8}: {rows / result['seconds']:>9,.0f} rows/s "
          f"({result['seconds']:.2f} s), peak RSS {result['peak_mb']:.0f} MB")


def summary(runs, rows, baseline):
    rate = {side: rows / statistics.median(r["seconds"] for r in results) for side, results in runs.items()}
    peak = {side: statistics.median(r["peak_mb"] for r in results) for side, results in runs.items()}
    print(f"Exporter: {rate['exporter']:,.0f} rows/s, peak RSS {peak['exporter']:.0f} MB (medians)")
    print(f"baseline: {rate['baseline']:,.0f} rows/s, peak RSS {peak['baseline']:.0f} MB ({baseline})")
    print(f"ratio (rows/s, Exporter / baseline, N = {rows:,}): {rate['exporter'] / rate['baseline']:.2f}")


def timed_process(command, env):
    """Run a process; its wall time from start to exit, and its peak RSS as its exit reports it."""
    with tempfile.TemporaryFile() as out:
        started = time.monotonic()
        process = subprocess.Popen([*map(str, command)], stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, **env})
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.monotonic() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode:
            out.seek(0)
            sys.exit(f"{command[1:3]} exited {process.returncode}: {out.read()[-3000:].decode()}")
    return {"seconds": seconds, "peak_mb": usage.ru_maxrss / 1024}


def make_key_pair(workdir):
    """The partner's key pair (secret half kept here to decrypt), and a keyring holding only its
    public half for the baseline's gpg. Their paths, as the children's environment."""
    home, public_home = os.path.join(workdir, "gpg"), os.path.join(workdir, "gpg-public")
    gpg = ["gpg", "--batch", "--yes", "--homedir"]
    for h in (home, public_home):
        os.mkdir(h, 0o700)
    subprocess.run([*gpg, home, "--passphrase", "", "--pinentry-mode", "loopback", "--quick-gen-key",
                    "Bench <bench@example.com>", "future-default", "default", "30d"], check=True, capture_output=True)
    public = subprocess.run([*gpg, home, "--armor", "--export"], check=True, capture_output=True).stdout
    subprocess.run([*gpg, public_home, "--import"], input=public, check=True, capture_output=True)
    key_file = os.path.join(workdir, "partner.asc")
    with open(key_file, "wb") as f:
        f.write(public)
    return {"BENCH_GPG_HOME": home, "BENCH_GPG_PUBLIC_HOME": public_home, "BENCH_PGP_KEY_FILE": key_file}


def decrypted_and_checked(ftp_root, rows, env):
    """The one file uploaded, decrypted with the secret key and decompressed: every row and the
    header; its digest (both sides must agree). The file is removed."""
    (name,) = os.listdir(ftp_root)
    path = os.path.join(ftp_root, name)
    assert name.endswith(".csv.gz.pgp"), name
    gpg = subprocess.Popen(["gpg", "--batch", "--quiet", "--homedir", env["BENCH_GPG_HOME"], "--decrypt", path],
                           stdout=subprocess.PIPE)
    digest, lines = hashlib.sha256(), 0
    with gzip.GzipFile(fileobj=gpg.stdout) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
            lines += chunk.count(b"\r\n")
    assert gpg.wait() == 0
    os.unlink(path)
    assert lines == rows + 1, (name, lines)
    return digest.hexdigest()


# --- the children ---------------------------------------------------------------------------

def make_day(rows, ftp_port):
    """A migrated database holding `rows` file rows of DAY for one route of an FTP profile."""
    from flask_migrate import upgrade
    from sqlalchemy import text

    from exporter import create_app
    from exporter.profiles import as_code as profiles_io
    from exporter.extensions import db
    from exporter.models import Profile

    settings = {"protocol": "ftp", "host": "127.0.0.1", "port": ftp_port, "username": "bench",
                "password": "bench-pw", "directory": "/", "time_zone": "UTC", "send_at": "01:00"}
    profiles = [{"name": PROFILE, "export_type": "ftp", "mappings": MAPPINGS, "settings": settings,
                 "routes": [{"customer_types": ["partial"], "campaigns": [], "products": []}]}]
    if os.environ.get("BENCH_PGP_KEY_FILE"):  # the same day, gzip then PGP, for a route of its own
        with open(os.environ["BENCH_PGP_KEY_FILE"]) as f:
            profiles.append({**profiles[0], "name": PGP_PROFILE, "settings": {
                **settings, "compression": "gzip", "pgp_key": f.read(), "file_name": PGP_FILE_NAME}})
    app = create_app()
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
        profiles_io.import_all({"version": 1, "profiles": profiles})
        route_ids = {p["name"]: db.session.scalar(db.select(Profile).where(Profile.name == p["name"])).routes[0].id
                     for p in profiles}
        sql = SQLITE_DAY if db.engine.dialect.name == "sqlite" else POSTGRESQL_DAY
        for statement in sql.strip().split(";"):
            db.session.execute(text(statement), {"n": rows, "route_id": route_ids[PROFILE]})
        if PGP_PROFILE in route_ids:
            db.session.execute(text("INSERT INTO file_rows (route_id, event_id, occurred_at) SELECT :to, event_id, "
                                    "occurred_at FROM file_rows WHERE route_id = :route_id"),
                               {"to": route_ids[PGP_PROFILE], "route_id": route_ids[PROFILE]})
        db.session.commit()
    return {"rows": rows, "route_ids": route_ids}


# A day of n rows made inside the database (fast): row i, customer i, one product, times spread over the day,
# stored as SQLAlchemy stores them. The order is the CRM's JSON.
SQLITE_DAY = """
CREATE TEMP TABLE day AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :n)
  SELECT i, strftime('%Y-%m-%d %H:%M:%f', '2026-11-27', '+' || ((i - 1) * 86400.0 / :n) || ' seconds') || '000' AS at
  FROM n;
INSERT INTO customers (id, crm_customer_id, email, first_name, last_name, phone, created_at)
  SELECT i, i, 'c' || i || '@example.com', 'First' || i, 'Doe', '', at FROM day;
INSERT INTO events (id, event_key, type, occurred_at, received_at, customer_id, order_id, campaign_id, is_test, "order")
  SELECT i, 'evt-' || i, 'partial', at, at, i, 100000 + i, 259, 0, json_object(
    'orderId', 100000 + i, 'customerId', i, 'campaignId', 259, 'campaignName', 'Test Lander',
    'firstName', 'First' || i, 'lastName', 'Doe', 'emailAddress', 'c' || i || '@example.com',
    'phoneNumber', printf('555-%04d', i % 10000), 'orderDate', substr(at, 1, 19),
    'products', json_array(json_object('productId', 33, 'productName', 'Keto 30ct', 'price', '49.95', 'qty', 1)))
  FROM day;
INSERT INTO file_rows (route_id, event_id, occurred_at) SELECT :route_id, i, at FROM day;
DROP TABLE day
"""
POSTGRESQL_DAY = """
CREATE TEMP TABLE day AS SELECT i, timestamp '2026-11-27' + (i - 1) * interval '1 second' * 86400.0 / :n AS at
  FROM generate_series(1, :n) AS i;
INSERT INTO customers (id, crm_customer_id, email, first_name, last_name, phone, created_at)
  SELECT i, i, 'c' || i || '@example.com', 'First' || i, 'Doe', '', at FROM day;
INSERT INTO events (id, event_key, type, occurred_at, received_at, customer_id, order_id, campaign_id, is_test, "order")
  SELECT i, 'evt-' || i, 'partial', at, at, i, 100000 + i, 259, false, json_build_object(
    'orderId', 100000 + i, 'customerId', i, 'campaignId', 259, 'campaignName', 'Test Lander',
    'firstName', 'First' || i, 'lastName', 'Doe', 'emailAddress', 'c' || i || '@example.com',
    'phoneNumber', '555-' || lpad((i % 10000)::text, 4, '0'), 'orderDate', to_char(at, 'YYYY-MM-DD HH24:MI:SS'),
    'products', json_build_array(json_build_object('productId', 33, 'productName', 'Keto 30ct', 'price', '49.95',
                                                   'qty', 1)))
  FROM day;
INSERT INTO file_rows (route_id, event_id, occurred_at) SELECT :route_id, i, at FROM day;
SELECT setval(pg_get_serial_sequence(t, 'id'), (SELECT max(i) FROM day)) FROM unnest(ARRAY['customers', 'events']) AS t;
DROP TABLE day
"""


def reset_history(_rows, _port):
    """The last round's history, deleted in a process of its own so each round writes the same
    (SQLite's deleting a million rows would otherwise count in the exporter side's peak RSS)."""
    from exporter import create_app
    from exporter.extensions import db
    from exporter.models import HistoryEntry

    with create_app().app_context():
        db.session.execute(HistoryEntry.__table__.delete())
        db.session.commit()
    return {}


def exporter_side(rows, _port):
    """The day re-run (as `exporter files send` does), then sent by the worker's own job function:
    a drain claims it and a sender thread of the worker's engine sends it."""
    from exporter import create_app, jobs
    from exporter.files import daily_files
    from exporter.delivery import drain
    from exporter.extensions import db
    from exporter.models import Delivery, HistoryEntry, Profile

    app = create_app()
    jobs.set_app(app)  # as `exporter worker` does: the app is loaded once, before any job
    with app.app_context():
        profile = db.session.scalar(db.select(Profile).where(Profile.name == PROFILE))
        (delivery,), _ = daily_files.rerun(profile, DAY, enqueue=False)
        delivery_id = delivery.id
        db.session.remove()
    started = time.monotonic()
    jobs.drain()
    drain.wait_idle()
    seconds = time.monotonic() - started
    with app.app_context():
        delivery = db.session.get(Delivery, delivery_id)
        history = db.session.scalar(db.select(db.func.count()).select_from(HistoryEntry))
        assert (delivery.status, delivery.details["rows"], history) == ("delivered", rows, rows), \
            (delivery.status, delivery.last_error, delivery.details, history)
        return {"seconds": seconds, "peak_mb": peak_mb(), "file_name": delivery.details["file_name"]}


def baseline_side(rows, port):
    """By hand: SELECT the day's rows, csv.writer into a temporary file, ftplib upload."""
    started = time.monotonic()
    name = f"baseline_{DAY:%Y%m%d}.csv"
    with tempfile.TemporaryFile("w+b") as f:
        write_day(f, route_id=1)
        f.seek(0)
        upload(f, name, port)
    return {"seconds": time.monotonic() - started, "peak_mb": peak_mb(), "file_name": name}


def pgp_baseline_side(rows, port):
    """By hand: SELECT, csv.writer into gzip (the product's level, no name, no time), then
    `gpg --encrypt` to the partner's key (no compression of its own, as the product asks), ftplib."""
    name = f"baseline_{DAY:%Y%m%d}.csv.gz.pgp"
    with tempfile.NamedTemporaryFile("w+b") as f, tempfile.TemporaryFile("w+b") as encrypted:
        with gzip.GzipFile(filename="", mode="wb", fileobj=f, compresslevel=6, mtime=0) as gz:
            write_day(gz, route_id=int(os.environ["BENCH_PGP_ROUTE_ID"]))
        f.flush()
        subprocess.run(["gpg", "--batch", "--quiet", "--homedir", os.environ["BENCH_GPG_PUBLIC_HOME"],
                        "--trust-model", "always", "--compress-algo", "none", "--recipient", "bench@example.com",
                        "--encrypt", "--output", "-", f.name], stdout=encrypted, check=True)
        encrypted.seek(0)
        upload(encrypted, name, port)
    return {"file_name": name}


def write_day(binary, route_id):
    """The day's rows of the route, SELECTed, decoded and written by csv.writer into `binary`."""
    import csv
    import re

    url = os.environ["EXPORTER_DATABASE_URL"]
    start = datetime.combine(DAY, datetime.min.time())
    query = ('SELECT e."order" FROM events e JOIN file_rows f ON f.event_id = e.id '
             "WHERE f.route_id = {p} AND f.occurred_at >= {p} AND f.occurred_at < {p} AND NOT e.is_test "
             "ORDER BY f.occurred_at, f.id")
    if url.startswith("sqlite"):
        import sqlite3

        connection = sqlite3.connect(url.split("///", 1)[1])
        cursor = connection.execute(query.format(p="?"), (route_id, f"{start:%Y-%m-%d %H:%M:%S.%f}",
                                                          f"{start + timedelta(days=1):%Y-%m-%d %H:%M:%S.%f}"))
    else:
        import psycopg

        connection = psycopg.connect(url.replace("postgresql+psycopg", "postgresql"))
        cursor = connection.cursor(name="day")  # server-side: the day is never held whole
        cursor.execute(query.format(p="%s"), (route_id, start, start + timedelta(days=1)))
    not_digits = re.compile(r"\D")
    text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow([m["export_name"] for m in MAPPINGS])
    for (o,) in cursor:
        o = json.loads(o) if isinstance(o, str) else o
        writer.writerow((o.get("firstName", ""), o.get("lastName", ""), o.get("orderDate", ""), "400",
                         o.get("emailAddress", ""), not_digits.sub("", o.get("phoneNumber", "")),
                         o.get("campaignId", ""), ",".join(p["productName"] for p in o.get("products", []))))
    text.detach()  # flushed; binary stays open
    connection.close()


def upload(f, name, port):
    import ftplib

    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", port)
    ftp.login("bench", "bench-pw")
    ftp.storbinary(f"STOR {name}.part", f)
    ftp.rename(f"{name}.part", name)
    ftp.quit()


if __name__ == "__main__":
    main()
