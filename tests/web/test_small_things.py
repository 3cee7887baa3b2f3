"""The issue's small things: a favicon, a way back from a customer, readable Send test
results, and confirm texts that survive an apostrophe."""
from html import unescape

from flask import render_template_string

from exporter.extensions import db
from exporter.models import Customer

from ..factories import event, make_profile


def test_favicon_is_served(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    icon = client.get(response.headers["Location"])
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"


def test_every_page_links_the_icon(logged_in):
    assert '<link rel="icon" href="/static/favicon.svg"' in logged_in.get("/").get_data(as_text=True)


def test_the_customer_page_leads_back_to_customers(logged_in, post_events):
    post_events(event())
    customer = db.session.scalars(db.select(Customer)).one()
    html = logged_in.get(f"/customers/{customer.id}").get_data(as_text=True)
    assert '<p class="crumbs"><a href="/customers/">&lsaquo; Customers</a></p>' in html


def test_send_test_names_the_type_and_says_what_the_time_is(logged_in, receiver):
    profile = make_profile(url=receiver.url + "/partials.php")
    html = unescape(logged_in.post(f"/profiles/{profile.id}/send-test").get_data(as_text=True))
    assert "Export Type: Postback" in html and "Export Type: postback" not in html
    assert '<p class="muted" id="elapsed">Answered in ' in html


def test_a_confirm_text_with_an_apostrophe_is_an_attribute_not_script(app, admin):
    from flask_login import login_user

    with app.test_request_context():
        login_user(admin)  # a change button: shown to an admin only
        html = render_template_string(
            '{% from "_macros.html" import post_button %}'
            "{{ post_button('/x', 'Delete', confirm=\"Delete profile 'Joe's leads'?\") }}")
    assert 'data-confirm="Delete profile &#39;Joe&#39;s leads&#39;?"' in html and "onclick" not in html


def test_campaigns_answers_with_or_without_the_slash_and_a_delivery_links_back(logged_in, post_events):
    from exporter.extensions import db
    from exporter.models import Delivery

    from ..factories import event, make_profile

    for url in ("/campaigns", "/campaigns/"):
        assert logged_in.get(url).status_code == 200
    make_profile()
    post_events(event())
    delivery = db.session.scalars(db.select(Delivery)).one()
    html = logged_in.get(f"/deliveries/{delivery.id}").get_data(as_text=True)
    assert '<p class="crumbs"><a href="/deliveries/">&lsaquo; Deliveries</a></p>' in html
