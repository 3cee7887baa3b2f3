"""Deliveries as CSV (issue 25, point 18): the filtered list, every page, for an admin to hand to a
partner; card numbers masked wherever they appear; no cell a spreadsheet would run as a formula."""
import csv
import io

from exporter.extensions import db
from exporter.models import Delivery

from ..factories import event, make_profile

CARD = "4000056655665556"


def rows(response):
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


def test_the_filtered_list_downloads_as_csv_masked_and_neutralised(logged_in, post_events):
    make_profile()
    make_profile(name="Other partner", routes=[{"customer_types": ["decline"], "campaigns": [], "products": []}])
    post_events({"events": [event("e1", firstName="=HYPERLINK(\"http://evil\")", lastName="Doe"),
                            event("e2", type="decline", customerId=2, emailAddress="b@example.com", orderId=2)]})
    first = db.session.scalars(db.select(Delivery).where(Delivery.profile.has(name="Call center partials"))).one()
    first.last_error = f"HTTP 500: the partner said card {CARD[:4]} {CARD[4:8]} {CARD[8:12]} {CARD[12:]} is refused"
    db.session.commit()

    response = logged_in.get(f"/deliveries/export.csv?profile={first.profile_id}")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="deliveries-')
    header, *data = rows(response)
    assert header[:4] == ["Delivery", "Profile", "Status", "Customer Type / File date"]
    assert len(data) == 1  # the filter holds: the other profile's delivery is not in it
    row = dict(zip(header, data[0]))
    assert row["Delivery"] == str(first.id) and row["Customer Type / File date"] == "Partial"
    assert row["Customer"] == "'=HYPERLINK(\"http://evil\") Doe"  # shown, never run
    assert CARD not in response.get_data(as_text=True) and "4000 0566" not in response.get_data(as_text=True)
    assert "400005******5556" in row["Last error"]
    assert len(rows(logged_in.get("/deliveries/export.csv"))) == 3  # no filter: both, and the header


def test_every_page_of_the_list_is_in_the_csv(logged_in, post_events):
    make_profile()
    post_events({"events": [event(f"e{i}", customerId=i + 1, orderId=i + 1) for i in range(60)]})  # 50 a page
    assert len(rows(logged_in.get("/deliveries/export.csv"))) == 61


def test_a_bad_filter_is_a_400_naming_it(logged_in):
    response = logged_in.get("/deliveries/export.csv?since=yesterday")
    assert response.status_code == 400
    assert response.get_data(as_text=True) == "Not a valid filter: From: Give the date as YYYY-MM-DD\n"


def test_the_list_links_to_the_csv_with_its_filters(logged_in):
    html = logged_in.get("/deliveries/?status=retrying").get_data(as_text=True)
    assert 'href="/deliveries/export.csv?status=retrying"' in html
