"""/healthz and /metrics as a monitor and Prometheus use them: no login, real Redis, real
database, real sends; /healthz names what fails, /metrics needs its token."""
import socket
from datetime import timedelta, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter import create_app
from exporter.extensions import db
from exporter.models import Attempt, AttemptHour, Host, utcnow

from ..factories import event, make_profile
from ..ops.test_health import due_delivery, live_cron, live_worker

TOKEN = "metrics-token-for-tests"


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_healthz_answers_200_when_every_part_works(client, app):
    live_worker(app), live_cron(app)
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["ok"] is True and body["failing"] == []
    assert body["checks"]["workers"] == {"ok": True, "alive": 1}
    assert body["checks"]["scheduler"] == {"ok": True, "alive": 1}
    assert body["checks"]["oldest_due"] == {"ok": True, "due": 0, "age_seconds": None, "max_age_seconds": 300}
    assert body["checks"]["database"] == body["checks"]["redis"] == {"ok": True}
    assert body["hosts_down"] == 0


def test_healthz_names_missing_workers_and_cron(client, app):
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["failing"] == ["workers", "scheduler"]
    assert "start `exporter worker`" in body["checks"]["workers"]["error"]


def test_healthz_fails_when_a_due_delivery_waits_too_long(client, app):
    live_worker(app), live_cron(app)
    app.config["HEALTH_MAX_DUE_AGE_SECONDS"] = 120
    delivery = due_delivery(make_profile(), 5, target="dialer.example.com")
    response = client.get("/healthz")
    assert response.status_code == 503 and response.get_json()["failing"] == ["oldest_due"]
    assert response.get_json()["checks"]["oldest_due"]["due"] == 1
    # The host is down: its deliveries wait for its probe by design, and the host is reported instead.
    db.session.add(Host(name=delivery.target, failures=5, down_since=utcnow() - timedelta(minutes=4)))
    db.session.commit()
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json()["hosts_down"] == 1


def test_healthz_names_redis_down_without_showing_its_url(app_config):
    app = create_app({**app_config, "REDIS_URL": f"redis://:s3cret-pass@127.0.0.1:{closed_port()}/0"})
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["failing"] == ["redis", "workers", "scheduler"]
    assert body["checks"]["redis"]["error"] == "Redis did not answer: ConnectionError"
    assert "s3cret" not in response.get_data(as_text=True) and "127.0.0.1" not in response.get_data(as_text=True)


def test_healthz_names_the_database_down(app_config, tmp_path):
    app = create_app({**app_config, "DATABASE_URL": f"sqlite:///{tmp_path}/no/such/dir/exporter.sqlite"})
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["failing"][:1] == ["database"] and "oldest_due" in body["failing"]
    assert body["checks"]["database"]["error"] == "the database did not answer: OperationalError"
    assert str(tmp_path) not in response.get_data(as_text=True)


def test_metrics_say_when_the_database_is_down(app_config, tmp_path):
    app = create_app({**app_config, "DATABASE_URL": f"sqlite:///{tmp_path}/no/such/dir/exporter.sqlite",
                      "METRICS_TOKEN": TOKEN})
    response = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 503
    assert response.get_data(as_text=True) == "The database did not answer: OperationalError\n"


# --- /metrics --------------------------------------------------------------------------------

def samples(text):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_are_off_until_a_token_is_set(client, app):
    response = client.get("/metrics")
    assert response.status_code == 404
    assert "EXPORTER_METRICS_TOKEN" in response.get_data(as_text=True)


@pytest.mark.parametrize("header", [None, "Bearer wrong", TOKEN, f"Basic {TOKEN}"])
def test_metrics_refuse_a_missing_or_wrong_token(client, app, header):
    app.config["METRICS_TOKEN"] = TOKEN
    response = client.get("/metrics", headers={"Authorization": header} if header else {})
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")


def test_metrics_count_real_sends_by_outcome_type_and_latency(client, app, post_events, receiver, run_jobs):
    app.config["METRICS_TOKEN"] = TOKEN
    app.config["RETRY_BASE_SECONDS"] = app.config["RETRY_MAX_SECONDS"] = 600  # the failure waits
    live_worker(app)
    profile = make_profile(url=receiver.url + "/p")
    make_profile(name="Dead partner", url=f"http://127.0.0.1:{closed_port()}/x",
                 routes=[{"customer_types": ["decline"]}])
    post_events({"events": [event("p1"), event("d1", type="decline")]})
    run_jobs(until=lambda: db.session.scalar(db.select(db.func.count()).select_from(Attempt)) == 2)
    db.session.add(Attempt(profile_id=profile.id, is_test=True, ok=True, elapsed_ms=5))  # a Send test: not counted
    due_delivery(profile, 3)
    db.session.commit()

    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    found = samples(response.get_data(as_text=True))
    assert found[("exporter_deliveries", (("status", "delivered"),))] == 1
    assert found[("exporter_deliveries", (("status", "retrying"),))] == 1
    assert found[("exporter_deliveries", (("status", "scheduled"),))] == 1
    assert found[("exporter_attempts_total", (("export_type", "postback"), ("outcome", "ok")))] == 1
    assert found[("exporter_attempts_total", (("export_type", "postback"), ("outcome", "failed")))] == 1
    sent = db.session.scalars(db.select(Attempt).where(Attempt.is_test.is_(False))).all()
    timed = sum(a.elapsed_ms is not None for a in sent)
    assert found[("exporter_send_latency_seconds_count", (("export_type", "postback"),))] == timed >= 1
    assert found[("exporter_send_latency_seconds_bucket", (("export_type", "postback"), ("le", "+Inf")))] == timed
    assert found[("exporter_send_latency_seconds_bucket", (("export_type", "postback"), ("le", "30.0")))] == timed
    assert found[("exporter_due_deliveries", ())] == 1
    assert 175 < found[("exporter_oldest_due_age_seconds", ())] < 200
    assert found[("exporter_hosts_down", ())] == 0
    assert found[("exporter_redis_up", ())] == 1 and found[("exporter_workers_alive", ())] == 1
    assert found[("exporter_cron_schedulers_alive", ())] == 0


def test_metrics_roll_closed_hours_up_once_and_keep_counting_them_after_a_purge(client, app):
    """/metrics reads the hourly roll-ups of the hours closed over an hour ago, plus the attempts
    since (issue 22: a scrape totalled a million attempts, 1.4 s). Scrapes agree with each other,
    and deleting the old attempts (a purge, a deleted profile) no longer lowers the counters."""
    app.config["METRICS_TOKEN"] = TOKEN
    profile = make_profile()
    now = utcnow()
    for hours_ago, ok, elapsed in [(30, True, 40), (30, True, None), (3, False, 2000), (0, True, 10)]:
        db.session.add(Attempt(profile_id=profile.id, ok=ok, elapsed_ms=elapsed, started_at=now - timedelta(hours=hours_ago)))
    db.session.add(Attempt(profile_id=profile.id, is_test=True, ok=True, started_at=now - timedelta(hours=3)))
    db.session.commit()

    def scrape():
        found = samples(client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).get_data(as_text=True))
        return {key[0] + str(dict(key[1]).get("outcome", dict(key[1]).get("le", ""))): value
                for key, value in found.items() if key[0].startswith(("exporter_attempts", "exporter_send_latency"))}

    first = scrape()
    assert first["exporter_attempts_totalok"] == 3 and first["exporter_attempts_totalfailed"] == 1
    assert first["exporter_send_latency_seconds_count"] == 3  # one attempt has no elapsed time
    assert first["exporter_send_latency_seconds_bucket0.05"] == 2 and first["exporter_send_latency_seconds_sum"] == 2.05
    assert db.session.scalar(db.select(db.func.count()).select_from(AttemptHour)) == 2  # 30 h and 3 h ago
    assert scrape() == first

    db.session.execute(db.delete(Attempt).where(Attempt.started_at < now - timedelta(hours=2)))
    db.session.commit()
    assert scrape() == first


def test_metrics_list_down_hosts(client, app):
    app.config["METRICS_TOKEN"] = TOKEN
    down = utcnow().replace(microsecond=0) - timedelta(hours=2)
    db.session.add_all([Host(name="dialer.example.com", failures=9, down_since=down, last_error="HTTP 503"),
                        Host(name="up.example.com", failures=0)])
    db.session.commit()
    found = samples(client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).get_data(as_text=True))
    assert found[("exporter_hosts_down", ())] == 1
    since = found[("exporter_host_down_since_timestamp_seconds", (("host", "dialer.example.com"),))]
    assert since == down.replace(tzinfo=timezone.utc).timestamp()
    assert len([k for k in found if k[0] == "exporter_host_down_since_timestamp_seconds"]) == 1
