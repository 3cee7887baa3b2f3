"""The real processes: `exporter worker` killed mid-send, and `exporter run` as a newcomer uses it."""
import os
import re
import signal
import subprocess
import sys
import time

import requests

from exporter.extensions import db
from exporter.models import Delivery, HistoryEntry

from ..factories import event, make_profile
from ..processes import group_alive, answers, kill_tree, process_env, start, stop, wait_until
from ..receiver import Receiver, Reply


def test_a_worker_killed_mid_send_loses_no_export(app, app_config, post_events, receiver):
    from exporter.delivery import dispatch

    receiver.script = [Reply(200, delay=30)]  # the first request hangs while we kill the worker
    make_profile(url=receiver.url + "/p")
    env = process_env(app_config)
    worker = start(["worker"], env)
    try:
        post_events(event())
        receiver.wait_for(1, timeout=20)
        kill_tree(worker)  # the worker and its work horse die mid-send
    finally:
        stop(worker, signal.SIGKILL)
    db.session.expire_all()
    delivery = db.session.scalars(db.select(Delivery)).one()
    assert delivery.status == "sending"
    app.config["CLAIM_TIMEOUT_SECONDS"] = 0
    assert dispatch.sweep()["released"] == 1
    worker = start(["worker"], env)
    try:
        receiver.wait_for(2, timeout=20)
        wait_until(lambda: db.session.get(Delivery, delivery.id).status == "delivered" or db.session.expire_all(),
                   what="the delivery to be delivered")
    finally:
        stop(worker)
    assert receiver.requests[0].path == receiver.requests[1].path
    assert receiver.requests[1].headers["Idempotency-Key"] == str(delivery.id)  # receivers can drop the repeat


def test_exporter_run_as_a_newcomer_uses_it(tmp_path, redis_url):
    """README's flow: start, read the login and token it prints, post partials, survive a receiver outage."""
    from exporter.delivery.queue import free_port

    port, receiver_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTER_")}
    env.update({"EXPORTER_INSTANCE_PATH": str(tmp_path / "instance"), "EXPORTER_ALLOW_PRIVATE_TARGETS": "true",
                "EXPORTER_RETRY_BASE_SECONDS": "0.5", "EXPORTER_RETRY_MAX_SECONDS": "1"})
    log = open(tmp_path / "run.log", "w+")
    run = start(["run", "--port", str(port)], env, stdout=log, stderr=subprocess.STDOUT)
    receiver = Receiver(port=receiver_port).start()
    try:
        wait_until(lambda: "Bearer" in (tmp_path / "run.log").read_text(), what="exporter run to start")
        out = (tmp_path / "run.log").read_text()
        assert "started an embedded Redis" in out
        # The embedded Redis has a password (RQ jobs are pickles), printed masked, never in clear.
        assert re.search(r"embedded Redis at redis://:\*\*\*\*@127\.0\.0\.1:\d+/0", out)
        assert not re.search(r"redis://:(?!\*\*\*\*@)", out)
        password = re.search(r"log in as admin@example.com with password (\S+)", out).group(1)
        token = re.search(r"TOKEN=(exp_\S+)", out).group(1)
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: answers(base + "/login"), what="the web UI to answer")
        web = requests.Session()
        login = web.get(base + "/login")
        csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', login.text).group(1)
        assert web.post(base + "/login", data={"csrf_token": csrf, "email": "admin@example.com",
                                               "password": password}).url == base + "/"
        profile = {"version": 1, "profiles": [{
            "name": "Call center partials", "export_type": "postback", "delay_minutes": 0,
            "settings": {"url": f"http://127.0.0.1:{receiver_port}/partials.php", "method": "GET"},
            "mappings": [{"export_name": "first_name", "field": "firstName"},
                         {"export_name": "list_id", "field": "static", "static_value": "400"}],
            "routes": [{"customer_types": ["partial"], "campaigns": [259], "products": []}]}]}
        (tmp_path / "profiles.json").write_text(__import__("json").dumps(profile))
        imported = subprocess.run([sys.executable, "-m", "exporter", "profiles", "import",
                                   str(tmp_path / "profiles.json")], env=env, capture_output=True, text=True)
        assert imported.returncode == 0, imported.stderr
        intake = {"Authorization": f"Bearer {token}"}
        assert requests.post(base + "/intake/events", json=event("evt-1"), headers=intake).status_code == 202
        receiver.wait_for(1, timeout=20)
        assert receiver.requests[0].path == "/partials.php?first_name=Jane&list_id=400"
        receiver.stop()  # the partner goes down
        assert requests.post(base + "/intake/events", json=event("evt-2", firstName="Joan"),
                             headers=intake).status_code == 202
        time.sleep(2)  # a few failed tries
        receiver = Receiver(port=receiver_port).start()  # and comes back
        receiver.wait_for(1, timeout=20)
        assert receiver.requests[0].path == "/partials.php?first_name=Joan&list_id=400"
    finally:
        receiver.stop()
        run.send_signal(signal.SIGTERM)  # as a service manager stops it: the children go too
        run.wait(20)
        wait_until(lambda: not group_alive(run.pid), what="worker, cron and embedded Redis to stop")
        stop(run)
    # Both exports are in the customer's history, each linking to its delivery.
    from exporter import create_app

    app = create_app({"DATABASE_URL": "sqlite:///" + str(tmp_path / "instance" / "exporter.sqlite"),
                      "SECRET_KEY": "x"})
    with app.app_context():
        history = db.session.scalars(db.select(HistoryEntry).order_by(HistoryEntry.id)).all()
        assert [h.message for h in history] == [
            "Export profile 'Call center partials' fired: postback delivered (HTTP 200)"] * 2
        second = db.session.get(Delivery, history[1].delivery_id)
        assert second.attempt_count >= 2 and second.attempts[0].error


def test_cron_sweeper_recovers_an_export_after_redis_is_flushed(app, app_config, post_events, receiver):
    """Real `exporter cron` and `exporter worker` processes: a flush between intake and send loses nothing."""
    from exporter.delivery.queue import connect

    make_profile(url=receiver.url + "/p", delay_minutes=1)  # due a second after it occurred (tests)
    post_events(event(occurred_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))
    connect(app_config["REDIS_URL"]).flushdb()  # the scheduled job is gone
    env = process_env(app_config, EXPORTER_SWEEP_INTERVAL_SECONDS=1, EXPORTER_SWEEP_GRACE_SECONDS=0,
                      EXPORTER_MINUTE_SECONDS=1)
    worker, cron = start(["worker"], env), start(["cron"], env)
    try:
        receiver.wait_for(1, timeout=30)
    finally:
        stop(cron)
        stop(worker)
    assert receiver.requests[0].path.startswith("/p?first_name=Jane")
