"""Daily files on screen: re-run a day from the profile page, download a file as it was sent."""
from datetime import timedelta

import pytest

from exporter.files import daily_files
from exporter.delivery import dispatch
from exporter import security
from exporter.extensions import db
from exporter.models import Delivery

from ..factories import event, make_profile
from ..plugins.conftest import ftp_server  # noqa: F401 - a fixture
from ..files.test_daily_files import DAY, DECLINES, PARTIALS_259, all_delivered, at, deliveries, file_name, ftp_profile, utc

CARD = "4000056655665556"  # a real-looking card, not on the test-card list
MASKED_CARD = "400005******5556"
CARD_MAPPINGS = [{"export_name": "name", "field": "firstName"}, {"export_name": "card", "field": "cardNumber"}]


def rerun(client, profile, date):
    return client.post(f"/files/profiles/{profile.id}/rerun", data={"date": date})


def test_files_pages_need_a_login(client, app, ftp_server):
    profile = ftp_profile(ftp_server)
    for response in (rerun(client, profile, DAY.isoformat()), client.get("/files/deliveries/1/download")):
        assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert deliveries() == []


def test_rerun_from_the_profile_page_sends_the_day_again(logged_in, app, post_events, ftp_server, run_jobs):
    profile = ftp_profile(ftp_server)
    post_events(event("e1", occurred_at=at(DAY, 8), firstName="Jane"))
    response = rerun(logged_in, profile, DAY.isoformat())
    assert response.status_code == 302
    assert "/profiles/" in response.headers["Location"]  # back to the profile
    page = logged_in.get(response.headers["Location"]).get_data(as_text=True)
    route = profile.routes[0]
    assert f"Re-run of {DAY.isoformat()} queued: 1 file (for Partial; campaign 259; all products)." in page
    run_jobs(until=all_delivered)
    assert ftp_server.files()[file_name(profile, route)].splitlines()[1].startswith(b"Jane,")

    # Again, after the file was delivered: the same delivery is reset and sent again.
    (ftp_server.root_path / file_name(profile, route)).unlink()
    assert rerun(logged_in, profile, DAY.isoformat()).status_code == 302
    run_jobs(until=all_delivered)
    assert list(ftp_server.files()) == [file_name(profile, route)]
    assert len(deliveries()) == 1 and len(deliveries()[0].attempts) == 2


@pytest.mark.parametrize("value,message", [
    ("", "Date is required"),
    ("27/11/2026", "&#39;27/11/2026&#39; is not a date as YYYY-MM-DD"),
    ("2999-01-01", "2999-01-01 is not over yet in UTC"),
])
def test_a_bad_rerun_date_is_named_beside_the_field(logged_in, app, ftp_server, value, message):
    profile = ftp_profile(ftp_server)
    response = rerun(logged_in, profile, value)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    field = page.split('id="field-date"', 1)[1].split("</div>", 1)[0]
    assert f'<span class="error">{message}' in field
    assert deliveries() == []


def test_rerun_of_a_profile_that_is_not_a_daily_file(logged_in, app):
    profile = make_profile()  # a postback profile
    response = rerun(logged_in, profile, DAY.isoformat())
    assert response.status_code == 400
    assert "is not a daily-file export type (postback)" in response.get_data(as_text=True)
    assert deliveries() == []


def test_rerun_of_an_unknown_profile_is_404(logged_in, app):
    assert logged_in.post("/files/profiles/999/rerun", data={"date": DAY.isoformat()}).status_code == 404


def test_rerun_without_the_csrf_token_is_refused(logged_in, app, ftp_server):
    profile = ftp_profile(ftp_server)
    app.config["WTF_CSRF_ENABLED"] = True
    response = rerun(logged_in, profile, DAY.isoformat())
    assert response.status_code == 400
    assert deliveries() == []


def test_the_download_is_the_file_as_sent_with_the_card_masked(logged_in, app, post_events, ftp_server, run_jobs):
    profile = ftp_profile(ftp_server, name="Card file", fields={"pci_documented": True, "mappings": CARD_MAPPINGS})
    post_events({"events": [event("e1", occurred_at=at(DAY, 8), firstName="Jane", cardNumber=CARD),
                            event("e2", occurred_at=at(DAY, 9), firstName="Joe")]})
    daily_files.tick(now=utc(DAY + timedelta(days=1), 2))
    run_jobs(until=all_delivered)
    name = file_name(profile, profile.routes[0])
    assert ftp_server.files()[name] == f"name,card\r\nJane,{CARD}\r\nJoe,\r\n".encode()

    delivery = deliveries()[0]
    response = logged_in.get(f"/files/deliveries/{delivery.id}/download")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == f"attachment; filename={name}"
    assert response.data == f"name,card\r\nJane,{MASKED_CARD}\r\nJoe,\r\n".encode()
    # Nothing unmasked anywhere the admin can see: the attempt log holds no rows.
    attempt = delivery.attempts[0]
    assert CARD not in attempt.request_body + attempt.response_body + str(delivery.details)


def test_no_download_before_the_file_was_sent(logged_in, app, ftp_server):
    profile = ftp_profile(ftp_server)
    daily_files.rerun(profile, DAY, enqueue=False)
    delivery = db.session.scalars(db.select(Delivery)).one()
    assert logged_in.get(f"/files/deliveries/{delivery.id}/download").status_code == 404
    assert logged_in.get("/files/deliveries/999/download").status_code == 404


def test_rerun_of_a_profile_without_routes(logged_in, app, ftp_server):
    profile = ftp_profile(ftp_server, routes=[])
    response = rerun(logged_in, profile, DAY.isoformat())
    assert response.status_code == 400
    assert "profile &#39;Daily partials&#39; has no routes: add one in Profile Routing" in response.get_data(as_text=True)


def test_rerun_leaves_a_file_being_sent_alone(logged_in, app, ftp_server):
    profile = ftp_profile(ftp_server, routes=[PARTIALS_259, DECLINES])
    daily_files.rerun(profile, DAY, enqueue=False)
    sending = deliveries()[0]
    sending.status = "sending"
    db.session.commit()
    response = rerun(logged_in, profile, DAY.isoformat())
    page = logged_in.get(response.headers["Location"]).get_data(as_text=True)
    assert ("queued: 1 file (for Decline; all campaigns; all products). 1 file is being sent right now and left alone."
            in page)
    assert [d.status for d in deliveries()] == ["sending", "scheduled"]


# --- a daily file's delivery page -------------------------------------------------------------

def test_the_delivery_page_shows_the_ftp_servers_replies_and_errors(logged_in, app, post_events, ftp_server,
                                                                     run_jobs):
    profile = ftp_profile(ftp_server, password="wrong-password")
    post_events(event("e1", occurred_at=at(DAY, 8)))
    daily_files.tick(now=utc(DAY + timedelta(days=1), 2))
    run_jobs(until=lambda: deliveries()[0].attempt_count >= 1)
    profile.settings = {**profile.settings, "password": security.encrypt(app.config["SECRET_KEY"], ftp_server.password)}
    db.session.commit()
    dispatch.retry_now(deliveries()[0])
    run_jobs(until=all_delivered)

    page = logged_in.get(f"/deliveries/{deliveries()[0].id}").get_data(as_text=True)
    failed, succeeded = page.split('id="attempt-1"', 1)[1].split('id="attempt-2"', 1)
    assert '<p class="error attempt-error">login as partner failed: 530 Authentication failed.</p>' in failed
    assert "220 test FTP server ready" in failed
    assert "226 Transfer complete." in succeeded and "250 Renaming" in succeeded
    assert "No response." not in page and ftp_server.password not in page


def test_the_delivery_page_counts_late_events_and_reruns_the_day(logged_in, app, post_events, ftp_server,
                                                                 run_jobs):
    profile = ftp_profile(ftp_server)
    post_events(event("e1", occurred_at=at(DAY, 8), firstName="Ann"))
    daily_files.tick(now=utc(DAY + timedelta(days=1), 2))
    run_jobs(until=all_delivered)
    delivery = deliveries()[0]
    page = logged_in.get(f"/deliveries/{delivery.id}").get_data(as_text=True)
    assert 'id="late-rows"' not in page

    post_events({"events": [event("late-1", occurred_at=at(DAY, 9), firstName="Bob"),
                            event("late-2", occurred_at=at(DAY, 10), firstName="Cy")]})
    page = logged_in.get(f"/deliveries/{delivery.id}").get_data(as_text=True)
    late = page.split('id="late-rows"', 1)[1].split("</div>", 1)[0]
    assert "2 events arrived after this file was sent: re-run the day to include them." in late
    assert f'name="date" value="{DAY.isoformat()}"' in late and f"Re-run {DAY.isoformat()} (every route)" in late

    response = logged_in.post(f"/files/profiles/{profile.id}/rerun", data={"date": DAY.isoformat()})
    assert response.status_code == 302
    run_jobs(until=all_delivered)
    assert 'id="late-rows"' not in logged_in.get(f"/deliveries/{delivery.id}").get_data(as_text=True)
    assert ftp_server.files()[file_name(profile, profile.routes[0])].count(b"\r\n") == 4


def test_a_day_past_the_catch_up_shows_its_late_events_on_a_cancelled_delivery(logged_in, post_events, ftp_server):
    old = DAY - timedelta(days=daily_files.DEFAULT_CATCH_UP_DAYS + 3)
    ftp_profile(ftp_server, created=old)
    post_events(event("old", occurred_at=at(old, 9)))
    delivery = deliveries()[0]
    page = logged_in.get(f"/deliveries/{delivery.id}").get_data(as_text=True)
    assert "1 event of this day is in no file sent: re-run the day to send it." in page
    assert f"not made on schedule: {old.isoformat()} is older than the 7-day catch-up" in page
    assert "Send now" in page  # sends the day's file, as a re-run does


@pytest.mark.parametrize("compression,suffix", [("gzip", ".csv.gz"), ("zip", ".zip")])
def test_a_compressed_file_in_a_partners_dialect_is_kept_downloadable_as_sent(
        logged_in, app, post_events, ftp_server, run_jobs, compression, suffix):
    import gzip
    import io
    import zipfile

    profile = ftp_profile(ftp_server, name="Card file", fields={"pci_documented": True, "mappings": CARD_MAPPINGS},
                          file_name="{profile}_{yyyymmdd}" + suffix, compression=compression, delimiter="tab",
                          line_ending="lf", quoting="all", encoding="utf-8-bom")
    post_events({"events": [event("e1", occurred_at=at(DAY, 8), firstName="Zoë", cardNumber=CARD),
                            event("e2", occurred_at=at(DAY, 9), firstName="Joe")]})
    daily_files.tick(now=utc(DAY + timedelta(days=1), 2))
    run_jobs(until=all_delivered)
    name = f"card-file_{DAY:%Y%m%d}{suffix}"

    def plain(data):
        if compression == "gzip":
            return gzip.decompress(data)
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            assert archive.namelist() == [f"card-file_{DAY:%Y%m%d}.csv"]
            return archive.read(archive.namelist()[0])

    sent = ftp_server.files()[name]
    assert plain(sent) == f'\ufeff"name"\t"card"\n"Zoë"\t"{CARD}"\n"Joe"\t""\n'.encode()
    response = logged_in.get(f"/files/deliveries/{deliveries()[0].id}/download")
    assert response.status_code == 200 and response.mimetype == f"application/{compression}"
    assert response.headers["Content-Disposition"].endswith(f"filename={name}")
    assert plain(response.data) == f'\ufeff"name"\t"card"\n"Zoë"\t"{MASKED_CARD}"\n"Joe"\t""\n'.encode()


def test_a_value_latin_1_cannot_hold_stops_the_file_and_the_delivery_page_names_row_and_column(
        logged_in, app, post_events, ftp_server, run_jobs):
    ftp_profile(ftp_server, encoding="latin-1")
    post_events({"events": [event("e1", occurred_at=at(DAY, 8), firstName="Zoë"),
                            event("e2", occurred_at=at(DAY, 9), firstName="Łukasz")]})
    daily_files.tick(now=utc(DAY + timedelta(days=1), 2))
    run_jobs(until=lambda: deliveries()[0].attempt_count >= 1)
    delivery = deliveries()[0]
    assert delivery.status != "delivered" and ftp_server.files() == {}  # nothing sent with a row left out
    page = logged_in.get(f"/deliveries/{delivery.id}").get_data(as_text=True)
    assert ("row 2, column first_name: the character &#39;Ł&#39; (U+0141) cannot be written in Latin-1: "
            "correct the value, or choose the Encoding UTF-8") in page


def test_an_encrypted_file_decrypts_with_the_partners_key_and_its_copy_is_kept_unencrypted(
        logged_in, app, post_events, ftp_server, run_jobs):
    import gzip

    from ..pgp import Partner

    partner = Partner()
    try:
        ftp_profile(ftp_server, file_name="{profile}_{yyyymmdd}.csv.gz.pgp", compression="gzip",
                    pgp_key=partner.public_key)
        post_events(event("e1", occurred_at=at(DAY, 8), firstName="Jane"))
        daily_files.tick(now=utc(DAY + timedelta(days=1), 2))
        run_jobs(until=all_delivered)
        name = f"daily-partials_{DAY:%Y%m%d}.csv.gz"
        sent = ftp_server.files()[f"{name}.pgp"]
        assert gzip.decompress(partner.decrypt(sent)).startswith(b"first_name,order_date,")
        response = logged_in.get(f"/files/deliveries/{deliveries()[0].id}/download")
        assert response.headers["Content-Disposition"].endswith(f"filename={name}")
        assert gzip.decompress(response.data) == gzip.decompress(partner.decrypt(sent))
    finally:
        partner.close()


def test_the_profile_page_shows_the_exact_name_of_each_routes_next_file(logged_in, app, ftp_server):
    from datetime import datetime, time
    from zoneinfo import ZoneInfo

    zone = ZoneInfo("America/New_York")

    def expected():  # the day whose file comes next: today's once Send At has passed there, else yesterday's
        local = datetime.now(zone)
        day = local.date() if local.time() >= time(1, 0) else local.date() - timedelta(days=1)
        return day, f"{day + timedelta(days=1):%Y-%m-%d} 01:00 America/New_York"

    profile = ftp_profile(ftp_server, routes=(PARTIALS_259, DECLINES), time_zone="America/New_York",
                          send_at="01:00", file_name="{profile}_{yyyymmdd}_r{route}.csv.gz", compression="gzip")
    before = expected()
    page = logged_in.get(f"/profiles/{profile.id}").get_data(as_text=True)
    shown = page.split('id="next-files"', 1)[1].split("</div>", 1)[0]
    for day, due in {before, expected()}:
        lines = [f'Route {route.id}: <code class="file-name">daily-partials_{day:%Y%m%d}_r{route.id}.csv.gz</code>, '
                 f"the file of {day.isoformat()},\n        sent {due}." for route in profile.routes]
        if all(line in shown for line in lines):
            break
    else:
        raise AssertionError(shown)
