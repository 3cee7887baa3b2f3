"""The mapping engine: plain Python, no app needed."""
import hashlib

import pytest

from exporter import mapping
from exporter_postback import with_query

from .factories import MODEL_EVENT, MODEL_MAPPINGS
from exporter.catalog import record_from_order


def render(mappings, record):
    return mapping.compile(mappings)(record)


def test_model_example_renders_the_models_url_in_mapping_order():
    record = record_from_order(MODEL_EVENT["order"], "partial")
    pairs = render(MODEL_MAPPINGS, record)
    assert pairs == [("first_name", "Jane"), ("order_date", "2026-11-27 14:03:22"), ("list_id", "400"),
                     ("email_address", "jane@example.com"), ("campaign_number", "259")]
    assert with_query("https://postingmydata.com/partials.php", pairs) == (
        "https://postingmydata.com/partials.php?first_name=Jane&order_date=2026-11-27+14%3A03%3A22"
        "&list_id=400&email_address=jane%40example.com&campaign_number=259")


def test_reserved_and_unicode_characters_are_percent_encoded_and_arrive_intact():
    from urllib.parse import parse_qsl, urlsplit

    pairs = render(MODEL_MAPPINGS[:1], {"firstName": "José & Co"})
    url = with_query("https://x.example/p.php", pairs)
    assert "Jos%C3%A9+%26+Co" in url
    assert parse_qsl(urlsplit(url).query) == [("first_name", "José & Co")]


def test_existing_query_is_kept():
    assert with_query("https://x.example/p?a=1", [("b", "2")]) == "https://x.example/p?a=1&b=2"


def test_missing_field_renders_empty_and_default_fills_it():
    out = render([{"export_name": "city", "field": "city"},
                  {"export_name": "st", "field": "state", "default_value": "NA"}], {})
    assert out == [("city", ""), ("st", "NA")]


@pytest.mark.parametrize("fmt,arg,value,expected", [
    ("date", "%m/%d/%Y", "2026-11-27 14:03:22", "11/27/2026"),
    ("date", "%Y%m%d", "2026-11-27T14:03:22Z", "20261127"),
    ("digits", "", "(555) 201-3344", "5552013344"),
    ("upper", "", "jane", "JANE"),
    ("lower", "", "JANE@X.COM", "jane@x.com"),
    ("sha256", "", "jane@example.com", hashlib.sha256(b"jane@example.com").hexdigest()),
])
def test_formats(fmt, arg, value, expected):
    out = render([{"export_name": "v", "field": "custom1", "format": fmt, "format_arg": arg}], {"custom1": value})
    assert out == [("v", expected)]


def test_several_products_join_with_commas():
    order = {"products": [{"productId": 33, "productName": "Keto 30ct"}, {"productId": 41, "productName": "Keto 60ct"}]}
    out = render([{"export_name": "pid", "field": "productId"}, {"export_name": "pn", "field": "productName"}],
                 record_from_order(order, "new_sale"))
    assert out == [("pid", "33,41"), ("pn", "Keto 30ct,Keto 60ct")]


@pytest.mark.parametrize("bad,field", [
    ({"export_name": "", "field": "firstName"}, "export_name"),
    ({"export_name": "x", "field": "static"}, "static_value"),
    ({"export_name": "x", "field": "shoeSize"}, "field"),
    ({"export_name": "x", "field": "firstName", "format": "rot13"}, "format"),
    ({"export_name": "x", "field": "orderDate", "format": "date"}, "format_arg"),
])
def test_bad_mappings_name_the_field(bad, field):
    with pytest.raises(mapping.MappingError) as exc:
        mapping.compile([{"export_name": "ok", "field": "firstName"}, bad])
    assert exc.value.index == 1 and exc.value.field == field


def test_sensitive_columns_are_known_to_the_renderer():
    r = mapping.compile([{"export_name": "cc", "field": "cardNumber"}, {"export_name": "fn", "field": "firstName"}])
    assert r.sensitive_columns == {"cc"}


def test_the_renderer_masks_its_own_sensitive_values():
    r = mapping.compile([{"export_name": "cc", "field": "cardNumber"}, {"export_name": "fn", "field": "firstName"},
                         {"export_name": "acct", "field": "achAccountNumber"}])
    row = r({"cardNumber": "4012888888881881", "firstName": "Jane", "achAccountNumber": "000123456789"})
    assert r.masked(row) == [("cc", "401288******1881"), ("fn", "Jane"), ("acct", "**********89")]


EDGE_MAPPINGS = [
    {"export_name": "pid", "field": "productId"}, {"export_name": "pn", "field": "productName", "format": "upper"},
    {"export_name": "cc", "field": "cardNumber", "default_value": "none"}, {"export_name": "type", "field": "eventType"},
    {"export_name": "camp", "field": "campaignId"}, {"export_name": "test", "field": "custom1"},
    {"export_name": "list", "field": "custom2"}, {"export_name": "phone", "field": "phoneNumber", "format": "digits"},
    {"export_name": "day", "field": "orderDate", "format": "date", "format_arg": "%m/%d/%Y"},
    {"export_name": "mail", "field": "emailAddress", "format": "sha256", "default_value": "-"},
    {"export_name": "st", "field": "state", "format": "lower", "default_value": "na"},
    {"export_name": "it's \"quoted\"", "field": "static", "static_value": "a'b\"c\\"},
]


@pytest.mark.parametrize("order,card", [
    ({"products": [{"productId": 33, "productName": "Keto 30ct"}, {"productName": "Keto 60ct"}]}, "4111111111111111"),
    ({"productId": "7", "productName": "kept when no products", "products": []}, None),
    ({"custom1": True, "custom2": [1, "b", None], "campaignId": 259, "phoneNumber": "(555) 201-3344",
      "orderDate": "2026-11-27 14:03:22", "emailAddress": "jane@example.com", "state": "TX", "cardNumber": "stored"}, ""),
    ({"custom1": False, "custom2": None, "campaignId": None, "orderDate": "not a date", "emailAddress": ""}, None),
])
def test_rendering_straight_from_the_order_equals_rendering_its_record(order, card):
    r = mapping.compile(EDGE_MAPPINGS)
    assert r.from_order(order, "new_sale", card) == r(record_from_order(order, "new_sale", card_number=card))


def test_a_static_value_and_export_names_are_data_never_code():
    r = mapping.compile([{"export_name": "x'); import os #", "field": "static", "static_value": "'); 1/0 #"},
                         {"export_name": "n", "field": "firstName", "default_value": "\\'"}])
    assert r({}) == [("x'); import os #", "'); 1/0 #"), ("n", "\\'")]


def test_a_profiles_renderer_is_compiled_once_and_anew_when_a_mapping_changes():
    from types import SimpleNamespace

    profile = SimpleNamespace(mappings=[dict(m) for m in MODEL_MAPPINGS])
    first = mapping.renderer_for(profile)
    assert mapping.renderer_for(SimpleNamespace(mappings=[dict(m) for m in MODEL_MAPPINGS])) is first
    profile.mappings[2]["static_value"] = "401"  # edited in place: nothing else about the profile changed
    assert dict(mapping.renderer_for(profile)({}))["list_id"] == "401"
    profile.mappings[0]["format"] = "upper"
    assert mapping.renderer_for(profile)({"firstName": "Jane"})[0] == ("first_name", "JANE")
    with pytest.raises(mapping.MappingError):
        mapping.renderer_for(SimpleNamespace(mappings=[{"export_name": "x", "field": "shoeSize"}]))


@pytest.mark.parametrize("value,text", [(259, "259"), (True, "1"), (False, "0"), (None, ""), ([1, "b", None], "1,b,"),
                                        (49.95, "49.95"), ("Jane", "Jane")])
def test_each_kind_of_value_renders_as_the_text_a_partner_expects(value, text):
    r = mapping.compile([{"export_name": "v", "field": "custom1"}])
    assert r.from_order({"custom1": value}, "partial") == [("v", text)]
    assert r.values_from_order({"custom1": value}, "partial") == [text]
