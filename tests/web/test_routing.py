"""Profile Routing (a profile's routes) and the Campaigns & Products page, through the test client."""
import re

import pytest

from exporter.profiles.customer_types import CUSTOMER_TYPES
from exporter.extensions import db
from exporter.models import Campaign, Product, Profile, Route

from ..factories import make_profile
from ..pages import error_beside, text





def routes_of(profile):
    db.session.expire_all()
    return [(r.customer_types, r.campaigns, r.products) for r in db.session.get(Profile, profile.id).routes]


@pytest.fixture
def catalog_rows(app):
    db.session.add_all([Campaign(id=259, name="Test Lander"), Campaign(id=260, name="Keto Lander"),
                        Product(id=33, name="Keto 30ct"), Product(id=41, name="Keto 60ct")])
    db.session.commit()


# --- login ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/campaigns", "/profiles/1/routes/new", "/profiles/1/routes/1"])
def test_pages_need_a_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


@pytest.mark.parametrize("path", ["/campaigns/add-campaign", "/campaigns/add-product", "/profiles/1/routes/new",
                                  "/profiles/1/routes/1", "/profiles/1/routes/1/delete"])
def test_actions_need_a_login(client, path):
    response = client.post(path, data={"campaign-crm_id": "5", "campaign-name": "x", "customer_types": "partial"})
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    assert db.session.scalar(db.select(db.func.count()).select_from(Campaign)) == 0


# --- Campaigns & Products ------------------------------------------------------------------------

def test_campaigns_page_lists_and_adds_campaigns_and_products(logged_in, catalog_rows):
    page = text(logged_in.get("/campaigns"))
    assert "<td>259</td><td>Test Lander</td>" in page and "<td>41</td><td>Keto 60ct</td>" in page
    response = logged_in.post("/campaigns/add-campaign", data={"campaign-crm_id": " 301 ",
                                                               "campaign-name": " Summer Lander "})
    assert response.status_code == 302 and response.headers["Location"] == "/campaigns"
    response = logged_in.post("/campaigns/add-product", data={"product-crm_id": "77", "product-name": "Gummies"})
    assert response.status_code == 302
    assert db.session.get(Campaign, 301).name == "Summer Lander"
    assert db.session.get(Product, 77).name == "Gummies"
    page = text(logged_in.get("/campaigns"))
    assert "<td>301</td><td>Summer Lander</td>" in page and "<td>77</td><td>Gummies</td>" in page


@pytest.mark.parametrize("kind, crm_id, name, field, message", [
    ("campaign", "abc", "X", "campaign-crm_id", "Campaign ID must be a positive whole number"),
    ("campaign", "0", "X", "campaign-crm_id", "Campaign ID must be a positive whole number"),
    ("campaign", "-3", "X", "campaign-crm_id", "Campaign ID must be a positive whole number"),
    ("campaign", "1.5", "X", "campaign-crm_id", "Campaign ID must be a positive whole number"),
    ("campaign", "", "X", "campaign-crm_id", "Campaign ID must be a positive whole number"),
    ("campaign", "99999999999999999999", "X", "campaign-crm_id", "Campaign ID must be a positive whole number"),
    ("campaign", "259", "Again", "campaign-crm_id", "Campaign 259 already exists"),
    ("campaign", "300", "  ", "campaign-name", "Campaign Name is required"),
    ("product", "x1", "X", "product-crm_id", "Product ID must be a positive whole number"),
    ("product", "33", "Again", "product-crm_id", "Product 33 already exists"),
    ("product", "34", "", "product-name", "Product Name is required"),
])
def test_campaigns_page_refuses_bad_input_beside_the_field(logged_in, catalog_rows, kind, crm_id, name, field,
                                                           message):
    response = logged_in.post(f"/campaigns/add-{kind}", data={f"{kind}-crm_id": crm_id, f"{kind}-name": name})
    assert response.status_code == 422
    assert error_beside(response, field) == [message]
    db.session.expire_all()
    assert db.session.scalar(db.select(db.func.count()).select_from(Campaign)) == 2
    assert db.session.scalar(db.select(db.func.count()).select_from(Product)) == 2
    assert db.session.get(Campaign, 259).name == "Test Lander"


# --- routes --------------------------------------------------------------------------------------

def test_route_form_offers_the_14_customer_types_and_the_db_campaigns_and_products(logged_in, catalog_rows):
    profile = make_profile(routes=[])
    page = text(logged_in.get(f"/profiles/{profile.id}/routes/new"))
    boxes = re.findall(r'<input type="checkbox" name="customer_types" value="([a-z_]+)"', page)
    assert boxes == [t.slug for t in CUSTOMER_TYPES] and len(boxes) == 14
    campaigns = re.search(r'<select[^>]*name="campaigns".*?</select>', page, re.S).group(0)
    assert re.findall(r'<option[^>]*value="([^"]+)"[^>]*>([^<]*)</option>', campaigns) == [
        ("all", "All"), ("259", "259 Test Lander"), ("260", "260 Keto Lander")]
    assert '<option selected value="all">All</option>' in campaigns
    products = re.search(r'<select[^>]*name="products".*?</select>', page, re.S).group(0)
    assert [v for v, _ in re.findall(r'<option[^>]*value="([^"]+)"[^>]*>([^<]*)</option>', products)] == [
        "all", "33", "41"]


def test_add_routes(logged_in, catalog_rows):
    profile = make_profile(routes=[])
    response = logged_in.post(f"/profiles/{profile.id}/routes/new", data={
        "customer_types": ["partial"], "campaigns": ["259"], "products": ["all"]})
    assert response.status_code == 302
    assert response.headers["Location"] == f"/profiles/?profile={profile.id}#routing"
    logged_in.post(f"/profiles/{profile.id}/routes/new", data={
        "customer_types": ["new_sale", "upsell"], "campaigns": ["all", "259"], "products": ["41", "33"]})
    logged_in.post(f"/profiles/{profile.id}/routes/new", data={"customer_types": ["decline"]})
    assert routes_of(profile) == [(["partial"], [259], []), (["new_sale", "upsell"], [], [41, 33]),
                                  (["decline"], [], [])]
    page = text(logged_in.get(f"/profiles/?profile={profile.id}"))
    assert re.search(r"<td>Partial</td>\s*<td>259 Test Lander</td>\s*<td>All</td>", page)
    assert re.search(r"<td>New Sale, Upsell</td>\s*<td>All</td>\s*<td>41 Keto 60ct, 33 Keto 30ct</td>", page)


@pytest.mark.parametrize("data, field, message", [
    ({"campaigns": ["259"]}, "customer_types", "Choose at least one customer type"),
    ({"customer_types": ["partial", "teleport"]}, "customer_types", "Unknown customer type &#39;teleport&#39;"),
    ({"customer_types": ["partial"], "campaigns": ["999"]}, "campaigns",
     "&#39;999&#39; is not a campaign on the Campaigns &amp; Products page"),
    ({"customer_types": ["partial"], "campaigns": ["abc"]}, "campaigns",
     "&#39;abc&#39; is not a campaign on the Campaigns &amp; Products page"),
    ({"customer_types": ["partial"], "products": ["259"]}, "products",
     "&#39;259&#39; is not a product on the Campaigns &amp; Products page"),
])
def test_a_bad_route_is_refused_beside_the_field(logged_in, catalog_rows, data, field, message):
    profile = make_profile(routes=[])
    response = logged_in.post(f"/profiles/{profile.id}/routes/new", data=data)
    assert response.status_code == 422
    assert error_beside(response, field) == [message]
    assert routes_of(profile) == []


def test_edit_a_route_prefilled_then_saved(logged_in, catalog_rows):
    profile = make_profile(routes=[{"customer_types": ["partial", "decline"], "campaigns": [259, 555],
                                    "products": []}])
    route = profile.routes[0]
    page = text(logged_in.get(f"/profiles/{profile.id}/routes/{route.id}"))
    checked = re.findall(r'value="([a-z_]+)"\s+checked', page)
    assert checked == ["partial", "decline"]
    campaigns = re.search(r'<select[^>]*name="campaigns".*?</select>', page, re.S).group(0)
    assert '<option selected value="259">259 Test Lander</option>' in campaigns
    assert '<option selected value="555">555 (not on the Campaigns &amp; Products page)</option>' in campaigns
    assert '<option value="260">260 Keto Lander</option>' in campaigns
    assert '<option selected value="all">All</option>' in page  # products: all
    response = logged_in.post(f"/profiles/{profile.id}/routes/{route.id}", data={
        "customer_types": ["refund"], "campaigns": ["555", "260"], "products": ["33"]})
    assert response.status_code == 302
    assert routes_of(profile) == [(["refund"], [555, 260], [33])]
    response = logged_in.post(f"/profiles/{profile.id}/routes/{route.id}", data={"campaigns": ["all"]})
    assert response.status_code == 422
    assert error_beside(response, "customer_types") == ["Choose at least one customer type"]
    assert routes_of(profile) == [(["refund"], [555, 260], [33])]


def test_delete_a_route(logged_in):
    profile = make_profile(routes=[{"customer_types": ["partial"]}, {"customer_types": ["decline"]}])
    first = profile.routes[0].id
    response = logged_in.post(f"/profiles/{profile.id}/routes/{first}/delete")
    assert response.status_code == 302
    assert routes_of(profile) == [(["decline"], [], [])]
    assert db.session.get(Route, first) is None


def test_unknown_or_foreign_routes_are_404(logged_in):
    profile = make_profile()
    other = make_profile(name="Other")
    foreign = other.routes[0].id
    assert logged_in.get("/profiles/999/routes/new").status_code == 404
    assert logged_in.post("/profiles/999/routes/new", data={"customer_types": ["partial"]}).status_code == 404
    assert logged_in.get(f"/profiles/{profile.id}/routes/{foreign}").status_code == 404
    assert logged_in.get(f"/profiles/{profile.id}/routes/9999").status_code == 404
    assert logged_in.post(f"/profiles/{profile.id}/routes/{foreign}",
                          data={"customer_types": ["refund"]}).status_code == 404
    assert logged_in.post(f"/profiles/{profile.id}/routes/{foreign}/delete").status_code == 404
    assert routes_of(other) == [(["partial"], [259], [])]
