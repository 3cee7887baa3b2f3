"""Masking, encryption at rest, and the private-target guard."""
import pytest

from exporter import security
from exporter.extensions import db
from exporter.models import Delivery

from .factories import event, make_profile


def test_card_numbers_show_first_six_and_last_four_at_most():
    assert security.mask_card("4012888888881881") == "401288******1881"
    assert security.mask_card("4012 8888 8888 1881") == "401288******1881"
    assert security.mask_card("1234") == "****"
    assert security.mask_value("000123456789") == "**********89"


def test_secrets_round_trip_and_need_the_same_key():
    token = security.encrypt("key-one", "hunter22")
    assert token.startswith("enc:") and "hunter22" not in token
    assert security.decrypt("key-one", token) == "hunter22"
    with pytest.raises(ValueError, match="SECRET_KEY"):
        security.decrypt("key-two", token)


def test_redact_masks_raw_and_url_encoded_forms():
    text = "cc=4012888888881881&name=J%C3%B3+%26&body=J%C3%B3%20%26"
    out = security.redact(text, [("4012888888881881", "401288******1881"), ("Jó &", "****")])
    assert out == "cc=401288******1881&name=****&body=****"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "10.1.2.3", "192.168.0.10", "169.254.169.254", "::1"])
def test_private_targets_are_refused_unless_allowed(host):
    with pytest.raises(security.TargetRefused, match="private address"):
        security.check_target_host(host, allow_private=False)
    security.check_target_host(host, allow_private=True)


def test_a_postback_to_a_private_address_fails_with_a_clear_error(app, post_events, receiver, run_jobs):
    make_profile(url=receiver.url + "/p")  # saved while allowed (it would be refused at save now)
    app.config["ALLOW_PRIVATE_TARGETS"] = False
    post_events(event())
    run_jobs(until=lambda: db.session.scalars(db.select(Delivery)).one().attempt_count == 1)
    assert receiver.requests == []
    delivery = db.session.scalars(db.select(Delivery)).one()
    assert "private address" in delivery.last_error and "EXPORTER_ALLOW_PRIVATE_TARGETS" in delivery.last_error
