"""Retention (issue 12): purge erases the personal data of events and attempts older than N days
whose deliveries are finished, and nothing else; deliveries keep status, times and counts; each
customer's history says so. On SQLite and, with EXPORTER_TEST_DATABASE_URL, PostgreSQL."""
import itertools
import os
import threading
from datetime import timedelta

import pytest

from exporter import models
from exporter.delivery import dispatch
from exporter.flows import retention
from exporter.extensions import db
from exporter.models import Attempt, AuditEntry, Customer, Delivery, Event, HistoryEntry, utcnow

from ..factories import event, make_profile
from ..plugins.conftest import ftp_server  # noqa: F401 - a fixture

CARD = "5105105105105100"
NOW = utcnow().replace(microsecond=0)
ORDER_IDS = itertools.count(5000)
CUSTOMERS = {  # CRM customer id: the person
    1: dict(firstName="Ann", lastName="Old", emailAddress="ann@example.com", phoneNumber="5550000001"),
    2: dict(firstName="Bob", lastName="Gone", emailAddress="bob@example.com", phoneNumber="5550000002"),
    3: dict(firstName="Cat", lastName="Waiting", emailAddress="cat@example.com", phoneNumber="5550000003"),
}


def iso(days_ago):
    return (NOW - timedelta(days=days_ago)).isoformat() + "Z"


def post(post_events, key, days_ago, crm_id, **order):
    body = event(key, occurred_at=iso(days_ago), customerId=crm_id, orderId=next(ORDER_IDS),
                 cardNumber=CARD, **CUSTOMERS.get(crm_id, {}), **order)
    assert post_events(body).status_code == 202
    return db.session.scalar(db.select(Event).where(Event.event_key == key))


def finish(evt, status, days_ago=None, attempts=1):
    """Give the event's delivery a status and attempts as a worker would have left them."""
    delivery = db.session.scalar(db.select(Delivery).where(Delivery.event_id == evt.id))
    started = NOW - timedelta(days=days_ago if days_ago is not None else 0)
    for number in range(1, attempts + 1):
        db.session.add(Attempt(
            delivery_id=delivery.id, profile_id=delivery.profile_id, number=number, started_at=started,
            ok=status == "delivered", method="GET", target="https://receiver.example/p.php?first_name=Ann&email=ann",
            request_headers={"Idempotency-Key": str(delivery.id)}, request_body="email=ann%40example.com",
            status=200 if status == "delivered" else 500, response_headers={"Content-Type": "text/plain"},
            response_body="thanks Ann", error="" if status == "delivered" else "HTTP 500 at /p.php?first_name=Ann"))
    delivery.status, delivery.attempt_count = status, attempts
    delivery.delivered_at = started if status == "delivered" else None
    delivery.last_error = "" if status == "delivered" else "HTTP 500 at /p.php?first_name=Ann"
    db.session.commit()
    return delivery


@pytest.fixture
def profile(app):
    return make_profile()


@pytest.fixture
def world(profile, post_events):
    """Old and delivered, old and cancelled, old but still retrying, new and delivered, an old test card."""
    w = {
        "old_delivered": post(post_events, "old-delivered", 100, 1),
        "old_cancelled": post(post_events, "old-cancelled", 95, 2),
        "old_retrying": post(post_events, "old-retrying", 120, 3),
        "new_delivered": post(post_events, "new-delivered", 10, 1),
        "old_test": post(post_events, "old-test", 100, 2, isTestCard=True),
    }
    w["d_old"] = finish(w["old_delivered"], "delivered", days_ago=99, attempts=2)
    w["d_cancelled"] = finish(w["old_cancelled"], "cancelled", days_ago=94)
    w["d_retrying"] = finish(w["old_retrying"], "retrying", days_ago=100, attempts=3)
    w["d_new"] = finish(w["new_delivered"], "delivered", days_ago=9)
    return w


def state(evt):
    db.session.refresh(evt)
    return evt.order, evt.card_number, evt.purged_at


def delivery_facts(d):
    db.session.refresh(d)
    return d.status, d.attempt_count, d.delivered_at, d.due_at


def test_purge_removes_what_is_due_and_nothing_else(world):
    kept = {name: state(world[name]) for name in ("old_retrying", "new_delivered")}
    facts = {name: delivery_facts(world[name]) for name in ("d_old", "d_cancelled", "d_retrying", "d_new")}
    due = retention.what_is_due(NOW, 90)

    counts = retention.purge(NOW, 90)

    # Three old events with nothing left to send; the old delivery's 2 attempts and the cancelled one's.
    assert (counts.events, counts.attempts, counts.customers) == (3, 3, 2)
    assert counts == due
    for name in ("old_delivered", "old_cancelled", "old_test"):
        order, card, purged_at = state(world[name])
        assert card is None and purged_at == NOW
        assert set(order) <= set(models.KEPT_ORDER_KEYS) and order["campaignId"] == 259
        assert "firstName" not in order and "emailAddress" not in order and "cardLast4" not in order
    for name, before in kept.items():  # still retrying, or too new: untouched
        assert state(world[name]) == before and before[1] is not None
    for name, before in facts.items():  # every delivery keeps status, counts and times
        assert delivery_facts(world[name]) == before

    old = db.session.scalars(db.select(Attempt).where(Attempt.delivery_id == world["d_old"].id)).all()
    for attempt in old:
        assert attempt.target == "https://receiver.example/p.php?[purged]"
        assert attempt.request_body == attempt.response_body == "[purged]"
        assert attempt.request_headers == {} == attempt.response_headers and attempt.purged_at == NOW
        assert attempt.status == 200 and attempt.ok and attempt.method == "GET"
    cancelled = db.session.scalars(db.select(Attempt).where(Attempt.delivery_id == world["d_cancelled"].id)).one()
    assert cancelled.error == "HTTP 500 at /p.php?[purged]"
    assert world["d_cancelled"].last_error == "HTTP 500 at /p.php?[purged]"
    untouched = db.session.scalars(db.select(Attempt).where(Attempt.delivery_id.in_(
        [world["d_retrying"].id, world["d_new"].id]))).all()
    assert len(untouched) == 4 and all(a.purged_at is None and "first_name=Ann" in a.target for a in untouched)


def test_purge_tells_each_customer_once_and_erases_those_with_nothing_left(world):
    retention.purge(NOW, 90)
    by_crm = {c.crm_customer_id: c for c in db.session.scalars(db.select(Customer))}
    messages = {crm: [h.message for h in db.session.scalars(db.select(HistoryEntry).where(
        HistoryEntry.customer_id == by_crm[crm].id, HistoryEntry.message.like("Personal data%")))] for crm in by_crm}
    assert messages == {1: ["Personal data of 1 event older than 90 days was purged"],
                        2: ["Personal data of 2 events older than 90 days was purged"], 3: []}
    # Ann has a new event: her details stay. Bob's every event is purged: his go (his CRM id stays).
    assert (by_crm[1].first_name, by_crm[1].email) == ("Ann", "ann@example.com")
    assert (by_crm[2].first_name, by_crm[2].last_name, by_crm[2].email, by_crm[2].phone) == ("", "", "", "")
    assert by_crm[3].email == "cat@example.com"


def test_purge_is_audited_once_per_run_with_counts_not_data(world):
    retention.purge(NOW, 90)
    entry = db.session.scalars(db.select(AuditEntry).where(AuditEntry.target_type == "retention")).one()
    assert entry.action == "retention.purge"
    assert entry.after == {"events": 3, "attempts": 3, "customers": 2, "files": 0}
    assert "ann" not in (entry.summary + str(entry.after)).lower()


def test_a_second_run_finds_nothing_more(world):
    retention.purge(NOW, 90)
    assert retention.what_is_due(NOW, 90) == retention.Counts(0, 0, 0)
    assert retention.purge(NOW, 90) == retention.Counts(0, 0, 0)


def test_two_purges_at_once_erase_count_and_tell_each_event_once(app, world):
    """`exporter purge` by hand while the cron's runs (issue 23): no event erased twice, no count
    doubled, no customer told of more events than were purged; on PostgreSQL no deadlock."""
    results, errors = [], []

    def run():
        try:
            with app.app_context():
                results.append(retention.purge(NOW, 90, batch_size=1))
        except Exception as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert sum(r.events for r in results) == 3 and sum(r.attempts for r in results) == 3
    told = [h.message for h in db.session.scalars(db.select(HistoryEntry).where(HistoryEntry.message.like("Personal data%")))]
    assert sum(int(m.split()[3]) for m in told) == 3  # "Personal data of N event(s) ..."
    assert retention.what_is_due(NOW, 90) == retention.Counts(0, 0, 0)


def test_the_daily_purge_runs_once_however_many_crons_queue_it(app, world, run_jobs):
    """Every `exporter cron` queues the purge at 03:30: the first job purges, the others find its
    audit entry and do nothing (no second entry, no second message in a history)."""
    from exporter import jobs
    from exporter.delivery import queue

    jobs_queue = queue.get_queue(app.config["REDIS_URL"], app.config["QUEUE_NAME"])
    queued = [jobs_queue.enqueue(jobs.purge) for _ in range(2)]  # two crons' 03:30
    run_jobs()
    assert [job.return_value() for job in queued] == [{"events": 3, "attempts": 3, "customers": 2, "files": 0}, None]
    assert db.session.scalar(db.select(db.func.count()).where(AuditEntry.action == "retention.purge")) == 1
    assert db.session.scalar(db.select(db.func.count()).where(HistoryEntry.message.like("Personal data%"))) == 2


def test_the_daily_purge_does_nothing_while_another_purge_holds_its_lock(app, world):
    """A purge running elsewhere (another worker took the other cron's job): this one skips at once
    rather than racing it; once the lock is free (its holder done or dead) the purge runs."""
    from exporter import audit
    from exporter.extensions import exclusive

    with audit.acting_as("system", "cron"):
        with exclusive("retention.purge") as held:
            assert held
            assert retention.daily_purge(NOW, 90) is None
        assert state(world["old_delivered"])[2] is None
        assert retention.daily_purge(NOW, 90).events == 3
        assert retention.daily_purge(NOW, 90) is None  # done today


def test_zero_days_keeps_forever(world):
    assert retention.what_is_due(NOW, 0) == retention.Counts()
    assert retention.purge(NOW, 0) == retention.Counts()
    assert all(e.purged_at is None for e in db.session.scalars(db.select(Event)))
    assert db.session.scalar(db.select(db.func.count()).select_from(AuditEntry)
                             .where(AuditEntry.target_type == "retention")) == 0


@pytest.mark.parametrize("days", [-1, 1.5, "90", True, 36501, 999_999_999])
def test_bad_days_are_refused(app, days):
    with pytest.raises(ValueError, match="whole number, 0 or more and at most 36500"):
        retention.purge(NOW, days)
    with pytest.raises(ValueError, match="whole number"):
        retention.what_is_due(NOW, days)


def test_the_purge_job_refuses_a_huge_retention_setting_clearly(app, world, run_jobs):
    """A typo'd RETENTION_DAYS: the cron job fails saying so (no OverflowError), nothing purged."""
    from exporter import jobs
    from exporter.delivery import queue

    app.config["RETENTION_DAYS"] = 999_999_999
    job = queue.get_queue(app.config["REDIS_URL"], app.config["QUEUE_NAME"]).enqueue(jobs.purge)
    run_jobs()
    job.refresh()
    assert job.is_failed and "at most 36500" in job.latest_result().exc_string
    assert "OverflowError" not in job.latest_result().exc_string
    assert db.session.scalar(db.select(db.func.count()).where(Event.purged_at.is_not(None))) == 0


def test_dry_run_changes_nothing_and_reports_the_same_counts(world):
    before = {e.id: (e.order, e.card_number) for e in db.session.scalars(db.select(Event))}
    dry = retention.purge(NOW, 90, dry_run=True)
    db.session.expire_all()
    assert {e.id: (e.order, e.card_number) for e in db.session.scalars(db.select(Event))} == before
    assert db.session.scalar(db.select(db.func.count()).where(Attempt.purged_at.is_not(None))) == 0
    assert db.session.scalar(db.select(db.func.count()).select_from(AuditEntry)
                             .where(AuditEntry.target_type == "retention")) == 0
    assert retention.purge(NOW, 90) == dry


def test_purge_goes_in_batches(profile, post_events):
    events = [post(post_events, f"batch-{i}", 200 + i, 1) for i in range(5)]
    for evt in events:
        finish(evt, "delivered", days_ago=199)
    counts = retention.purge(NOW, 90, batch_size=2)
    assert (counts.events, counts.attempts, counts.customers) == (5, 5, 1)
    assert all(state(e)[2] == NOW for e in events)
    assert [h.message for h in db.session.scalars(db.select(HistoryEntry))] == [
        "Personal data of 5 events older than 90 days was purged"]


def test_old_attempts_of_a_finished_delivery_go_even_when_the_event_is_newer(profile, post_events):
    """An attempt 100 days old whose event occurred later (an admin's Send test has no event)."""
    evt = post(post_events, "recent", 50, 1)
    delivery = finish(evt, "delivered", days_ago=49)
    db.session.add(Attempt(profile_id=profile.id, is_test=True, started_at=NOW - timedelta(days=100),
                           target="https://receiver.example/test?first_name=Jane", request_body="x"))
    db.session.commit()
    counts = retention.purge(NOW, 90)
    assert (counts.events, counts.attempts, counts.customers) == (0, 1, 0)
    test_attempt = db.session.scalars(db.select(Attempt).where(Attempt.is_test.is_(True))).one()
    assert test_attempt.target == "https://receiver.example/test?[purged]"
    assert delivery.attempts[0].purged_at is None


def test_a_purged_event_is_never_sent_again(world):
    retention.purge(NOW, 90)
    cancelled = world["d_cancelled"]
    assert not dispatch.retry_now(cancelled)  # Retry now: nothing left to send
    db.session.refresh(cancelled)
    assert cancelled.status == "cancelled"
    assert dispatch.retry_now(world["d_retrying"])  # an event kept is still retried


def test_intake_keeps_working_while_a_purge_runs(app, profile, post_events):
    old = [post(post_events, f"old-{i}", 100, 1) for i in range(30)]
    for evt in old:
        finish(evt, "delivered", days_ago=99)
    errors, done, result = [], threading.Event(), {}

    def run_purge():
        try:
            with app.app_context():
                result["counts"] = retention.purge(utcnow(), 90, batch_size=1)
        except Exception as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=run_purge)
    thread.start()
    answers = []
    while not done.is_set() or len(answers) < 5:  # intake all the while the purge runs, and after
        answers.append(post_events(event(f"new-{len(answers)}", customerId=1, occurred_at=iso(0))).status_code)
    thread.join(60)
    assert not errors
    assert answers == [202] * len(answers)
    assert result["counts"].events == 30
    assert db.session.scalar(db.select(db.func.count()).where(Event.event_key.like("new-%"),
                                                               Event.purged_at.is_(None))) == len(answers)


def test_cron_runs_the_purge_daily_as_a_job(app, world, run_jobs):
    """`exporter cron` registers jobs.purge once a day; the job, run by a real worker, purges
    RETENTION_DAYS (its acts audited as the system's, via cron)."""
    from exporter import jobs
    from exporter.delivery import queue

    cron = queue.cron_scheduler(app.config["REDIS_URL"], [jobs.sweep], app.config["QUEUE_NAME"], daily=[jobs.purge])
    daily = {job.func_name: job for job in cron.get_jobs() if job.cron}
    assert list(daily) == ["exporter.jobs.purge"] and daily["exporter.jobs.purge"].cron == queue.DAILY_CRON
    daily["exporter.jobs.purge"].enqueue(queue.connect(app.config["REDIS_URL"]))
    run_jobs()
    assert state(world["old_delivered"])[2] is not None and state(world["new_delivered"])[2] is None
    entry = db.session.scalars(db.select(AuditEntry).where(AuditEntry.target_type == "retention")).one()
    assert (entry.action, entry.actor, entry.via) == ("retention.purge", "system", "cron")


def test_the_purge_job_keeps_everything_when_retention_is_zero(app, world, run_jobs):
    from exporter import jobs
    from exporter.delivery import queue

    app.config["RETENTION_DAYS"] = 0
    queue.get_queue(app.config["REDIS_URL"], app.config["QUEUE_NAME"]).enqueue(jobs.purge)
    run_jobs()
    assert db.session.scalar(db.select(db.func.count()).where(Event.purged_at.is_not(None))) == 0


def test_the_purge_deletes_kept_copies_of_daily_files_older_than_the_cutoff(app, post_events, ftp_server,
                                                                          run_jobs, logged_in):
    """A day's kept copy goes once the whole day is older than the cutoff; its delivery stays and its
    page (and the download, 410) says the copy was deleted."""
    import os

    from exporter.files import daily_files

    from ..files.test_daily_files import DAY, all_delivered, at, ftp_profile, utc

    profile = ftp_profile(ftp_server)
    post_events(event("in-file", customerId=1, firstName="Ann", occurred_at=at(DAY, 8)))
    daily_files.tick(now=utc(DAY + timedelta(days=1), 2))
    run_jobs(until=all_delivered)
    delivery = db.session.scalars(db.select(Delivery).where(Delivery.profile_id == profile.id)).one()
    copy = daily_files.kept_copy_path(delivery)
    assert os.path.exists(copy)
    age = (NOW.date() - DAY).days  # the day is `age` days old: kept while the cutoff is not past its end
    assert retention.purge(NOW, age - 1, dry_run=True).files == 0
    assert retention.purge(NOW, age - 1).files == 0 and os.path.exists(copy)
    assert retention.purge(NOW, age - 2, dry_run=True).files == 1
    counts = retention.purge(NOW, age - 2)
    assert counts.files == 1 and not os.path.exists(copy)
    db.session.refresh(delivery)
    assert delivery.status == "delivered"
    page = logged_in.get(f"/deliveries/{delivery.id}").get_data(as_text=True)
    assert f"The copy kept for download was deleted on {NOW:%Y-%m-%d}: older than {age - 2} days (retention)." in page
    download = logged_in.get(f"/files/deliveries/{delivery.id}/download")
    assert download.status_code == 410 and "older than" in download.get_data(as_text=True)
    entry = db.session.scalars(db.select(AuditEntry).where(AuditEntry.action == "retention.purge")
                               .order_by(AuditEntry.id.desc())).first()
    assert entry.after["files"] == 1 and "1 kept file copy" in entry.summary


# --- what SQLite keeps in its files (issue 21, point 7) ------------------------------------------

def sqlite_files():
    """{suffix: bytes} of the SQLite database and its WAL, as another process (a backup) reads them."""
    path = db.engine.url.database
    return {suffix: open(path + suffix, "rb").read() for suffix in ("", "-wal") if os.path.exists(path + suffix)}


needs_sqlite = pytest.mark.skipif(bool(os.environ.get("EXPORTER_TEST_DATABASE_URL")),
                                  reason="SQLite's files; PostgreSQL keeps old row versions until VACUUM")


@needs_sqlite
def test_a_forgotten_customer_is_gone_from_sqlites_files_at_once(app, profile, post_events):
    """Not left in the WAL until a checkpoint, nor in the database's free space (secure_delete)."""
    post(post_events, "evt-forget", 1, 9, firstName="Quentinella", emailAddress="quentinella.x@example.com")
    assert any(b"quentinella.x@example.com" in data for data in sqlite_files().values())
    customer = db.session.scalar(db.select(Customer).where(Customer.crm_customer_id == 9))
    retention.forget(customer, "admin@example.com")
    files = sqlite_files()
    assert files.get("-wal", b"") == b""  # emptied (TRUNCATE), not only copied back
    for suffix, data in files.items():
        assert b"quentinella" not in data.lower(), suffix


@needs_sqlite
def test_purged_data_is_gone_from_sqlites_files_at_once(world):
    assert any(b"bob@example.com" in data for data in sqlite_files().values())
    retention.purge(NOW, 90)
    assert db.session.get(Customer, world["old_cancelled"].customer_id).email == ""
    files = sqlite_files()
    assert files.get("-wal", b"") == b""
    for suffix, data in files.items():
        assert b"bob@example.com" not in data, suffix


def test_a_purged_order_keeps_exactly_its_kept_keys_in_order_with_their_values(profile, post_events):
    """The purge cuts an order to models.kept_order's pairs (in SQL on PostgreSQL): same keys, same
    order, same values and types (a true stays true, a number a number), nothing else."""
    evt = post(post_events, "old-full", 100, 1, isTestCard=False, orderDate="2026-08-01 10:00:00",
               billing={"city": "Springfield", "zip": "12345"}, campaignName='Lander "A", {x}')
    before = dict(evt.order)
    finish(evt, "delivered", days_ago=99)
    retention.purge(NOW, 90)
    order, card, purged_at = state(evt)
    assert order == models.kept_order(before) and list(order) == list(models.kept_order(before))
    assert order["isTestCard"] is False and order["orderId"] == before["orderId"]
    assert order["campaignName"] == 'Lander "A", {x}' and card is None and purged_at == NOW


@pytest.mark.parametrize("target, kept", [
    ("https://h.example/p.php?first_name=Ann&email=ann", "https://h.example/p.php?[purged]"),
    ("https://h.example/p?x=1#frag", "https://h.example/p?[purged]"),
    ("https://h.example/p#ann@example.com", "https://h.example/p?[purged]"),
    ("https://h.example/p#frag?x", "https://h.example/p?[purged]"),
    ("https://h.example?x", "https://h.example?[purged]"),
    ("https://h.example/p", "https://h.example/p"),
    ("https://h.example/p?", "https://h.example/p?"),
    ("https://h.example/p?#", "https://h.example/p?#"),
    ("HTTPS://h.example/p?x", "https://h.example/p?[purged]"),
    ("", ""), (None, ""),
])
def test_a_targets_query_and_fragment_are_purged_as_urlsplit_reads_them(target, kept):
    assert retention.without_query(target) == kept
