"""Card data (issue 9, points 4 and 5, and the end-to-end card test): masking follows the
mapping, kept files are private, card numbers and CVVs under any name are never kept in clear."""
import json
import logging
import os
import stat
from datetime import datetime, time, timedelta, timezone
from urllib.parse import parse_qsl, urlsplit

import pytest
from sqlalchemy import text as sql

from exporter.files import daily_files
from exporter import security
from exporter.extensions import db
from exporter.models import Attempt, AuditEntry, Customer, Delivery, Event, Profile

from .factories import event, make_profile
from .plugins.conftest import ftp_server  # noqa: F401 - a fixture

CARD = "4012888888881881"
CVV = "cvv-sentinel-739"  # dropped by its key, whatever it holds: a value no page shows by chance
CVV_NAMES = ["cvv", "CVV2", "card_cvv", "cvvCode", "cardCvv", "cvc", "securityCode", "card_security_code"]
CARD_NAMES = ["CardNumber", "creditCardNumber", "billing.cardNumber", "products[0].cardNumber", "cc_number"]
DAY = datetime.now(timezone.utc).date() - timedelta(days=2)
DUPLICATE_CC = [{"export_name": "cc", "field": "cardNumber"}, {"export_name": "cc", "field": "firstName"}]


def luhn_card(prefix):
    """A 16-digit number passing Luhn that starts with prefix."""
    body = prefix.ljust(15, "0")
    total = sum(int(d) if i % 2 else (2 * int(d) - 9 if int(d) > 4 else 2 * int(d))
                for i, d in enumerate(reversed(body)))
    return body + str(-total % 10)


OTHER_CARDS = {name: luhn_card(f"5{i}5") for i, name in enumerate(CARD_NAMES)}


def with_card_everywhere(body):
    """The event's order with the card under cardNumber, the CVV under every CVV name, and another
    card under each other name the review tried (nested ones included)."""
    order = body["order"]
    order["cardNumber"] = CARD
    order["cardExpiryMonth"], order["cardExpiryYear"] = "09", "2031"
    order["achAccountNumber"] = "000987654321"
    for name in CVV_NAMES:
        order[name] = CVV
    order["billing"] = {"cardNumber": OTHER_CARDS["billing.cardNumber"], "cardCvv": CVV, "zip": "78701"}
    order["products"][0]["cardNumber"] = OTHER_CARDS["products[0].cardNumber"]
    order["products"][0]["cvvCode"] = CVV
    for name in ("CardNumber", "creditCardNumber", "cc_number"):
        order[name] = OTHER_CARDS[name]
    order["creditCardNumber"] = " ".join(OTHER_CARDS["creditCardNumber"][i:i + 4] for i in range(0, 16, 4))
    return body


def clear_forms():
    """Every card and CVV the test posts, as they would read in clear."""
    cards = [CARD, *OTHER_CARDS.values()]
    return [CVV, "000987654321", *cards]


def assert_nowhere(text, where):
    for secret in clear_forms():
        assert secret not in text, f"{secret} in clear in {where}"


# --- 4. masking follows the mapping ----------------------------------------------------------

def test_masking_follows_the_mapping_when_two_share_an_export_name(app, post_events, receiver, run_jobs):
    make_profile(url=receiver.url + "/p", pci_documented=True, mappings=DUPLICATE_CC)
    post_events(event(cardNumber=CARD))
    run_jobs(until=lambda: db.session.scalar(db.select(Delivery.status)) == "delivered")
    # Both mappings are sent: a query string may repeat a name.
    assert parse_qsl(urlsplit(receiver.requests[0].path).query) == [("cc", CARD), ("cc", "Jane")]
    attempt = db.session.scalars(db.select(Attempt)).one()
    assert CARD not in attempt.target and "401288******1881" in attempt.target


def test_a_daily_files_kept_copy_masks_by_mapping_and_is_private(app, post_events, ftp_server, run_jobs):
    profile = make_profile(name="Daily", export_type="ftp", settings=ftp_server.settings(), pci_documented=True,
                           mappings=DUPLICATE_CC)
    profile.created_at = datetime.combine(DAY, time(12))
    db.session.commit()
    post_events(event(occurred_at=f"{DAY.isoformat()}T12:00:00Z", cardNumber=CARD))
    daily_files.tick(now=datetime.combine(DAY + timedelta(days=1), time(2), tzinfo=timezone.utc))
    run_jobs(until=lambda: db.session.scalar(db.select(Delivery.status)) == "delivered")
    # A CSV header may repeat a name: the partner gets both columns.
    assert list(ftp_server.files().values()) == [f"cc,cc\r\n{CARD},Jane\r\n".encode()]
    delivery = db.session.scalars(db.select(Delivery)).one()
    path = daily_files.kept_copy_path(delivery)
    with open(path, "rb") as f:
        assert f.read() == b"cc,cc\r\n401288******1881,Jane\r\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


# --- 5. card data at intake ------------------------------------------------------------------

@pytest.mark.parametrize("name", CVV_NAMES + ["CardSecurityCode", "card-verification-value"])
def test_any_cvv_spelling_is_dropped_at_any_depth(name):
    order, _ = security.scrub_order({"a": {"b": [{name: "123", "keep": "x"}]}, name: "123"}, "k")
    assert order == {"a": {"b": [{"keep": "x"}]}}


def test_card_like_values_under_any_key_are_masked_where_they_sit():
    order = {"cardNumber": CARD, "CardNumber": OTHER_CARDS["CardNumber"],
             "billing": {"cardNumber": OTHER_CARDS["billing.cardNumber"]},
             "products": [{"productId": 4111111111111111, "cardNumber": OTHER_CARDS["products[0].cardNumber"]}],
             "note": "4012 8888 8888 1881", "phoneNumber": "5552013344", "orderId": 4012888888881881,
             "trackingNumber": "1234567890123"}  # 13 digits failing Luhn: not a card
    clean, cards = security.scrub_order(order, "k")
    assert cards[0] == CARD and set(cards) == {CARD, *[OTHER_CARDS[k] for k in
                                                      ("CardNumber", "billing.cardNumber", "products[0].cardNumber")]}
    masked = {name: security.mask_card(number) for name, number in OTHER_CARDS.items()}
    assert clean == {"CardNumber": masked["CardNumber"], "billing": {"cardNumber": masked["billing.cardNumber"]},
                     "products": [{"productId": 4111111111111111, "cardNumber": masked["products[0].cardNumber"]}],
                     "note": "401288******1881", "phoneNumber": "5552013344", "orderId": 4012888888881881,
                     "trackingNumber": "1234567890123"}


def test_the_catalogs_sensitive_fields_are_encrypted_at_rest(app, post_events):
    post_events(event(cardExpiryMonth="09", cardExpiryYear="2031", achAccountNumber="000123456789",
                      achRoutingNumber="110000000"))
    stored = db.session.scalars(db.select(Event)).one().order
    for key, value in (("cardExpiryMonth", "09"), ("cardExpiryYear", "2031"), ("achAccountNumber", "000123456789"),
                       ("achRoutingNumber", "110000000")):
        assert stored[key].startswith("enc:") and security.decrypt("test-secret", stored[key]) == value


@pytest.mark.parametrize("number", ["４０１２８８８８８８８８１８８１", "٤٠١٢٨٨٨٨٨٨٨٨١٨٨١", "4012888888881881²"])
def test_card_numbers_accept_ascii_digits_only(post_events, number):
    response = post_events(event(cardNumber=number))
    assert response.status_code == 422
    assert response.get_json()["problems"][0]["field"] == "order.cardNumber"


# --- end to end: never in clear anywhere -------------------------------------------------------

def database_text():
    """Every row of every table, as text (and, on SQLite, the database files' raw bytes)."""
    chunks = []
    for table in db.metadata.sorted_tables:
        for row in db.session.execute(sql(f"SELECT * FROM {table.name}")):
            chunks.append(repr(tuple(row)))
    url = db.engine.url
    if url.get_backend_name() == "sqlite":
        for suffix in ("", "-wal"):
            path = url.database + suffix
            if os.path.exists(path):
                with open(path, "rb") as f:
                    chunks.append(f.read().decode("latin-1"))
    return "\n".join(chunks)


def every_page(client):
    """Each admin page a user could open for the data now stored, and the downloads."""
    urls = ["/", "/profiles/", "/profiles/export.json", "/deliveries/", "/customers/", "/fields/", "/campaigns",
            "/tokens/", "/export-types/"]
    urls += [f"/profiles/{p.id}" for p in db.session.scalars(db.select(Profile))]
    urls += [f"/profiles/{p.id}/preview" for p in db.session.scalars(db.select(Profile))]
    urls += [f"/deliveries/{d.id}" for d in db.session.scalars(db.select(Delivery))]
    urls += [f"/files/deliveries/{d.id}/download" for d in db.session.scalars(db.select(Delivery))
             if d.file_date is not None]
    urls += [f"/customers/{c.id}" for c in db.session.scalars(db.select(Customer))]
    urls += [f"/customers/{c.id}/forget" for c in db.session.scalars(db.select(Customer))]
    urls += ["/audit/", "/admins/"] + [f"/audit/{e.id}" for e in db.session.scalars(db.select(AuditEntry))]
    urls += [f"/audit/profiles/{p.id}" for p in db.session.scalars(db.select(Profile))]
    urls += [f"/profiles/{p.id}/replay" for p in db.session.scalars(db.select(Profile))]
    pages = {}
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        pages[url] = response.get_data(as_text=True)
    return pages


def test_a_card_and_cvv_under_any_name_are_never_in_clear(app, logged_in, post_events, receiver, ftp_server,
                                                           run_jobs, caplog):
    caplog.set_level(logging.DEBUG)
    make_profile(name="Call center", url=receiver.url + "/p", pci_documented=True,
                 mappings=[{"export_name": "cc", "field": "cardNumber"},
                           {"export_name": "exp", "field": "cardExpiryYear"},
                           {"export_name": "fn", "field": "firstName"}])
    files = make_profile(name="Daily", export_type="ftp", settings=ftp_server.settings(), pci_documented=True,
                         mappings=[{"export_name": "cc", "field": "cardNumber"},
                                   {"export_name": "acct", "field": "achAccountNumber"}])
    files.created_at = datetime.combine(DAY, time(12))
    db.session.commit()
    body = with_card_everywhere(event(occurred_at=f"{DAY.isoformat()}T12:00:00Z"))
    response = post_events(body)
    assert response.status_code == 202, response.get_json()
    daily_files.tick(now=datetime.combine(DAY + timedelta(days=1), time(2), tzinfo=timezone.utc))
    run_jobs(until=lambda: all(d.status == "delivered" for d in db.session.scalars(db.select(Delivery))))
    logged_in.post(f"/profiles/{files.id}/send-test")

    # What the partners asked for did arrive (PCI documentation on file for both).
    assert ("cc", CARD) in parse_qsl(urlsplit(receiver.requests[0].path).query)
    assert CARD in next(v for k, v in ftp_server.files().items() if k.startswith("daily_")).decode()
    # ... and nothing of it is kept in clear on our side.
    assert_nowhere(database_text(), "the database")
    for url, page in every_page(logged_in).items():
        assert_nowhere(page, url)
    assert_nowhere(caplog.text, "the log")
    for attempt in db.session.scalars(db.select(Attempt)):
        assert_nowhere(json.dumps([attempt.target, attempt.request_headers, attempt.request_body, attempt.error,
                                   attempt.response_body]), f"attempt {attempt.id}")
    for folder, _, names in os.walk(app.config["FILES_DIR"]):
        for name in names:
            with open(os.path.join(folder, name), "rb") as f:
                assert_nowhere(f.read().decode("utf-8", "replace"), f"kept file {name}")
