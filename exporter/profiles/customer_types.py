"""The 14 customer types of the model: what kind of order event a route exports."""
from dataclasses import dataclass


@dataclass(frozen=True)
class CustomerType:
    slug: str
    label: str
    trigger: str


CUSTOMER_TYPES = (
    CustomerType("partial", "Partial", "a lead: the customer filled the form but did not buy"),
    CustomerType("decline", "Decline", "an initial sale was declined"),
    CustomerType("new_sale", "New Sale", "an initial sale was approved"),
    CustomerType("upsell", "Upsell", "an upsell was approved"),
    CustomerType("recurring_order", "Recurring Order", "a rebill was approved"),
    CustomerType("cancel", "Cancel", "a subscription or order was cancelled"),
    CustomerType("pre_billing", "Pre-Billing", "a rebill is about to be charged"),
    CustomerType("rma_issued", "RMA Issued", "a return authorisation was issued"),
    CustomerType("rma_received", "RMA Received", "a returned package arrived"),
    CustomerType("refund", "Refund", "an order was refunded"),
    CustomerType("chargeback", "Chargeback", "the bank charged an order back"),
    CustomerType("rebill_decline", "Rebill Decline", "a rebill was declined"),
    CustomerType("recycle_failed", "Recycle Failed", "every retry of a declined rebill failed"),
    CustomerType("fulfillment_shipped", "Fulfillment Shipped", "the fulfilment house shipped the order"),
)

BY_SLUG = {t.slug: t for t in CUSTOMER_TYPES}
SLUGS = tuple(BY_SLUG)
# Events that turn a waiting partial into a customer ("partials that convert").
CONVERSIONS = frozenset({"new_sale", "upsell"})


def label(slug):
    return BY_SLUG[slug].label if slug in BY_SLUG else slug
