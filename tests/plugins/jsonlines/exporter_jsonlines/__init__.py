"""JSON Lines: each event's mapped pairs as one JSON object, appended as a line to a file."""
import json
import os

from wtforms import Form, StringField
from wtforms.validators import DataRequired, Optional, Regexp, ValidationError

from exporter.export_types import PER_EVENT, ExportType, Outcome


def writable_file_path(form, field):
    path = field.data or ""
    if not os.path.isabs(path):
        raise ValidationError("File Path must be absolute, e.g. /var/exports/partials.jsonl")
    if os.path.isdir(path):
        raise ValidationError("File Path names a directory; add a file name")
    if not os.path.isdir(os.path.dirname(path)):
        raise ValidationError(f"the directory {os.path.dirname(path)} does not exist")


class JsonLinesSettings(Form):
    path = StringField("File Path", validators=[DataRequired("File Path is required"), writable_file_path],
                       description="Each event is appended to this file as one JSON line")
    id_field = StringField("Idempotency Key Field",
                           validators=[Optional(), Regexp(r"^\w+$", message="letters, digits and _ only")],
                           description="When set, each line also carries the delivery's idempotency key under "
                                       "this name, so a reader can drop a line written twice")


class JsonLinesType(ExportType):
    key = "jsonlines"  # the entry-point name in pyproject.toml
    label = "JSON Lines file"
    schedule = PER_EVENT
    settings_form = JsonLinesSettings
    # send() keeps nothing on the instance and appends each line with one write(): a worker may
    # call it from several sender threads at once.
    thread_safe = True

    def describe(self):
        return self.settings.get("path", "")

    def line(self, row, idempotency_key):
        record = dict(row)
        if self.settings.get("id_field"):
            record[self.settings["id_field"]] = idempotency_key
        return json.dumps(record, ensure_ascii=False) + "\n"

    def preview(self, columns, row):
        return self.line(row, "preview")

    def send(self, batch):
        path = self.settings["path"]
        text = "".join(self.line(row, batch.idempotency_key) for row in batch.rows)
        outcome = Outcome(ok=False, method="APPEND", target=path, request_body=text)
        try:
            # One write() on an O_APPEND file: lines from several workers never interleave.
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)
        except OSError as exc:
            outcome.error = f"cannot append to {path}: {exc.strerror}"
            return outcome
        lines = text.count("\n")
        outcome.ok = True
        outcome.summary = f"appended {lines} JSON line{'' if lines == 1 else 's'} to {os.path.basename(path)}"
        outcome.details = {"file": path, "lines": lines}
        return outcome

    def test_connection(self, allow_private_targets=False):
        """Optional hook: can the file be appended to? Nothing is written."""
        path = self.settings["path"]
        directory = os.path.dirname(path)
        target = path if os.path.exists(path) else directory
        if os.path.isdir(directory) and os.access(target, os.W_OK):
            return Outcome(ok=True, method="CHECK", target=path, summary=f"{path} can be appended to")
        return Outcome(ok=False, method="CHECK", target=path, error=f"{path} cannot be written by Exporter")
