"""Test data in the public contracts' own shapes: the profiles JSON and intake events."""
import copy
from datetime import datetime, timedelta, timezone

from exporter.profiles import as_code as profiles_io
from exporter.extensions import db
from exporter.models import Profile

MODEL_MAPPINGS = [
    {"export_name": "first_name", "field": "firstName"},
    {"export_name": "order_date", "field": "orderDate"},
    {"export_name": "list_id", "field": "static", "static_value": "400"},
    {"export_name": "email_address", "field": "emailAddress"},
    {"export_name": "campaign_number", "field": "campaignId"},
]

# The contract's example event (DESIGN.md); its occurred_at is made when a test makes an event
# (event(): now, unless the test names another time), so that no test depends on the day it runs.
# orderDate stays the example's: it is the CRM's text, rendered as sent, never read as a time.
MODEL_EVENT = {
    "id": "evt-1001", "type": "partial", "occurred_at": None,
    "order": {"orderId": 104233, "customerId": 55821, "campaignId": 259, "campaignName": "Test Lander",
              "firstName": "Jane", "lastName": "Doe", "emailAddress": "jane@example.com",
              "phoneNumber": "5552013344", "orderDate": "2026-11-27 14:03:22", "isTestCard": False,
              "products": [{"productId": 33, "productName": "Keto 30ct", "price": "49.95", "qty": 1}]},
}


def profile_data(name="Call center partials", url="https://postingmydata.com/partials.php", **overrides):
    data = {
        "name": name, "export_type": "postback", "active": True, "delay_minutes": 0,
        "pci_documented": False, "settings": {"url": url, "method": "GET"},
        "mappings": copy.deepcopy(MODEL_MAPPINGS),
        "routes": [{"customer_types": ["partial"], "campaigns": [259], "products": []}],
    }
    data.update(overrides)
    return data


def make_profile(**kwargs):
    """Create a profile through the profiles JSON import, as an admin's file would."""
    data = profile_data(**kwargs)
    profiles_io.import_all({"version": 1, "profiles": [data]})
    return db.session.scalar(db.select(Profile).where(Profile.name == data["name"]))


def occurred(**ago):
    """An occurred_at in the contract's shape ("2026-11-27T14:03:22Z"): now, or that long ago
    (occurred(days=9)), by the clock the test runs under."""
    return f"{datetime.now(timezone.utc) - timedelta(**ago):%Y-%m-%dT%H:%M:%SZ}"


def event(id="evt-1001", type="partial", **order):
    """The model event as the CRM would post it now (occurred_at=... for another time)."""
    body = copy.deepcopy(MODEL_EVENT)
    body["id"], body["type"] = id, type
    body["occurred_at"] = order.pop("occurred_at", None) or occurred()
    body["order"].update(order)
    return body


def claim_one():
    """Claim the one due delivery as a worker's drain would; the claim's time (None if none)."""
    from exporter.delivery import claim

    claimed_at, rows = claim.claim_batch(10)
    assert len(rows) <= 1
    return claimed_at if rows else None
