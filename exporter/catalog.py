"""The field catalog: every order-record field a mapping may use, in Konnektive's names.

Plain Python: the Available Field Mappings page shows it, the mapping engine reads
values through it, and the profile forms check mappings against it.
"""
from dataclasses import dataclass

STATIC = "static"


@dataclass(frozen=True)
class Field:
    key: str
    type: str
    description: str
    example: str
    sensitive: bool = False


def _f(key, type_, description, example, sensitive=False):
    return Field(key, type_, description, example, sensitive)


FIELDS = (
    _f("orderId", "integer", "The CRM's order id", "104233"),
    _f("clientOrderId", "string", "The order id the storefront gave", "WEB-88123"),
    _f("customerId", "integer", "The CRM's customer id", "55821"),
    _f("campaignId", "integer", "The campaign the order came in on", "259"),
    _f("campaignName", "string", "The campaign's name", "Test Lander"),
    _f("orderDate", "datetime", "When the order was placed (CRM time)", "2026-11-27 14:03:22"),
    _f("dateCreated", "datetime", "When the customer record was created", "2026-11-27 14:01:05"),
    _f("firstName", "string", "Billing first name", "Jane"),
    _f("lastName", "string", "Billing last name", "Doe"),
    _f("emailAddress", "string", "Customer e-mail", "jane@example.com"),
    _f("phoneNumber", "string", "Customer phone", "5552013344"),
    _f("ipAddress", "string", "IP address the order came from", "203.0.113.7"),
    _f("address1", "string", "Billing street address", "12 Main St"),
    _f("address2", "string", "Billing address, second line", "Apt 4"),
    _f("city", "string", "Billing city", "Austin"),
    _f("state", "string", "Billing state or province", "TX"),
    _f("postalCode", "string", "Billing postal code", "78701"),
    _f("country", "string", "Billing country (ISO 3166 alpha-2)", "US"),
    _f("shipFirstName", "string", "Shipping first name", "Jane"),
    _f("shipLastName", "string", "Shipping last name", "Doe"),
    _f("shipAddress1", "string", "Shipping street address", "12 Main St"),
    _f("shipAddress2", "string", "Shipping address, second line", "Apt 4"),
    _f("shipCity", "string", "Shipping city", "Austin"),
    _f("shipState", "string", "Shipping state or province", "TX"),
    _f("shipPostalCode", "string", "Shipping postal code", "78701"),
    _f("shipCountry", "string", "Shipping country", "US"),
    _f("totalAmount", "decimal", "Order total", "54.07"),
    _f("salesTax", "decimal", "Sales tax", "4.12"),
    _f("subTotal", "decimal", "Total before tax and shipping", "49.95"),
    _f("couponCode", "string", "Coupon applied to the order", "SAVE10"),
    _f("productId", "string", "Product ids, comma-joined for several products", "33,41"),
    _f("productName", "string", "Product names, comma-joined for several products", "Keto 30ct,Keto 60ct"),
    _f("paySource", "string", "How the customer paid", "CREDITCARD"),
    _f("cardType", "string", "Card brand", "VISA"),
    _f("cardLast4", "string", "Last four digits of the card", "1111"),
    _f("cardBin", "string", "First six digits of the card", "411111"),
    _f("cardNumber", "string", "The full card number", "4111111111111111", True),
    _f("cardExpiryMonth", "string", "Card expiry month", "09", True),
    _f("cardExpiryYear", "string", "Card expiry year", "2029", True),
    _f("achAccountNumber", "string", "Bank account number", "000123456789", True),
    _f("achRoutingNumber", "string", "Bank routing number", "110000000", True),
    _f("fulfillmentStatus", "string", "Fulfilment state of the order", "SHIPPED"),
    _f("trackingNumber", "string", "Shipment tracking number", "1Z999AA10123456784"),
    _f("rmaNumber", "string", "Return authorisation number", "RMA-3321"),
    _f("nextBillDate", "date", "When the subscription bills next", "2026-12-27"),
    _f("affId", "string", "Affiliate id", "AFF123"),
    *(_f(f"sourceValue{i}", "string", f"Affiliate sub-id {i}", f"sub{i}") for i in range(1, 6)),
    *(_f(f"custom{i}", "string", f"Custom field {i}", f"value{i}") for i in range(1, 6)),
    _f("eventType", "string", "The customer type of the event (partial, new_sale, ...)", "partial"),
    # A reversal's (a profile with "Reversal of"): the original sale's export, filled in when it is sent.
    _f("original.captured_id", "string", "Reversals: the id the partner gave the original sale's export", "88213"),
    _f("original.sent_at", "datetime", "Reversals: when the original sale's export was delivered (UTC)",
       "2026-11-27 14:08:22"),
)
# A reversal may also map each value the original export sent: original.<its Export Name>.
ORIGINAL = "original."

BY_KEY = {f.key: f for f in FIELDS}
SENSITIVE = frozenset(f.key for f in FIELDS if f.sensitive)


def is_field(key):
    return key in BY_KEY or (key.startswith(ORIGINAL) and len(key) > len(ORIGINAL))


def sample_record():
    """An order record made of each field's example, for previews and test sends."""
    return {f.key: f.example for f in FIELDS}


def record_from_order(order, event_type, card_number=None):
    """The flat record a mapping reads: the order's fields, derived ones, the event type.

    productId and productName join an order's several products with commas.
    """
    record = {k: v for k, v in order.items() if k != "products"}
    products = order.get("products") or []
    if products:
        record["productId"] = ",".join(str(p.get("productId", "")) for p in products)
        record["productName"] = ",".join(str(p.get("productName", "")) for p in products)
    if card_number:
        record["cardNumber"] = card_number
    record["eventType"] = event_type
    return record
