"""Daily files: events in through the intake, one CSV per route per day out to a real FTP server."""
import os
import stat
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from exporter.files import daily_files
from exporter import security
from exporter.extensions import db
from exporter.models import Customer, Delivery, FieldMapping, FileRow, HistoryEntry, Profile

from ..factories import event, make_profile
from ..plugins.conftest import ftp_server  # noqa: F401 - a fixture
from ..plugins.ftp_servers import FtpServer

DAY = datetime.now(timezone.utc).date() - timedelta(days=3)
PARTIALS_259 = {"customer_types": ["partial"], "campaigns": [259], "products": []}
DECLINES = {"customer_types": ["decline"], "campaigns": [], "products": []}
CARD = "4000056655665556"  # a real-looking card, not on the test-card list
HEADER = b"first_name,order_date,list_id,email_address,campaign_number\r\n"


def at(day, hh, mm=0, tz="UTC"):
    """An ISO timestamp of a local time on a day, as the CRM sends occurred_at."""
    return datetime.combine(day, time(hh, mm), tzinfo=ZoneInfo(tz)).isoformat()


def utc(day, hh, mm=0, tz="UTC"):
    return datetime.combine(day, time(hh, mm), tzinfo=ZoneInfo(tz)).astimezone(timezone.utc)


def ftp_profile(server, name="Daily partials", routes=(PARTIALS_259,), created=DAY, fields=None, **settings):
    """An FTP profile pointing at the server, made (as far as tick() knows) on `created`."""
    profile = make_profile(name=name, export_type="ftp", settings=server.settings(**settings), routes=list(routes),
                           **(fields or {}))
    profile.created_at = datetime.combine(created, time(12))  # noon UTC: that day in any zone of ±12 h
    db.session.commit()
    return profile


def file_name(profile, route, day=DAY):
    return f"{profile.name.lower().replace(' ', '-')}_{route.id}_{day:%Y%m%d}.csv"


def deliveries():
    return db.session.scalars(db.select(Delivery).order_by(Delivery.route_id, Delivery.file_date)).all()


def all_delivered():
    """Every file there is to send was delivered (a cancelled one holds late rows only)."""
    files = [d for d in deliveries() if d.status != "cancelled"]
    return bool(files) and all(d.status == "delivered" for d in files)


def history_of(crm_customer_id):
    return [h.message for h in db.session.scalars(db.select(HistoryEntry).join(Customer).where(
        Customer.crm_customer_id == crm_customer_id).order_by(HistoryEntry.id))]


def test_one_file_per_route_holding_exactly_that_routes_day(app, post_events, ftp_server, run_jobs):
    profile = ftp_profile(ftp_server, routes=[PARTIALS_259, DECLINES])
    partials, declines = profile.routes
    bodies = [
        event("late", occurred_at=at(DAY, 18), firstName="Zoe", emailAddress="zoe@example.com", customerId=2,
              orderDate="2026-11-27 18:00:00"),
        event("early", occurred_at=at(DAY, 9), firstName='Ann "A", Jr', emailAddress="ann@example.com",
              customerId=1, orderDate="2026-11-27 09:00:00"),
        event("declined", type="decline", occurred_at=at(DAY, 12), firstName="Dee", customerId=3),
        event("day-before", occurred_at=at(DAY - timedelta(days=1), 12), firstName="Old"),
        event("day-after", occurred_at=at(DAY + timedelta(days=1), 0, 1), firstName="New"),
        event("other-campaign", occurred_at=at(DAY, 10), campaignId=999, firstName="Other"),
        event("test-card", occurred_at=at(DAY, 11), isTestCard=True, firstName="Tess"),
    ]
    assert post_events({"events": bodies}).status_code == 202

    assert daily_files.tick(now=utc(DAY + timedelta(days=1), 1, 0)) == 2
    run_jobs(until=all_delivered)

    assert ftp_server.files() == {
        file_name(profile, partials): HEADER
        + b'"Ann ""A"", Jr",2026-11-27 09:00:00,400,ann@example.com,259\r\n'
        + b"Zoe,2026-11-27 18:00:00,400,zoe@example.com,259\r\n",
        file_name(profile, declines): HEADER + b"Dee,2026-11-27 14:03:22,400,jane@example.com,259\r\n",
    }
    first = [d for d in deliveries() if d.file_date == DAY][0]
    assert first.details["rows"] == 2 and first.details["file_name"] == file_name(profile, partials)
    assert first.attempts[0].method == "STOR" and "226 Transfer complete." in first.attempts[0].response_body
    # The day before the profile existed has no file on schedule: its row is kept as late.
    assert [(d.route_id, d.file_date, d.status, d.details) for d in deliveries() if d.file_date < DAY] == [
        (partials.id, DAY - timedelta(days=1), "cancelled", {"late_rows": 1})]


def test_a_big_days_upload_may_run_as_long_as_its_claim(app, ftp_server):
    # RQ kills a job after 3 minutes by default; a large file on a slow link needs longer. The file
    # goes out on a sender thread of the worker, and the drain job that starts it may last its claim.
    from exporter.delivery import queue

    app.config["CLAIM_TIMEOUT_SECONDS"] = 1800
    ftp_profile(ftp_server)
    daily_files.tick(now=utc(DAY + timedelta(days=1), 2))
    [job] = queue.get_queue(app.config["REDIS_URL"], app.config["QUEUE_NAME"]).jobs
    assert job.func_name == "exporter.jobs.drain"
    assert job.timeout == 1800 + app.config["DRAIN_SECONDS"]


def test_tick_waits_for_send_at_and_makes_each_file_once(app, ftp_server, run_jobs):
    ftp_profile(ftp_server, send_at="06:30")
    next_day = DAY + timedelta(days=1)
    assert daily_files.tick(now=utc(next_day, 6, 29)) == 0
    assert daily_files.tick(now=utc(next_day, 6, 30)) == 1
    assert daily_files.tick(now=utc(next_day, 6, 31)) == 0
    assert [(d.file_date, d.status) for d in deliveries()] == [(DAY, "scheduled")]


def test_days_missed_while_nothing_ran_are_still_made(app, post_events, ftp_server, run_jobs):
    profile = ftp_profile(ftp_server, created=DAY - timedelta(days=2))
    post_events(event("missed", occurred_at=at(DAY - timedelta(days=1), 15), firstName="Missed"))
    # The app was down for three Send Ats; the first tick after makes all three days.
    assert daily_files.tick(now=utc(DAY + timedelta(days=1), 2)) == 3
    run_jobs(until=all_delivered)
    assert [d.file_date for d in deliveries()] == [DAY - timedelta(days=2), DAY - timedelta(days=1), DAY]
    # Days without rows are delivered without a file (Send Empty Files is off): say so.
    assert [d.details["uploaded"] for d in deliveries()] == [False, True, False]
    assert list(ftp_server.files()) == [file_name(profile, profile.routes[0], DAY - timedelta(days=1))]


def test_an_inactive_profile_makes_no_files(app, ftp_server):
    profile = ftp_profile(ftp_server)
    profile.active = False
    db.session.commit()
    assert daily_files.tick(now=utc(DAY + timedelta(days=1), 2)) == 0


def test_the_day_runs_midnight_to_midnight_in_the_profiles_time_zone(app, post_events, ftp_server, run_jobs):
    tz = "America/New_York"
    next_day = DAY + timedelta(days=1)
    profile = ftp_profile(ftp_server, time_zone=tz, send_at="01:00", created=DAY)
    post_events({"events": [event("2330", occurred_at=at(DAY, 23, 30, tz), firstName="Before"),
                            event("0030", occurred_at=at(next_day, 0, 30, tz), firstName="After")]})
    # In UTC both happened on the next day; in New York they are a day apart.
    assert utc(DAY, 23, 30, tz).date() == utc(next_day, 0, 30, tz).date() == next_day
    assert daily_files.tick(now=utc(next_day + timedelta(days=1), 1, 0, tz)) == 2
    run_jobs(until=all_delivered)
    files = ftp_server.files()
    route = profile.routes[0]
    assert files[file_name(profile, route, DAY)].splitlines()[1].startswith(b"Before,")
    assert files[file_name(profile, route, next_day)].splitlines()[1].startswith(b"After,")
    assert [len(f.splitlines()) for f in files.values()] == [2, 2]


def test_a_server_that_is_down_then_up_gets_the_file_on_retry(app, post_events, tmp_path, run_jobs):
    (tmp_path / "partner").mkdir()
    server = FtpServer(tmp_path / "partner")  # not started: the partner's server is down
    profile = ftp_profile(server)
    post_events(event("e1", occurred_at=at(DAY, 12)))
    daily_files.tick(now=utc(DAY + timedelta(days=1), 2))
    run_jobs(until=lambda: deliveries()[0].attempt_count >= 2)
    delivery = deliveries()[0]
    assert delivery.status == "retrying"
    assert delivery.attempts[0].error.startswith(f"connect to 127.0.0.1:{server.port} failed: ")
    assert "Connection refused" in delivery.last_error
    server.start()
    try:
        run_jobs(until=all_delivered, timeout=20)
    finally:
        server.stop()
    assert list(server.files()) == [file_name(profile, profile.routes[0])]
    assert deliveries()[0].attempts[-1].ok


def test_a_bad_password_is_retried_with_a_clear_error(app, post_events, ftp_server, run_jobs):
    profile = ftp_profile(ftp_server, password="wrong-password")
    post_events(event("e1", occurred_at=at(DAY, 12)))
    daily_files.tick(now=utc(DAY + timedelta(days=1), 2))
    run_jobs(until=lambda: deliveries()[0].attempt_count >= 2)
    delivery = deliveries()[0]
    assert delivery.status == "retrying" and ftp_server.files() == {}
    for attempt in delivery.attempts:
        assert attempt.error == "login as partner failed: 530 Authentication failed."
        assert attempt.response_body.startswith("220 test FTP server ready")
        assert "wrong-password" not in attempt.error + attempt.response_body + attempt.request_body
    # The admin fixes the password: the next try gets through.
    profile.settings = {**profile.settings, "password": security.encrypt(app.config["SECRET_KEY"], ftp_server.password)}
    db.session.commit()
    run_jobs(until=all_delivered, timeout=20)
    assert list(ftp_server.files()) == [file_name(profile, profile.routes[0])]


def test_every_customer_in_the_file_gets_one_history_message(app, post_events, ftp_server, run_jobs):
    profile = ftp_profile(ftp_server)
    post_events({"events": [event("a1", occurred_at=at(DAY, 8), customerId=1),
                            event("a2", occurred_at=at(DAY, 9), customerId=1),
                            event("b1", occurred_at=at(DAY, 10), customerId=2, emailAddress="b@example.com"),
                            event("other-day", occurred_at=at(DAY + timedelta(days=1), 10), customerId=3)]})
    daily_files.tick(now=utc(DAY + timedelta(days=1), 2))
    run_jobs(until=all_delivered)
    delivery = deliveries()[0]
    name = file_name(profile, profile.routes[0])
    history = db.session.scalars(db.select(HistoryEntry).order_by(HistoryEntry.customer_id)).all()
    assert [h.customer.crm_customer_id for h in history] == [1, 2]
    assert {h.message for h in history} == {f"Export profile 'Daily partials' fired: file {name} uploaded (3 rows)"}
    assert {h.delivery_id for h in history} == {delivery.id}


def test_an_empty_day_is_delivered_without_a_file(app, ftp_server, run_jobs):
    ftp_profile(ftp_server)
    daily_files.tick(now=utc(DAY + timedelta(days=1), 2))
    run_jobs(until=all_delivered)
    delivery = deliveries()[0]
    assert ftp_server.files() == {}
    assert delivery.details["uploaded"] is False and delivery.details["rows"] == 0
    assert delivery.attempts[0].ok and db.session.scalars(db.select(HistoryEntry)).all() == []


# --- the re-run command ---------------------------------------------------------------------

def files_send(app, *args):
    return app.test_cli_runner().invoke(args=["files", "send", *args])


def test_the_rerun_command_rebuilds_and_resends_a_past_day(app, post_events, ftp_server, run_jobs):
    profile = ftp_profile(ftp_server, routes=[PARTIALS_259, DECLINES])
    post_events(event("first", occurred_at=at(DAY, 8), firstName="First"))
    # Never made by tick(): the command makes each route's file, here and now (no worker runs).
    result = files_send(app, "--profile", "Daily partials", "--date", DAY.isoformat(), "--now")
    assert result.exit_code == 0, result.output
    partials, declines = profile.routes
    day = DAY.isoformat()
    assert (f"The {day} file for Partial; campaign 259; all products: {file_name(profile, partials)} uploaded: "
            "1 row," in result.output)
    assert (f"The {day} file for Decline; all campaigns; all products: {file_name(profile, declines)}: no rows, "
            "not uploaded") in result.output
    assert ftp_server.files()[file_name(profile, partials)].count(b"\r\n") == 2

    post_events(event("late", occurred_at=at(DAY, 9), firstName="Late"))  # arrived after the file went
    assert deliveries()[0].details["late_rows"] == 1
    result = files_send(app, "--profile", "Daily partials", "--date", DAY.isoformat(), "--now")
    assert result.exit_code == 0, result.output
    lines = ftp_server.files()[file_name(profile, partials)].splitlines()
    assert [line.split(b",")[0] for line in lines] == [b"first_name", b"First", b"Late"]
    assert len(deliveries()) == 2  # the same deliveries, sent again
    assert [len(d.attempts) for d in deliveries()] == [2, 2]
    assert "late_rows" not in deliveries()[0].details  # the file carries it now


def test_a_rerun_leaves_out_an_event_whose_personal_data_was_purged(app, post_events, ftp_server):
    """Retention (issue 12): a purged event is never exported again, not in a re-run day either."""
    from exporter.flows import retention

    profile = ftp_profile(ftp_server)
    post_events(event("kept", occurred_at=at(DAY, 8), firstName="Kept", customerId=1))
    post_events(event("forgotten", occurred_at=at(DAY, 9), firstName="Forgotten", customerId=2))
    assert files_send(app, "--profile", "Daily partials", "--date", DAY.isoformat(), "--now").exit_code == 0
    retention.forget(db.session.scalars(db.select(Customer).where(Customer.crm_customer_id == 2)).one(), by="dpo")
    assert files_send(app, "--profile", "Daily partials", "--date", DAY.isoformat(), "--now").exit_code == 0
    lines = ftp_server.files()[file_name(profile, profile.routes[0])].splitlines()
    assert [line.split(b",")[0] for line in lines] == [b"first_name", b"Kept"]
    assert "late_rows" not in deliveries()[0].details  # a purged row is not "late" either


def test_a_mapping_edited_between_two_files_renders_anew(app, post_events, ftp_server):
    # Renderers are cached per mappings' content: an edit that leaves the profile's updated_at alone still counts.
    profile = ftp_profile(ftp_server)
    post_events(event("first", occurred_at=at(DAY, 8), firstName="First"))
    assert files_send(app, "--profile", "Daily partials", "--date", DAY.isoformat(), "--now").exit_code == 0
    updated = profile.updated_at
    db.session.execute(db.update(FieldMapping).where(FieldMapping.profile_id == profile.id,
                                                     FieldMapping.export_name == "list_id").values(static_value="401"))
    db.session.commit()
    assert db.session.get(Profile, profile.id).updated_at == updated
    assert files_send(app, "--profile", "Daily partials", "--date", DAY.isoformat(), "--now").exit_code == 0
    lines = ftp_server.files()[file_name(profile, profile.routes[0])].splitlines()
    assert lines[1] == b"First,2026-11-27 14:03:22,401,jane@example.com,259"


def test_the_rerun_command_queues_for_the_workers_by_default(app, post_events, ftp_server, run_jobs):
    # Sending in the command's process would run without the workers' job timeout, and a worker
    # could upload the same file at the same time once the sweeper released the claim.
    profile = ftp_profile(ftp_server, routes=[PARTIALS_259, DECLINES])
    post_events(event("e1", occurred_at=at(DAY, 8)))
    result = files_send(app, "--profile", "Daily partials", "--date", DAY.isoformat())
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"The {DAY.isoformat()} file for {words}: queued for the workers (delivery {d.id})"
        for words, d in zip(("Partial; campaign 259; all products", "Decline; all campaigns; all products"),
                            deliveries())]
    assert ftp_server.files() == {} and [d.attempts for d in deliveries()] == [[], []]
    run_jobs(until=all_delivered)
    assert list(ftp_server.files()) == [file_name(profile, profile.routes[0])]


def test_the_rerun_command_without_a_queue_leaves_the_files_due_for_the_sweeper(app, ftp_server):
    ftp_profile(ftp_server)
    app.config["REDIS_URL"] = None  # `exporter run`'s embedded Redis: other commands do not know it
    result = files_send(app, "--profile", "Daily partials", "--date", DAY.isoformat())
    assert result.exit_code == 0, result.output
    assert ("no worker queue was reached: the sweeper of `exporter run` or `exporter cron` will queue it"
            in result.output)
    assert [d.status for d in deliveries()] == ["scheduled"]


def test_the_rerun_command_reports_a_failed_upload(app, post_events, ftp_server):
    ftp_profile(ftp_server, password="wrong-password")
    post_events(event("e1", occurred_at=at(DAY, 8)))
    result = files_send(app, "--profile", "Daily partials", "--date", DAY.isoformat(), "--now")
    assert result.exit_code == 1
    assert "failed: login as partner failed: 530 Authentication failed. (retried by the workers)" in result.output
    assert deliveries()[0].status == "retrying"


def test_the_rerun_command_now_waits_for_a_closed_send_window(app, post_events, ftp_server):
    """--now does not pass the send window: the file waits for the opening, and the command says so."""
    from exporter import windows
    from exporter.models import utcnow

    opens = (utcnow() + timedelta(hours=12)).replace(second=0, microsecond=0)
    window = {"days": list(windows.DAYS), "from": f"{opens:%H:%M}", "to": f"{opens + timedelta(minutes=1):%H:%M}"}
    ftp_profile(ftp_server, fields={"send_window": window})
    post_events(event("e1", occurred_at=at(DAY, 8)))
    result = files_send(app, "--profile", "Daily partials", "--date", DAY.isoformat(), "--now")
    assert result.exit_code == 1
    [delivery] = deliveries()
    assert (f"not sent: waits for the send window: opens {opens:%a %H:%M} UTC (delivery {delivery.id}, "
            f"sent by the workers then)") in result.output
    assert ftp_server.files() == {} and delivery.attempts == []
    assert (delivery.status, delivery.due_at, delivery.attempt_count) == ("scheduled", opens, 0)
    assert delivery.waiting_reason == f"Waiting for the send window: opens {opens:%a %H:%M} UTC"


@pytest.mark.parametrize("args,message", [
    (["--profile", "Nobody", "--date", DAY.isoformat()], "Invalid value for --profile: no profile named 'Nobody'"),
    (["--profile", "Daily partials", "--date", "27/11/2026"], "Invalid value for --date: '27/11/2026' is not a date"),
    (["--profile", "Daily partials", "--date", "2026-02-30"], "Invalid value for --date: '2026-02-30' is not a date"),
    (["--profile", "Daily partials", "--date", "2999-01-01"], "Invalid value for --date: 2999-01-01 is not over yet in UTC (today is"),
    (["--profile", "Call center partials", "--date", DAY.isoformat()],
     "Invalid value for --profile: profile 'Call center partials' is not a daily-file export type (postback)"),
    (["--profile", "Daily partials"], "Missing option '--date'"),
])
def test_the_rerun_command_names_what_is_wrong(app, ftp_server, args, message):
    ftp_profile(ftp_server)
    make_profile()  # a postback profile
    result = files_send(app, *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert deliveries() == []


# --- late rows ------------------------------------------------------------------------------

LATE = "not in the daily file of {day} yet: {reason}; re-run the day to include it"


def test_a_row_after_its_days_file_was_sent_is_counted_named_and_sent_by_a_rerun(app, post_events, ftp_server,
                                                                                   run_jobs):
    profile = ftp_profile(ftp_server)
    post_events(event("on-time", occurred_at=at(DAY, 8), firstName="Ann", customerId=1))
    daily_files.tick(now=utc(DAY + timedelta(days=1), 2))
    run_jobs(until=all_delivered)
    post_events({"events": [event("late-1", occurred_at=at(DAY, 9), firstName="Bob", customerId=2),
                            event("late-2", occurred_at=at(DAY, 10), firstName="Cy", customerId=3)]})

    delivery = deliveries()[0]
    assert delivery.status == "delivered" and delivery.details["late_rows"] == 2
    late = LATE.format(day=DAY.isoformat(), reason="it arrived after the file was sent")
    assert history_of(2) == [f"Export profile 'Daily partials': {late}"]
    assert db.session.scalars(db.select(HistoryEntry.delivery_id).join(Customer).where(
        Customer.crm_customer_id == 2)).all() == [delivery.id]

    daily_files.rerun(profile, DAY)
    run_jobs(until=all_delivered)
    rows = ftp_server.files()[file_name(profile, profile.routes[0])].splitlines()[1:]
    assert [row.split(b",")[0] for row in rows] == [b"Ann", b"Bob", b"Cy"]
    assert "late_rows" not in deliveries()[0].details
    assert history_of(2)[-1].startswith("Export profile 'Daily partials' fired: file ")


def test_a_row_while_its_file_waits_is_not_late(app, post_events, ftp_server, run_jobs):
    profile = ftp_profile(ftp_server)
    daily_files.tick(now=utc(DAY + timedelta(days=1), 2))  # made and queued, not sent yet
    post_events(event("in-time", occurred_at=at(DAY, 23, 59), firstName="Ann", customerId=1))
    assert deliveries()[0].status == "scheduled" and "late_rows" not in deliveries()[0].details
    assert history_of(1) == []
    run_jobs(until=all_delivered)
    assert ftp_server.files()[file_name(profile, profile.routes[0])].splitlines()[1].startswith(b"Ann,")
    assert "late_rows" not in deliveries()[0].details


def test_a_row_for_a_day_past_the_catch_up_is_kept_on_a_cancelled_delivery(app, post_events, ftp_server,
                                                                            run_jobs):
    old = DAY - timedelta(days=daily_files.DEFAULT_CATCH_UP_DAYS + 3)
    profile = ftp_profile(ftp_server, created=old - timedelta(days=5))
    post_events({"events": [event("old-1", occurred_at=at(old, 9), firstName="Ann", customerId=1),
                            event("old-2", occurred_at=at(old, 10), firstName="Bob", customerId=2)]})
    assert daily_files.tick(now=utc(DAY + timedelta(days=1), 2)) == daily_files.DEFAULT_CATCH_UP_DAYS
    held = [d for d in deliveries() if d.file_date == old]
    assert [(d.status, d.details) for d in held] == [("cancelled", {"late_rows": 2})]
    assert held[0].cancel_reason == (f"not made on schedule: {old.isoformat()} is older than the 7-day catch-up; "
                                     f"re-run the day to send it")
    reason = "that day is older than the 7 days whose files are made on schedule (or the profile did not exist yet)"
    assert history_of(1) == [f"Export profile 'Daily partials': {LATE.format(day=old.isoformat(), reason=reason)}"]

    daily_files.rerun(profile, old)
    run_jobs(until=all_delivered)
    assert ftp_server.files()[file_name(profile, profile.routes[0], old)].count(b"\r\n") == 3
    assert held[0].status == "delivered" and "late_rows" not in held[0].details


def test_a_row_that_misses_the_file_being_uploaded_is_counted_when_it_is_delivered(app, client, intake_token,
                                                                                   tmp_path, run_jobs):
    """The row arrives while the file is on its way: the file does not carry it, and says so."""
    def row_arrives(path):  # in the server, before the worker hears the upload went through
        response = client.post("/intake/events", json=event("mid-upload", occurred_at=at(DAY, 12), customerId=2),
                               headers={"Authorization": f"Bearer {intake_token}"})
        assert response.status_code == 202

    (tmp_path / "partner").mkdir()
    server = FtpServer(tmp_path / "partner", on_received=row_arrives).start()
    try:
        profile = ftp_profile(server)
        client.post("/intake/events", json=event("on-time", occurred_at=at(DAY, 8), customerId=1),
                    headers={"Authorization": f"Bearer {intake_token}"})
        daily_files.tick(now=utc(DAY + timedelta(days=1), 2))
        run_jobs(until=all_delivered)
    finally:
        server.stop()
    assert server.files()[file_name(profile, profile.routes[0])].count(b"\r\n") == 2  # header, on-time
    assert deliveries()[0].details["late_rows"] == 1
    # Only the customer whose row the file carried hears it fired; the other hears it is not in it.
    history = {c.crm_customer_id: db.session.scalars(db.select(HistoryEntry.message).where(
        HistoryEntry.customer_id == c.id)).all() for c in db.session.scalars(db.select(Customer))}
    assert [" fired: " in m for m in history[1]] == [True]
    assert [(" fired: " in m, f"not in the daily file of {DAY.isoformat()} yet" in m) for m in history[2]] == [
        (False, True)]


# --- the file's temporary copy ----------------------------------------------------------------

def test_the_upload_is_written_in_a_private_folder_cleaned_of_what_killed_sends_left(app, post_events, tmp_path,
                                                                                     run_jobs):
    """A PCI profile's file holds card numbers until it is uploaded: never in the shared /tmp."""
    work = tmp_path / "files" / "tmp"
    work.mkdir(parents=True)
    stale, fresh = work / "exporter-killed.csv", work / "exporter-running.csv"
    stale.write_text("left by a killed send\r\n")
    fresh.write_text("another worker's file\r\n")
    day_ago = os.stat(fresh).st_mtime - 86400  # by the file system's clock, whatever the tests' clock
    os.utime(stale, (day_ago, day_ago))
    seen = {}

    def look(path):  # while the upload is in the partner's hands, the worker's copy still exists
        seen["files"] = sorted(os.listdir(work))
        seen["mode"] = stat.S_IMODE(os.stat(work).st_mode)
        seen["card"] = any(CARD in (work / name).read_text() for name in seen["files"])

    (tmp_path / "partner").mkdir()
    server = FtpServer(tmp_path / "partner", on_received=look).start()
    try:
        ftp_profile(server, fields={"pci_documented": True, "mappings": [
            {"export_name": "name", "field": "firstName"}, {"export_name": "card", "field": "cardNumber"}]})
        post_events(event("e1", occurred_at=at(DAY, 8), cardNumber=CARD))
        daily_files.tick(now=utc(DAY + timedelta(days=1), 2))
        run_jobs(until=all_delivered)
    finally:
        server.stop()
    assert seen["mode"] == 0o700 and seen["card"]
    assert len(seen["files"]) == 2 and "exporter-running.csv" in seen["files"]  # the stale one went first
    assert sorted(os.listdir(work)) == ["exporter-running.csv"]  # and ours once uploaded


def test_rows_stream_in_batches_in_time_order_with_cards_only_when_documented(app, post_events, ftp_server):
    from exporter import mapping

    fields = {"pci_documented": True, "mappings": [
        {"export_name": "name", "field": "firstName"}, {"export_name": "card", "field": "cardNumber"},
        {"export_name": "product", "field": "productName"}]}
    profile = ftp_profile(ftp_server, fields=fields)
    hours = [17, 9, 12, 8, 20]
    post_events({"events": [event(f"e{h}", occurred_at=at(DAY, h), firstName=f"At{h}", cardNumber=CARD)
                            for h in hours]})
    route, renderer = profile.routes[0], mapping.renderer_for(profile)
    carried = {}
    rows = list(daily_files.rendered_rows(profile, route.id, DAY, renderer, yield_per=2, carried=carried))
    assert rows == [[("name", f"At{h}"), ("card", CARD), ("product", "Keto 30ct")] for h in sorted(hours)]
    assert carried["last_row_id"] == max(r.id for r in db.session.scalars(db.select(FileRow)))

    profile.pci_documented = False  # the same mappings, the documentation withdrawn: no card leaves
    db.session.commit()
    rows = list(daily_files.rendered_rows(profile, route.id, DAY, renderer, yield_per=2))
    assert [dict(r)["card"] for r in rows] == [""] * 5


def test_files_send_now_with_gzip_and_pgp_loads_only_what_it_uses(app, app_config, post_events, ftp_server,
                                                                    tmp_path):
    """Issue 26: `exporter files send --now`, as a user runs it (a process of its own), sends a gzip + PGP
    file that gpg and gzip read back, and loads no web page, login limiter, Alembic or Redis client."""
    import gzip
    import subprocess
    import sys

    from ..pgp import Partner
    from ..test_cli import _LOADED_AT_EXIT

    partner = Partner()
    try:
        profile = ftp_profile(ftp_server, compression="gzip", pgp_key=partner.public_key,
                              file_name="{profile}_{route}_{date:%Y%m%d}.csv.gz.pgp")
        post_events(event("first", occurred_at=at(DAY, 8), firstName="First"))
        env = {**os.environ, "EXPORTER_INSTANCE_PATH": str(tmp_path), "EXPORTER_SECRET_KEY": app_config["SECRET_KEY"],
               "EXPORTER_DATABASE_URL": app_config["DATABASE_URL"], "EXPORTER_REDIS_URL": app_config["REDIS_URL"],
               "EXPORTER_FILES_DIR": app_config["FILES_DIR"], "EXPORTER_ALLOW_PRIVATE_TARGETS": "true"}
        result = subprocess.run([sys.executable, "-c", _LOADED_AT_EXIT, "files", "send", "--profile", profile.name,
                                 "--date", DAY.isoformat(), "--now"], env=env, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stderr
        assert "uploaded: 1 row," in result.stdout
        assert result.stdout.strip().splitlines()[-1] == "loaded: []"
        sent = ftp_server.files()[f"daily-partials_{profile.routes[0].id}_{DAY:%Y%m%d}.csv.gz.pgp"]
        assert gzip.decompress(partner.decrypt(sent)).splitlines()[1].startswith(b"First,")
    finally:
        partner.close()
