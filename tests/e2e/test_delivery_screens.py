"""The operator's path in a real browser: find the customer, follow the history message to
the delivery, and read the request that was sent."""
import pytest

from exporter.extensions import db
from exporter.models import Delivery

from ..factories import event, make_profile

pytestmark = pytest.mark.browser


def test_history_link_opens_the_delivery_with_the_request_sent(admin_page, live_server, post_events, receiver,
                                                               run_jobs):
    make_profile(url=receiver.url + "/partials.php")
    post_events(event())
    run_jobs(until=lambda: len(receiver.requests) == 1)
    delivery = db.session.scalars(db.select(Delivery)).one()
    page = admin_page

    page.click("nav.top >> text=Customers")
    page.fill("input[name=q]", "jane doe")
    page.click("#search button[type=submit]")
    page.click("#customers >> text=Jane Doe")
    assert page.locator("h1").inner_text() == "Jane Doe"

    page.click("#history >> text=Export profile 'Call center partials' fired: postback delivered (HTTP 200)")
    page.wait_for_url(f"{live_server}/deliveries/{delivery.id}")
    assert page.locator("h1").inner_text() == f"Delivery #{delivery.id} delivered"
    attempt = page.locator("#attempt-1")
    assert attempt.locator(".request-line").inner_text() == (
        f"GET {receiver.url}/partials.php?first_name=Jane&order_date=2026-11-27+14%3A03%3A22&list_id=400"
        "&email_address=jane%40example.com&campaign_number=259")
    assert f"Idempotency-Key: {delivery.id}" in attempt.locator(".request-headers").inner_text()
    assert attempt.locator(".response-status").inner_text() == "200"
    # What the receiver got is what the page says was sent.
    assert receiver.url + receiver.requests[0].path == attempt.locator(".request-line").inner_text()[4:]


def test_retry_now_shows_the_send_under_way_then_the_result_without_a_reload(admin_page, live_server, post_events,
                                                                             receiver, run_jobs):
    from playwright.sync_api import expect

    from ..receiver import Reply

    receiver.script = [Reply(503, "busy")]
    make_profile(url=receiver.url + "/partials.php")
    post_events(event())
    run_jobs(until=lambda: len(receiver.requests) == 1)
    delivery = db.session.scalars(db.select(Delivery)).one()
    assert delivery.status == "retrying"
    db.session.execute(db.update(Delivery).values(due_at=delivery.due_at.replace(year=2099)))  # not due by itself
    db.session.commit()
    page = admin_page
    page.goto(f"{live_server}/deliveries/{delivery.id}")
    page.click("#actions >> text=Retry now")
    expect(page.locator("#sending-soon")).to_be_visible()
    expect(page.locator("#actions >> text=Retry now")).to_have_count(0)
    run_jobs(until=lambda: len(receiver.requests) == 2)
    # the page reloads itself once the attempt is recorded
    expect(page.locator("h1")).to_have_text(f"Delivery #{delivery.id} delivered", timeout=15000)
    expect(page.locator("#sending-soon")).to_have_count(0)
