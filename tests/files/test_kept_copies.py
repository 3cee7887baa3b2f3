"""A day's file written in one pass (FileRows through write_csv) is byte for byte the file, and the
kept copy, that the rows iterated one by one make (the path any export type may take); the
day's orders decode as json.loads decodes them."""
import io
from types import SimpleNamespace

import pytest

from exporter.files import daily_files
from exporter import mapping
from exporter.export_types import write_csv
from exporter.files.kept_copies import FileRows, KeptCopy

from ..plugins.conftest import ftp_server  # noqa: F401 - a fixture
from .test_daily_files import CARD, DAY, at, ftp_profile, event

# Cells a spreadsheet would run, plain numbers it would not, and what CSV must quote.
NAMES = ["=SUM(A1)", "-49.95", "+1 555", "@cmd", "-x", 'Ann "A", Jr', "two\nlines", "Zoë", "", "\tTab"]
PLAIN = [{"export_name": "=first", "field": "firstName"}, {"export_name": "list_id", "field": "static",
                                                           "static_value": "400"},
         {"export_name": "phone", "field": "phoneNumber", "format": "digits"},
         {"export_name": "product", "field": "productName"}]
WITH_CARD = PLAIN + [{"export_name": "card", "field": "cardNumber"}]


def written(profile, delivery_id, one_pass, header, neutralise):
    """(rows, the upload's text, the kept copy's bytes) of the profile's day, one way or the other."""
    renderer, route = mapping.renderer_for(profile), profile.routes[0]
    copy = KeptCopy(SimpleNamespace(id=delivery_id), renderer, header=header)
    day = (profile, route.id, DAY, renderer)
    rows = FileRows(copy, lambda: daily_files.rendered_rows(*day, yield_per=3),
                    lambda: daily_files.rendered_rows(*day, yield_per=3, values=True))
    f = io.StringIO(newline="")
    count = write_csv(f, renderer.columns, rows if one_pass else iter(rows), header, neutralise)
    assert copy.rows == count and copy.keep(uploaded=True)
    with open(copy.path, "rb") as kept:
        return count, f.getvalue(), kept.read()


@pytest.mark.parametrize("mappings", [PLAIN, WITH_CARD], ids=["no sensitive column", "a card column"])
@pytest.mark.parametrize("neutralise", [True, False])
@pytest.mark.parametrize("header", [True, False])
def test_one_pass_writes_the_same_bytes_as_row_by_row(app, post_events, ftp_server, mappings, neutralise, header):
    profile = ftp_profile(ftp_server, fields={"pci_documented": True, "mappings": mappings})
    post_events({"events": [event(f"e{i}", occurred_at=at(DAY, 8 + i), firstName=name, cardNumber=CARD)
                            for i, name in enumerate(NAMES)]})
    one_pass = written(profile, 1, True, header, neutralise)
    assert one_pass == written(profile, 2, False, header, neutralise)
    count, upload, kept = one_pass
    assert count == len(NAMES)
    assert ("'=SUM(A1)" in upload) is neutralise and b"'=SUM(A1)" in kept and b"-49.95" in kept
    assert (CARD in upload) is (mappings is WITH_CARD) and CARD.encode() not in kept


def test_a_long_day_is_written_in_blocks_the_same(app, post_events, ftp_server, monkeypatch):
    from exporter.files import kept_copies

    monkeypatch.setattr(kept_copies, "DEFAULT_LINES_PER_WRITE", 4)
    profile = ftp_profile(ftp_server, fields={"mappings": PLAIN})
    post_events({"events": [event(f"e{i}", occurred_at=at(DAY, 8, i), firstName=f"N{i}") for i in range(10)]})
    assert written(profile, 1, True, True, True) == written(profile, 2, False, True, True)


@pytest.mark.parametrize("text", ['{"a": [1, 2.5, "x"], "b": null}', ' {"a": 1} ', '{"a": 1}\n', "null", "[]",
                                  '"s"', '{"a": NaN}'])
def test_orders_decode_as_json_loads_decodes_them(text):
    import json
    import math

    value = daily_files._order_loader()(text)
    assert value == json.loads(text) or math.isnan(value["a"])


@pytest.mark.parametrize("text", ['{"a": 1} x', '{"a": 1', "", "{'a': 1}"])
def test_an_order_that_is_not_json_fails_as_json_loads_fails(text):
    import json

    with pytest.raises(json.JSONDecodeError):
        daily_files._order_loader()(text)


def test_the_rows_are_one_stream_walked_once(app, post_events, ftp_server):
    profile = ftp_profile(ftp_server, fields={"mappings": PLAIN})
    post_events({"events": [event(f"e{i}", occurred_at=at(DAY, 8 + i), firstName=f"N{i}") for i in range(3)]})
    renderer, route = mapping.renderer_for(profile), profile.routes[0]
    copy = KeptCopy(SimpleNamespace(id=1), renderer)
    day = (profile, route.id, DAY, renderer)
    rows = FileRows(copy, lambda: daily_files.rendered_rows(*day), lambda: daily_files.rendered_rows(*day, values=True))
    first = next(iter(rows))
    assert first[0] == ("=first", "N0")
    f = io.StringIO(newline="")  # the rest, as a generator would give it
    assert write_csv(f, renderer.columns, rows, header=False) == 2 and f.getvalue().startswith("N1,")
    assert list(rows) == [] and copy.rows == 3
