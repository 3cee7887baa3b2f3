"""Which profile routes an event matches. Plain Python: routes and events as plain values."""
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RouteRule:
    route_id: int
    profile_id: int
    customer_types: frozenset
    campaigns: frozenset = field(default_factory=frozenset)  # empty: all campaigns
    products: frozenset = field(default_factory=frozenset)  # empty: all products


def route_matches(rule, event_type, campaign_id, product_ids):
    """Type among the route's types, campaign among its campaigns, one product among its products."""
    if event_type not in rule.customer_types:
        return False
    if rule.campaigns and campaign_id not in rule.campaigns:
        return False
    if rule.products and not rule.products.intersection(product_ids):
        return False
    return True


def matching_routes(rules, event_type, campaign_id, product_ids):
    """The rules an event matches (intake never routes a test-card order)."""
    product_ids = frozenset(product_ids)
    return [r for r in rules if route_matches(r, event_type, campaign_id, product_ids)]


def reversal_rule(profile_id, reversal_types):
    """A reversal profile's rule ("Reversal of"): its reversal types ("refund,chargeback"), every
    campaign and product; whether the order was exported is checked when it is sent."""
    return RouteRule(None, profile_id, frozenset(t for t in (reversal_types or "").split(",") if t))
