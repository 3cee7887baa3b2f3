"""The copy of a daily file kept for download, and the day's rows as a send reads them.

The kept copy is the file as sent with sensitive values masked (and spreadsheet formulas always
neutralised, as an admin opens it in a spreadsheet), under FILES_DIR/deliveries/<delivery id>.csv:
in the same dialect, encoding and compression as the upload (a .gz or .zip file is kept
compressed, under the same .csv name), never encrypted (an admin reads it).
It is written beside the upload as the rows stream, kept once the file is delivered, replaced
by a re-run, deleted by retention or Forget (retention.py).

FileRows is a day's Batch.rows. Iterated (any export type), it yields the rendered pairs and
writes the kept copy as they pass. Handed to export_types.write_csv (the FTP type does), it
writes both files in one pass instead: each row rendered to one CSV line, written to both
files when they agree (no sensitive column, no cell a spreadsheet would run), in blocks, in the
upload's FileFormat.
"""
import contextlib
import csv
import os
import re

from flask import current_app

from .. import security
from ..export_types import FORMULA_STARTS, RFC_4180, CsvRows, csv_writer, encoding_error, neutralised, open_text, write_csv

# Lines gathered before each write to the files: a file write per row costs more than the row.
DEFAULT_LINES_PER_WRITE = 1000
# A cell starting with a formula character, in a row's cells joined by NUL (one search a row).
_FORMULA_CELL = re.compile("\x00[" + re.escape("".join(sorted(FORMULA_STARTS))) + "]")


class _Line:
    """A csv.writer's "file" whose write() hands back the line: writerow() returns it."""
    write = str


def line_writer(file_format=None):
    """cells -> their CSV line in the format's dialect (RFC 4180 by default), as csv_writer() writes it."""
    return csv.writer(_Line, **(file_format or RFC_4180).writer_options()).writerow


class KeptCopy:
    """The file as sent with sensitive values masked, under FILES_DIR, for the delivery page.

    Written beside the upload as the rows stream (same CSV form), kept only once the
    file is delivered; a re-run replaces it.
    """

    def __init__(self, delivery, renderer=None, header=True):
        self.path = kept_copy_path(delivery)
        self.part = self.path + ".part"
        self.renderer, self.header = renderer, header
        self.rows = None  # how many the file carried, once the stream is read to its end
        # The highest FileRow id it carried: a row stored later (during the upload) is not in it,
        # and its customer must not hear the file fired.
        self.carried = {}

    def stream(self, rows):
        os.makedirs(os.path.dirname(self.part), mode=0o700, exist_ok=True)
        count = 0
        masked = self.renderer.masked if self.renderer.masks else None
        with open_private(self.part) as f:
            writerow = csv_writer(f).writerow
            if self.header:
                writerow(kept_cells(self.renderer.columns))
            try:
                for row in rows:
                    writerow(kept_cells(value for _, value in (masked(row) if masked else row)))
                    count += 1
                    yield row
            finally:
                rows.close()
        self.rows = count

    def write_with(self, f, columns, rows, header=True, neutralise=False, file_format=None):
        """Write the upload into f (as export_types.write_csv would) and the kept copy (in the
        same format, unencrypted), in one pass over rows of values (closed at the end); the
        number of rows. A value f's encoding cannot hold raises FileEncodingError."""
        os.makedirs(os.path.dirname(self.part), mode=0o700, exist_ok=True)
        file_format = file_format or RFC_4180
        line, renderer, count = line_writer(file_format), self.renderer, 0
        masked = renderer.masked_values if renderer.masks else None
        upload, kept = [], []
        header_cells = [neutralised(name) for name in columns] if neutralise else list(columns)
        with open_private(self.part, binary=True) as raw, open_text(raw, file_format.unencrypted) as copy:
            try:
                if header:
                    f.write(line(header_cells))
            except UnicodeEncodeError as exc:
                raise encoding_error(header_cells, columns, 0, exc) from None
            if self.header:
                copy.write(line(kept_cells(renderer.columns)))
            try:
                for values in rows:
                    text = line(values)
                    try:
                        plain = _FORMULA_CELL.search("\x00" + "\x00".join(values)) is None
                    except TypeError:  # a value not text (a plugin's static number): cell by cell
                        plain = False
                    upload.append(text if plain or not neutralise else line([neutralised(v) for v in values]))
                    if plain and masked is None:
                        kept.append(text)
                    else:
                        kept.append(line(kept_cells(masked(values) if masked else values)))
                    count += 1
                    if count % DEFAULT_LINES_PER_WRITE == 0:
                        _write_lines(f, upload, copy, kept, columns, count, file_format)
                _write_lines(f, upload, copy, kept, columns, count, file_format)
            finally:
                rows.close()
        self.rows = count
        return count

    def keep(self, uploaded):
        """Keep the copy of a file that reached the server; drop one that did not. Kept or not."""
        if not os.path.exists(self.part):
            return False
        if uploaded:
            os.replace(self.part, self.path)
            return True
        os.unlink(self.part)
        return False


def _write_lines(upload_file, upload, copy_file, kept, columns, count, file_format):
    """Write the gathered lines to both files (one string when the two are the same lines) and
    forget them; count: the rows written with these."""
    text = "".join(upload)
    try:
        upload_file.write(text)
    except UnicodeEncodeError as exc:  # which line of the block: the first its encoding cannot hold
        codec = exc.encoding
        for number, line in enumerate(upload, count - len(upload) + 1):
            try:
                line.encode(codec)
            except UnicodeEncodeError as line_exc:
                cells = next(csv.reader([line], **file_format.writer_options()), [])
                raise encoding_error(cells, columns, number, line_exc) from None
        raise
    copy_file.write(text if kept == upload else "".join(kept))
    upload.clear()
    kept.clear()


def kept_cells(values):
    """A kept copy's cells: formulas always neutralised, as an admin opens it in a spreadsheet."""
    return [neutralised(value) for value in values]


def open_private(path, binary=False):
    """A new file only its owner may read (0600), whatever the umask: kept copies are
    customers' data. Text (UTF-8) unless binary."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return open(fd, "wb") if binary else open(fd, "w", encoding="utf-8", newline="")


def kept_copy_path(delivery):
    return os.path.join(_kept_copies_dir(), f"{delivery.id}.csv")


def _kept_copies_dir():
    return os.path.join(current_app.config["FILES_DIR"], "deliveries")


# The key of a delivery's details saying why its kept copy was deleted (retention, Forget).
KEPT_COPY_GONE = "kept_copy_deleted"


def kept_copy_ids():
    """The ids of the deliveries whose copy is kept (the folder holds only those)."""
    try:
        names = os.listdir(_kept_copies_dir())
    except FileNotFoundError:
        return []
    return sorted(int(name[:-4]) for name in names if re.fullmatch(r"[0-9]{1,18}\.csv", name))


def forget_kept_copies(deliveries, reason):
    """Say on each delivery why its kept copy goes (the caller commits, then delete_kept_copies:
    a copy left by a crash in between is found again by the next purge)."""
    for delivery in deliveries:
        delivery.details = {**(delivery.details or {}), KEPT_COPY_GONE: reason}


def delete_kept_copies(delivery_ids):
    """Delete the kept copies of these deliveries (those there are); how many."""
    deleted = 0
    for delivery_id in delivery_ids:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(_kept_copies_dir(), f"{delivery_id}.csv"))
            deleted += 1
    return deleted


class FileRows(CsvRows):
    """A day's rows as Batch.rows: one pass only (iterated, or written by write_csv)."""

    def __init__(self, copy, pairs, values):
        # pairs(), values(): the day's rows streamed from the database, rendered as pairs or as values.
        self.copy, self._pairs, self._values, self._open = copy, pairs, values, None

    def __iter__(self):
        if self._open is None:  # walked again: what is left of the one stream, as a generator gives
            self._open = self.copy.stream(self._pairs())
        return self._open

    def close(self):
        if self._open is not None:
            self._open.close()

    def write_csv(self, f, columns, header=True, neutralise=False, file_format=None):
        if self._open is not None:  # already walked (some of) it: the rest, row by row
            return write_csv(f, columns, self._open, header, neutralise, file_format)
        self._open = self._values()
        return self.copy.write_with(f, columns, self._open, header, neutralise, file_format)
