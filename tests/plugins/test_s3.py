"""The object-storage type against a real S3-compatible server on loopback (moto's standalone
server, ThreadedMotoServer): what it puts is read back by a real download."""
import gzip
import io
import socket
from datetime import timedelta

import pytest
import requests
from werkzeug.datastructures import MultiDict

from exporter.export_types import Batch
from exporter.files import daily_files
from exporter.models import Delivery, HistoryEntry
from exporter.extensions import db
from exporter_s3 import S3Settings, S3Type

from ..factories import event, make_profile
from ..files.test_daily_files import DAY, PARTIALS_259, all_delivered, at, deliveries, utc
from ..pgp import Partner

COLUMNS = ["first_name", "city"]
ROWS = [[("first_name", "Jane"), ("city", "Zürich")], [("first_name", "Joe"), ("city", "")]]
BUCKET = "partner-drop"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3_server():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    store = S3Store(f"http://127.0.0.1:{port}")
    requests.post(f"{store.url}/moto-api/reset", timeout=10)  # moto's buckets live as long as the process
    store.client.create_bucket(Bucket=BUCKET)
    yield store
    server.stop()


class S3Store:
    def __init__(self, url):
        self.url = url
        self.client = S3Type(self.settings()).client()

    def settings(self, **overrides):
        return {"bucket": BUCKET, "prefix": "in/", "region": "us-east-1", "url": self.url,
                "access_key_id": "test-key", "secret_access_key": "test-secret", "time_zone": "UTC",
                "send_at": "01:00", **overrides}

    def get(self, key):
        """A real download of the object: its bytes and what S3 says about it."""
        got = self.client.get_object(Bucket=BUCKET, Key=key)
        return got["Body"].read(), got

    def keys(self):
        return sorted(o["Key"] for o in self.client.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def batch(rows=ROWS, allow_private=True, work_dir=""):
    return Batch(columns=COLUMNS, rows=iter(rows), profile_name="Call center partials", idempotency_key="42",
                 route_id=7, file_date=DAY, allow_private_targets=allow_private, work_dir=work_dir)


# --- settings -------------------------------------------------------------------------------

def form(**data):
    values = {"bucket": BUCKET, "region": "us-east-1", **data}
    f = S3Settings(formdata=MultiDict({k: v for k, v in values.items() if v is not None}))
    f.validate()
    return f


def test_defaults_and_the_file_settings_every_file_type_shares():
    f = S3Settings()
    names = [field.short_name for field in f]
    assert names[:3] == ["bucket", "prefix", "region"] and "compression" in names and "pgp_key" in names
    assert f.region.data == "us-east-1" and f.server_side_encryption.data == ""
    assert form().errors == {}


@pytest.mark.parametrize("field,value,message", [
    ("bucket", "", "Bucket is required"),
    ("bucket", "Partner_Drop", "lower-case letters"),
    ("prefix", "/in", "no leading /"),
    ("url", "ftp://minio.example.com", "http:// or https://"),
    ("url", "http://bad\\host/", "Endpoint URL"),
    ("kms_key_id", "arn:aws:kms:eu-west-1:1:key/k", "for the encryption SSE-KMS only"),
    ("server_side_encryption", "rot13", "Not a valid choice"),
    ("file_name", "{yyyymmdd}.csv", None),
])
def test_bad_settings_are_named_beside_the_field(field, value, message):
    errors = form(**{field: value}).errors
    if message is None:
        assert errors == {}
    else:
        assert list(errors) == [field] and message in errors[field][0]


# --- the put, read back by a real download --------------------------------------------------

def test_the_file_is_put_under_the_prefix_and_downloads_byte_exact(s3_server):
    outcome = S3Type(s3_server.settings()).send(batch())
    assert outcome.ok, outcome.error
    key = "in/call-center-partials_7_" + f"{DAY:%Y%m%d}.csv"
    assert s3_server.keys() == [key]
    data, got = s3_server.get(key)
    assert data == "first_name,city\r\nJane,Zürich\r\nJoe,\r\n".encode()
    assert got["ContentType"] == "text/csv"
    assert outcome.method == "PUT" and outcome.target == f"s3://{BUCKET}/{key}"
    assert outcome.details["rows"] == 2 and outcome.details["bytes"] == len(data) and outcome.details["uploaded"]
    assert outcome.summary == f"file {key[3:]} put in s3://{BUCKET}/{key} (2 rows)"
    assert "test-secret" not in outcome.response_body + outcome.target


def test_gzip_pgp_and_server_side_encryption_round_trip(s3_server):
    partner = Partner()
    try:
        settings = s3_server.settings(file_name="{profile}_{yyyy}-{mm}-{dd}.csv.gz.pgp", compression="gzip",
                                      delimiter="semicolon", pgp_key=partner.public_key,
                                      server_side_encryption="AES256")
        outcome = S3Type(settings).send(batch())
        assert outcome.ok, outcome.error
        data, got = s3_server.get(f"in/call-center-partials_{DAY:%Y-%m-%d}.csv.gz.pgp")
        assert gzip.decompress(partner.decrypt(data)) == "first_name;city\r\nJane;Zürich\r\nJoe;\r\n".encode()
        assert got["ServerSideEncryption"] == "AES256" and got["ContentType"] == "application/pgp-encrypted"
        assert "ServerSideEncryption: AES256" in outcome.response_body
    finally:
        partner.close()


def test_a_missing_bucket_is_a_clear_error_and_nothing_is_left_in_the_work_dir(s3_server, tmp_path):
    outcome = S3Type(s3_server.settings(bucket="no-such-bucket")).send(batch(work_dir=str(tmp_path)))
    assert not outcome.ok
    assert outcome.error.startswith("put s3://no-such-bucket/in/")
    assert "NoSuchBucket" in outcome.error
    assert list(tmp_path.iterdir()) == []


def test_an_endpoint_on_a_private_address_is_refused_unless_allowed(s3_server):
    outcome = S3Type(s3_server.settings()).send(batch(allow_private=False))
    assert not outcome.ok and "127.0.0.1" in outcome.error and s3_server.keys() == []


def test_a_day_without_rows_is_not_put_unless_send_empty(s3_server):
    assert S3Type(s3_server.settings()).send(batch(rows=[])).details["uploaded"] is False
    assert s3_server.keys() == []
    assert S3Type(s3_server.settings(send_empty=True)).send(batch(rows=[])).ok
    assert len(s3_server.keys()) == 1


def test_test_connection_lists_the_prefix(s3_server):
    S3Type(s3_server.settings()).send(batch())
    outcome = S3Type(s3_server.settings()).test_connection(allow_private_targets=True)
    assert outcome.ok and outcome.summary == f"bucket {BUCKET} reached; 1 objects under in/"
    assert f"in/call-center-partials_7_{DAY:%Y%m%d}.csv" in outcome.response_body
    bad = S3Type(s3_server.settings(bucket="no-such-bucket")).test_connection(allow_private_targets=True)
    assert not bad.ok and "NoSuchBucket" in bad.error
    assert not S3Type(s3_server.settings()).test_connection().ok  # loopback, not allowed


# --- end to end: the core's daily file, kept copy, history and re-run -------------------------

def test_a_day_is_put_by_a_worker_kept_written_to_history_and_rerun(app, logged_in, post_events, run_jobs, s3_server):
    profile = make_profile(name="Bucket partials", export_type="s3", routes=[PARTIALS_259],
                           settings=s3_server.settings(file_name="{profile}_{yyyymmdd}.csv.gz", compression="gzip"))
    profile.created_at = utc(DAY, 12).replace(tzinfo=None)
    db.session.commit()
    post_events({"events": [event("e1", occurred_at=at(DAY, 8), firstName="Jane"),
                            event("e2", occurred_at=at(DAY, 9), firstName="Joe")]})
    daily_files.tick(now=utc(DAY + timedelta(days=1), 2))
    run_jobs(until=all_delivered)
    key = f"in/bucket-partials_{DAY:%Y%m%d}.csv.gz"
    first, _ = s3_server.get(key)
    assert gzip.decompress(first).count(b"\r\n") == 3
    delivery = deliveries()[0]
    assert delivery.details["key"] == key
    download = logged_in.get(f"/files/deliveries/{delivery.id}/download")
    assert download.status_code == 200 and gzip.decompress(download.data) == gzip.decompress(first)
    history = db.session.scalars(db.select(HistoryEntry.message).where(HistoryEntry.delivery_id == delivery.id)).all()
    assert history == [f"Export profile 'Bucket partials' fired: file bucket-partials_{DAY:%Y%m%d}.csv.gz put in "
                       f"s3://{BUCKET}/{key} (2 rows)"]  # one per customer in the file

    post_events(event("late", occurred_at=at(DAY, 10), firstName="Cy"))
    assert logged_in.post(f"/files/profiles/{profile.id}/rerun", data={"date": DAY.isoformat()}).status_code == 302
    run_jobs(until=all_delivered)
    again, _ = s3_server.get(key)
    assert gzip.decompress(again).count(b"\r\n") == 4 and s3_server.keys() == [key]
    assert db.session.get(Delivery, delivery.id).status == "delivered"
