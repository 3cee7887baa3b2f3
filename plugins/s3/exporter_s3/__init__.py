"""The object-storage export type: one file per route per day, put in an S3-compatible bucket.

The same daily file as the FTP type (the contract's FileSettings and write_file: name template,
dialect, compression, PGP; the core's schedule, retries, kept copy, history and re-runs), put
with boto3 under `<prefix>/<file name>`. An object appears whole or not at all, so no temporary
name is needed; a re-run replaces it. Amazon S3 by default; any S3-compatible store (MinIO,
Ceph, R2, ...) through its Endpoint URL.
"""
import contextlib
import os
import re
import time
from datetime import date

from wtforms import PasswordField, SelectChoice, SelectField, StringField, URLField
from wtforms.validators import DataRequired, Optional, ValidationError

from exporter.export_types import (DAILY_FILE, ExportType, FileEncodingError, FileSettings, Outcome, PgpKeyError,
                                   TargetRefused, csv_text, parse_target, resolve_target, write_file)

ENCRYPTIONS = [SelectChoice("", "None (the bucket's default)"), SelectChoice("AES256", "SSE-S3 (AES256)"),
               SelectChoice("aws:kms", "SSE-KMS (aws:kms)")]
DEFAULT_REGION = "us-east-1"
CONNECT_TIMEOUT, READ_TIMEOUT = 10, 60
CONTENT_TYPES = {".gz": "application/gzip", ".zip": "application/zip", ".pgp": "application/pgp-encrypted",
                 ".gpg": "application/pgp-encrypted"}
# S3's rules for a bucket name (3-63 lower-case letters, digits, dots and hyphens).
BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


# --- settings -------------------------------------------------------------------------------

def _bucket(form, field):
    if not BUCKET.fullmatch((field.data or "").strip()) or ".." in field.data:
        raise ValidationError("Bucket is 3 to 63 lower-case letters, digits, dots and hyphens, e.g. partner-drop")


def _prefix(form, field):
    text = field.data or ""
    if text.startswith("/") or any(c in text for c in "\r\n\x00\\"):
        raise ValidationError("Prefix is a folder in the bucket like exports/partials/ (no leading /, backslash "
                              "or line break)")


def _endpoint(form, field):
    try:
        target = parse_target((field.data or "").strip())
    except TargetRefused as exc:
        raise ValidationError(f"Endpoint URL {exc}")
    if target.scheme not in ("http", "https") or not target.host:
        raise ValidationError("Endpoint URL is an http:// or https:// URL, e.g. https://minio.example.com:9000")


def _kms_key(form, field):
    if field.data and form.server_side_encryption.data != "aws:kms":
        raise ValidationError("KMS Key ID is for the encryption SSE-KMS only")


class S3Settings(FileSettings):
    """The bucket and how to reach it; the file's name, schedule and format come after (FileSettings)."""
    bucket = StringField("Bucket", validators=[DataRequired("Bucket is required"), _bucket])
    prefix = StringField("Prefix", validators=[_prefix],
                         description="A folder in the bucket, e.g. exports/partials/. Empty: the bucket's top.")
    region = StringField("Region", default=DEFAULT_REGION, validators=[Optional()],
                         description=f"e.g. eu-west-1. Empty: {DEFAULT_REGION}.")
    # Named `url`: the core takes the target host for per-host limits and the private-address check from it.
    url = URLField("Endpoint URL", validators=[Optional(), _endpoint],
                   description="For an S3-compatible store that is not Amazon S3 (MinIO, Ceph, R2...). "
                               "Empty: Amazon S3.")
    access_key_id = StringField("Access Key ID",
                                description="Empty: the credentials of the host running Exporter (its environment, "
                                            "or its instance role).")
    secret_access_key = PasswordField("Secret Access Key")
    server_side_encryption = SelectField("Server-Side Encryption", choices=ENCRYPTIONS, default="")
    kms_key_id = StringField("KMS Key ID", validators=[Optional(), _kms_key],
                             description="SSE-KMS: the key's id or ARN. Empty: the account's default KMS key.")


# --- the type -------------------------------------------------------------------------------

def _error_text(exc):
    """What S3 said (its error code and message), or what went wrong on the way, in plain words first."""
    response = getattr(exc, "response", None)
    if response:
        error, status = response.get("Error", {}), response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = error.get("Code") or "error"
        return f"HTTP {status} {code}: {error.get('Message') or ''}".strip()
    name = type(exc).__name__
    if name == "EndpointConnectionError":
        return f"connection refused or no route to the endpoint\n{name}: {exc}"
    if "Timeout" in name:
        return f"timed out\n{name}: {exc}"
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return f"no credentials: set the Access Key ID and Secret Access Key\n{name}: {exc}"
    return f"{name}: {exc}"


class S3Type(ExportType):
    key = "s3"
    label = "Object storage (S3)"
    schedule = DAILY_FILE
    settings_form = S3Settings
    secret_settings = ("secret_access_key",)

    @property
    def bucket(self):
        return (self.settings.get("bucket") or "").strip()

    @property
    def endpoint(self):
        return (self.settings.get("url") or "").strip()

    def object_key(self, name):
        prefix = (self.settings.get("prefix") or "").strip().strip("/")
        return f"{prefix}/{name}" if prefix else name

    def describe(self):
        where = f" at {self.endpoint}" if self.endpoint else ""
        return f"s3://{self.bucket}/{self.object_key('')}{where}"

    def preview(self, columns, row):
        file_format = self.file_format()
        return csv_text(columns, [row], file_format.header, file_format.neutralise, file_format)

    def check_target(self, allow_private):
        """The endpoint's host resolved and checked (TargetRefused names it); Amazon's needs no check."""
        if self.endpoint:
            target = parse_target(self.endpoint)
            resolve_target(target.host, target.port, allow_private)

    def client(self):
        import boto3  # loaded by the sends that use it, not by every process that lists the types
        from botocore.config import Config

        s = self.settings
        config = Config(connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
                        retries={"mode": "standard", "max_attempts": 2},  # the core retries the file itself
                        s3={"addressing_style": "path" if self.endpoint else "auto"})
        return boto3.session.Session().client(
            "s3", region_name=(s.get("region") or DEFAULT_REGION).strip(), endpoint_url=self.endpoint or None,
            aws_access_key_id=s.get("access_key_id") or None, aws_secret_access_key=s.get("secret_access_key") or None,
            config=config)

    def put_args(self, name):
        args = {"ContentType": CONTENT_TYPES.get(os.path.splitext(name)[1], "text/csv")}
        if self.settings.get("server_side_encryption"):
            args["ServerSideEncryption"] = self.settings["server_side_encryption"]
            if args["ServerSideEncryption"] == "aws:kms" and self.settings.get("kms_key_id"):
                args["SSEKMSKeyId"] = self.settings["kms_key_id"].strip()
        return args

    def send(self, batch):
        name = self.file_name(batch.profile_name, batch.route_id if batch.route_id is not None else batch.route_name,
                              batch.file_date or date.today(), batch.is_test)
        key = self.object_key(name)
        outcome = Outcome(ok=False, method="PUT", target=f"s3://{self.bucket}/{key}")
        try:
            self.check_target(batch.allow_private_targets)
        except TargetRefused as exc:
            outcome.error = str(exc)
            return outcome
        started = time.monotonic()
        try:
            written = write_file(batch, self.file_format(name), name)
        except (FileEncodingError, PgpKeyError) as exc:  # the file cannot be made as the settings say
            outcome.error = f"file {name} not made: {exc}"
            return outcome
        try:
            outcome.details = {"file_name": name, "key": key, "rows": written.rows, "bytes": written.size,
                               "sha256": written.sha256}
            outcome.request_body = f"{key}: {written.rows} rows, {written.size} bytes, sha256 {written.sha256}"
            if written.rows == 0 and not self.settings.get("send_empty"):
                outcome.ok, outcome.details["uploaded"] = True, False
                outcome.summary = f"file {name} not uploaded: no rows (Send Empty Files is off)"
                return outcome
            self._put(written.path, key, name, outcome)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(written.path)
            outcome.elapsed_ms = int((time.monotonic() - started) * 1000)
        outcome.details["uploaded"] = outcome.ok
        if outcome.ok:
            outcome.summary = f"file {name} put in s3://{self.bucket}/{key} ({written.rows} rows)"
        return outcome

    def _put(self, path, key, name, outcome):
        from boto3.exceptions import S3UploadFailedError
        from boto3.s3.transfer import TransferConfig
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            client = self.client()
            # One part at a time: a large file never holds more than a part (8 MB) in memory.
            client.upload_file(path, self.bucket, key, ExtraArgs=self.put_args(name),
                               Config=TransferConfig(use_threads=False))
            head = client.head_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError, S3UploadFailedError) as exc:
            said = exc.__context__ if isinstance(exc, S3UploadFailedError) and exc.__context__ else exc  # S3's answer
            outcome.error = f"put s3://{self.bucket}/{key} failed: {_error_text(said)}"
            return
        outcome.status = head["ResponseMetadata"]["HTTPStatusCode"]
        outcome.response_body = "\n".join(f"{k}: {head[k]}" for k in
                                          ("ETag", "ContentLength", "ContentType", "ServerSideEncryption", "SSEKMSKeyId")
                                          if head.get(k) is not None)
        outcome.details["etag"] = head.get("ETag", "").strip('"')
        outcome.ok = True

    def test_connection(self, allow_private_targets=False):
        """Reach the bucket and list the first objects under the Prefix; nothing is written."""
        from botocore.exceptions import BotoCoreError, ClientError

        prefix = self.object_key("")
        outcome = Outcome(ok=False, method="LIST", target=f"s3://{self.bucket}/{prefix}")
        started = time.monotonic()
        try:
            self.check_target(allow_private_targets)
            listing = self.client().list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=20)
        except TargetRefused as exc:
            outcome.error = str(exc)
        except (BotoCoreError, ClientError) as exc:
            outcome.error = f"list s3://{self.bucket}/{prefix} failed: {_error_text(exc)}"
        else:
            objects = listing.get("Contents", [])
            outcome.ok, outcome.status = True, listing["ResponseMetadata"]["HTTPStatusCode"]
            more = " or more" if listing.get("IsTruncated") else ""
            outcome.summary = f"bucket {self.bucket} reached; {len(objects)}{more} objects under " \
                              f"{prefix or 'its top'}"
            outcome.response_body = "\n".join(f"{o['Key']}  {o['Size']} bytes  {o['LastModified']:%Y-%m-%d %H:%M}"
                                              for o in objects)
        outcome.elapsed_ms = int((time.monotonic() - started) * 1000)
        return outcome
