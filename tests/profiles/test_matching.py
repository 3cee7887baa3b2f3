"""Routing rules: plain Python, no app."""
from exporter.profiles.matching import RouteRule, matching_routes


def rule(route_id, profile_id, types=("partial",), campaigns=(), products=()):
    return RouteRule(route_id, profile_id, frozenset(types), frozenset(campaigns), frozenset(products))


def test_type_campaign_and_product_must_all_match():
    r = rule(1, 1, campaigns={259}, products={33})
    assert matching_routes([r], "partial", 259, [33])
    assert not matching_routes([r], "new_sale", 259, [33])
    assert not matching_routes([r], "partial", 260, [33])
    assert not matching_routes([r], "partial", 259, [34])
    assert matching_routes([r], "partial", 259, [34, 33])


def test_empty_campaigns_or_products_mean_all():
    r = rule(1, 1)
    assert matching_routes([r], "partial", 999, [])
    assert matching_routes([r], "partial", None, [1, 2])


def test_every_matching_route_of_every_profile_is_returned():
    rules = [rule(1, 7), rule(2, 7, campaigns={259}), rule(3, 8, types=("partial", "decline")), rule(4, 9, ("cancel",))]
    assert [r.route_id for r in matching_routes(rules, "partial", 259, [33])] == [1, 2, 3]
