"""The web side of issue 9: the URL map walked (login, CSRF, security headers on every route),
redirects after login (6), login throttling and timing (7), sessions (8), headers and cookies
(11), ids and bodies too large (12), the embedded Redis's password (13)."""
import re
import socket
import statistics
import threading
import time

import pytest
from flask import g
from redis import Redis
from redis.exceptions import AuthenticationError, ResponseError

from exporter import create_app
from exporter.delivery.queue import EmbeddedRedis
from exporter.extensions import db

from ..conftest import PASSWORD
from ..factories import event, make_profile

PUBLIC = {"auth.login", "static", "intake.events"}
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
BIG = str(2**64)
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def routes(app, fill="1"):
    """(method, url, endpoint) of every route, with `fill` for each id in its path."""
    for rule in app.url_map.iter_rules():
        url = re.sub(r"<any\(\s*'?(\w+)'?[^)]*\):\w+>", r"\1", rule.rule)
        url = re.sub(r"<path:\w+>", "style.css", url)
        url = re.sub(r"<(?:\w+:)?\w+>", fill, url)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield method, url, rule.endpoint


def assert_security_headers(response, where):
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (where, name)
    csp = response.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp


def get(client, url):
    """A GET as its own request: the test's app context outlives requests, and Flask-Login keeps
    the last user it loaded on g; a real request starts without it."""
    g.pop("_login_user", None)
    return client.get(url)


def log_in(client, email="admin@example.com", password=PASSWORD):
    return client.post("/login", data={"email": email, "password": password})


# --- the URL map ------------------------------------------------------------------------------

def test_every_route_without_a_session_goes_to_login_or_answers_401(app, client):
    walked = 0
    for method, url, endpoint in routes(app):
        if endpoint in ("auth.login", "static"):
            continue
        response = client.open(url, method=method)
        walked += 1
        if endpoint == "intake.events":
            assert response.status_code == 401, (method, url)
        elif endpoint == "favicon":
            assert response.status_code == 301 and "/static/favicon" in response.location
        elif endpoint == "intake.openapi":  # the intake's manual, public like any API's
            assert response.status_code == 200 and response.is_json
        elif endpoint == "health.healthz":  # for load balancers and monitors: no login, no secrets
            assert response.status_code in (200, 503), (method, url)
        elif endpoint == "health.metrics_view":  # METRICS_TOKEN unset: not served
            assert response.status_code == 404, (method, url)
        elif endpoint == "auth.logout":
            assert response.status_code == 302 and response.location.endswith("/login")
        elif endpoint == "auth.set_password":  # the one-time link is its own key: a made-up one is dead
            assert response.status_code == 404 and b"This link does not work" in response.data, (method, url)
        else:
            assert response.status_code == 302 and "/login?next=" in response.location, (method, url)
        assert_security_headers(response, (method, url))
    assert walked > 30


@pytest.fixture
def csrf_app(app_config):
    app = create_app({**app_config, "WTF_CSRF_ENABLED": True})
    with app.app_context():
        yield app


def test_every_state_changing_route_without_a_csrf_token_is_refused(csrf_app, admin):
    client = csrf_app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    assert client.post("/login", data={"email": admin.email, "password": PASSWORD, "csrf_token": token}).status_code \
        == 302
    profile = make_profile()
    walked = 0
    for method, url, endpoint in routes(csrf_app, fill=str(profile.id)):
        if method not in STATE_CHANGING or endpoint == "intake.events":
            continue
        response = client.open(url, method=method, data={"name": "x"})
        walked += 1
        assert response.status_code == 400 and b"CSRF" in response.data, (method, url, response.status_code)
        assert_security_headers(response, (method, url))
    assert walked > 15
    assert client.get("/").status_code == 200  # still logged in: the refusals changed nothing


def test_every_page_answers_with_the_security_headers(app, logged_in, post_events):
    profile = make_profile()
    post_events(event())
    for method, url, endpoint in routes(app, fill=str(profile.id)):
        if method != "GET":
            continue
        response = logged_in.get(url)
        assert response.status_code < 500 or endpoint == "health.healthz", url  # 503: no worker runs here
        assert_security_headers(response, url)
    assert_security_headers(logged_in.get("/no/such/page"), "404")


def test_every_logged_in_page_is_never_cached(app, logged_in, post_events):
    """A shared or back-button cache must not keep a customer, a delivery, the Audit log or the
    profiles JSON after logout (issue 21, point 8): no-store on every logged-in answer."""
    profile = make_profile()
    post_events(event())
    from exporter.models import Customer, Delivery

    ids = {"customer_id": db.session.scalar(db.select(Customer.id)),
           "delivery_id": db.session.scalar(db.select(Delivery.id))}
    walked = 0
    for method, url, endpoint in routes(app, fill=str(profile.id)):
        if method != "GET" or endpoint == "static":
            continue
        response = get(logged_in, url)
        walked += response.status_code == 200
        assert response.headers.get("Cache-Control") == "no-store", url
    assert walked > 15
    for url in ("/customers/%d" % ids["customer_id"], "/deliveries/%d" % ids["delivery_id"], "/audit/",
                "/admins/", "/account/password", "/profiles/export.json"):
        response = get(logged_in, url)
        assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store", url
    assert "no-store" not in get(logged_in, "/static/style.css").headers.get("Cache-Control", "")


def test_no_template_or_static_file_has_inline_script_or_style():
    import pathlib

    import exporter

    root = pathlib.Path(exporter.__file__).parent
    for path in [*root.glob("templates/**/*.html"), *root.glob("static/*")]:
        text = path.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), path
        assert not re.search(r"<style|\sstyle=|\son[a-z]+=|javascript:", text), path


# --- 6. redirects after login -------------------------------------------------------------------

@pytest.mark.parametrize("next_", ["/%09/evil.com", "/%0d/x", "/%0a/x", "/\\evil.com", "/%5Cevil.com",
                                   "https://evil.com/", "//evil.com", "/ /evil.com", "/%00/x"])
def test_login_never_redirects_off_site_nor_fails(client, admin, next_):
    response = client.post(f"/login?next={next_}", data={"email": admin.email, "password": PASSWORD})
    assert response.status_code == 302
    assert response.location == "/"


def test_login_keeps_a_path_on_this_site(client, admin):
    response = client.post("/login?next=/deliveries/%3Fstatus%3Dretrying", data={"email": admin.email,
                                                                                 "password": PASSWORD})
    assert response.location == "/deliveries/?status=retrying"


# --- 7. throttling and timing ---------------------------------------------------------------------

def test_failed_logins_are_throttled_per_account_even_with_the_right_password_after(client, admin):
    for _ in range(10):
        assert log_in(client, password="wrong").status_code == 200
    response = log_in(client)
    assert response.status_code == 429
    assert "Too many failed logins" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302  # not logged in


def test_failed_logins_are_throttled_per_address_across_accounts(app, client, admin):
    app.config["LOGIN_LIMIT_PER_ADDRESS"] = "5 per 15 minutes"
    for i in range(5):
        assert log_in(client, email=f"nobody{i}@example.com", password="x").status_code == 200
    assert log_in(client).status_code == 429


def test_successful_logins_are_not_counted(client, admin):
    for _ in range(12):
        assert log_in(client).status_code == 302
        client.post("/logout")


def test_an_unknown_user_costs_as_much_time_as_a_wrong_password(client, admin):
    def timed(email):
        started = time.perf_counter()
        log_in(client, email=email, password="wrong")
        return time.perf_counter() - started

    # Interleaved, so that a busy machine (CI runs suites side by side) weighs on both alike.
    pairs = [(timed(admin.email), timed(f"nobody{i}@example.com")) for i in range(9)]
    known, unknown = (statistics.median(times) for times in zip(*pairs))
    assert unknown > known * 0.5, (known, unknown)


# --- 8. sessions ----------------------------------------------------------------------------------

def test_a_cookie_captured_before_logout_no_longer_works(app, client, admin):
    log_in(client)
    captured = client.get_cookie("session").value
    client.post("/logout")
    thief = app.test_client()
    thief.set_cookie("session", captured)
    assert get(thief, "/").status_code == 302


def test_a_password_change_ends_every_other_session_but_this_one(app, client, admin):
    log_in(client)
    other = app.test_client()
    log_in(other)
    response = client.post("/account/password", data={"current_password": PASSWORD, "new_password": "a new long one!",
                                                       "confirm": "a new long one!"})
    assert response.status_code == 302
    assert get(client, "/").status_code == 200
    assert get(other, "/").status_code == 302
    assert log_in(app.test_client(), password="a new long one!").status_code == 302


def test_a_password_reset_from_the_command_line_ends_every_session(app, client, admin):
    log_in(client)
    result = app.test_cli_runner().invoke(args=["create-admin", admin.email, "--password", "reset by ops 123"])
    assert result.exit_code == 0, result.output
    assert get(client, "/").status_code == 302


@pytest.mark.parametrize("data, field, message", [
    ({"current_password": "wrong", "new_password": "long enough pw", "confirm": "long enough pw"},
     "current_password", "This is not your current password"),
    ({"current_password": PASSWORD, "new_password": "short", "confirm": "short"}, "new_password", "At least 12"),
    ({"current_password": PASSWORD, "new_password": "long enough pw", "confirm": "other"}, "confirm",
     "The two passwords differ")])
def test_the_change_password_page_names_what_is_wrong(logged_in, data, field, message):
    from ..pages import error_beside

    response = logged_in.post("/account/password", data=data)
    assert response.status_code == 422
    assert any(message in e for e in error_beside(response, field))


def test_a_session_idle_too_long_ends(app, logged_in):
    assert logged_in.get("/").status_code == 200
    with logged_in.session_transaction() as session:
        session["seen"] = time.time() - app.config["SESSION_IDLE_MINUTES"] * 60 - 1
    response = logged_in.get("/")
    assert response.status_code == 302 and "/login" in response.location


# --- 11. cookies ----------------------------------------------------------------------------------

def session_cookie(response):
    return next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("session="))


@pytest.mark.parametrize("base_url, secure", [("https://exporter.example.com", True),
                                              ("http://exporter.example.com", True),
                                              ("http://127.0.0.1:5000", False), ("http://localhost", False)])
def test_the_session_cookie_is_lax_and_secure_unless_on_plain_loopback(client, admin, base_url, secure):
    cookie = session_cookie(client.post("/login", data={"email": admin.email, "password": PASSWORD},
                                        base_url=base_url))
    assert "SameSite=Lax" in cookie and "HttpOnly" in cookie
    assert ("Secure" in cookie) is secure


def test_the_session_cookie_is_not_secure_in_debug(app, client, admin):
    app.debug = True
    cookie = session_cookie(client.post("/login", data={"email": admin.email, "password": PASSWORD},
                                        base_url="http://exporter.example.com"))
    assert "Secure" not in cookie


# --- 12. ids past 64 bits, bodies too large -----------------------------------------------------

def test_a_path_id_past_64_bits_is_a_404(app, logged_in):
    profile = make_profile()
    walked = 0
    for method, url, endpoint in routes(app, fill=BIG):
        if BIG not in url:
            continue
        walked += 1
        assert logged_in.open(url, method=method).status_code == 404, (method, url)
    assert walked > 15
    assert logged_in.get(f"/profiles/{profile.id}?mapping={BIG}").status_code == 404
    assert logged_in.get(f"/profiles/{profile.id}?mapping=²").status_code == 404
    assert logged_in.get("/customers/?q=²").status_code == 200


@pytest.mark.parametrize("number", ["²", "٣", "1²", " 2", "-1", "0x1", BIG])
def test_a_number_in_a_query_or_form_that_is_not_ascii_digits_is_never_a_500(app, logged_in, number):
    """str.isdigit() takes '²' (then int() fails: a 500) and int() takes '٣' (issue 21, point 11):
    every whole number a request carries is read as ASCII digits, the same way."""
    profile = make_profile()
    history = logged_in.get(f"/audit/profiles/{profile.id}", query_string={"page": number})
    assert history.status_code == 200 and "Call center partials" in history.get_data(as_text=True)
    for url, name, label in (("/audit/", "page", "Page"), ("/deliveries/", "before", "Older than"),
                             ("/deliveries/", "after", "Newer than"), ("/customers/", "page", "Page")):
        page = logged_in.get(url, query_string={name: number})
        assert page.status_code in (200, 400), url
        if number != " 2":
            assert page.status_code == 400 and f'<span class="error">{label}: ' in page.get_data(as_text=True), url
    preview = logged_in.post(f"/profiles/{profile.id}/preview", data={
        "name": profile.name, "export_type": "postback", "delay_minutes": "0", "settings-url": "https://example.com/p",
        "settings-method": "GET", "editing": number, "export_name": "x", "field": "firstName"})
    assert preview.status_code == 200 and preview.json["problem"] is None
    assert "first_name=Jane" in preview.json["preview"]


def test_the_server_refuses_a_body_over_the_intake_limit_before_reading_it(app):
    from exporter.cli import web_server

    server = web_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", server.effective_port), timeout=5) as sock:
            sock.sendall(b"POST /intake/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 50000000\r\n\r\n{")  # 50 MB promised, one byte sent
            answer = sock.recv(200)
        assert answer.startswith(b"HTTP/1.1 413")
    finally:
        # Closed by its own loop thread, then joined: closed from this thread, its loop could go on
        # with file descriptors the next test's subprocess reused (a Popen then read a stranger's
        # byte as its child's exec error and waited forever).
        server.trigger.pull_trigger(server.close)
        thread.join(5)
        server.task_dispatcher.shutdown()


# --- 13. the embedded Redis ---------------------------------------------------------------------

def test_the_embedded_redis_needs_its_password_and_it_is_masked_when_shown():
    from exporter.delivery.queue import mask_url

    server = EmbeddedRedis().start()
    try:
        with pytest.raises((AuthenticationError, ResponseError)):
            Redis(port=server.port, socket_connect_timeout=1).ping()
        assert Redis.from_url(server.url).ping()
        assert server.password in server.url and server.password not in mask_url(server.url)
        assert mask_url(server.url) == f"redis://:****@127.0.0.1:{server.port}/0"
    finally:
        server.stop()
