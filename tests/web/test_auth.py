"""Login on every admin page, CSRF on every form, and the login flow itself."""
import re

import pytest

from exporter import create_app

from ..conftest import PASSWORD

# /healthz and /metrics (its own token) need no login: tests/web/test_health.py; a set-password
# link is its own key: tests/web/test_admins.py
PUBLIC = {"auth.login", "auth.set_password", "static", "favicon", "intake.events", "intake.openapi", "health.healthz", "health.metrics_view"}


def admin_urls(app):
    """Every admin URL of the app, with 1 for each id in its path."""
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC:
            continue
        url = re.sub(r"<any\(\s*'?(\w+)'?[^)]*\):\w+>", r"\1", rule.rule)
        url = re.sub(r"<(?:\w+:)?\w+>", "1", url)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield method, url


def test_every_admin_page_sends_a_stranger_to_login(app, client):
    urls = list(admin_urls(app))
    assert len(urls) > 15  # the whole admin, not a handful
    for method, url in urls:
        response = client.open(url, method=method)
        if url == "/logout":
            assert response.status_code == 302 and response.location.endswith("/login")
            continue
        assert response.status_code == 302, (method, url, response.status_code)
        assert "/login?next=" in response.location, (method, url)


def test_login_logout_and_a_wrong_password(client, admin):
    response = client.post("/login", data={"email": admin.email, "password": "nope"})
    assert response.status_code == 200 and b"Wrong email or password." in response.data
    response = client.post("/login?next=/deliveries/", data={"email": "ADMIN@example.com ", "password": PASSWORD})
    assert response.status_code == 302 and response.location == "/deliveries/"
    assert client.get("/").status_code == 200
    assert client.post("/logout").status_code == 302
    assert client.get("/").status_code == 302


def test_login_never_redirects_off_site(client, admin):
    response = client.post("/login?next=//evil.example/x", data={"email": admin.email, "password": PASSWORD})
    assert response.location == "/"


def test_passwords_are_stored_hashed(admin):
    assert PASSWORD not in admin.password_hash and admin.password_hash.startswith(("scrypt:", "pbkdf2:"))


@pytest.fixture
def csrf_client(app_config, admin):
    app = create_app({**app_config, "WTF_CSRF_ENABLED": True})
    with app.app_context():
        yield app.test_client()


def test_forms_without_the_csrf_token_are_refused(csrf_client, admin):
    response = csrf_client.post("/login", data={"email": admin.email, "password": PASSWORD})
    assert response.status_code == 400 and b"The CSRF token is missing." in response.data
    page = csrf_client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    response = csrf_client.post("/login", data={"email": admin.email, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302
    # Logged in, a POST form without its token is still refused.
    assert csrf_client.post("/tokens/", data={"name": "crm"}).status_code == 400
    assert b"crm" not in csrf_client.get("/tokens/").data


def test_the_intake_needs_no_csrf_token(csrf_client, app):
    from exporter.intake import tokens

    from ..factories import event

    token = tokens.create("crm")
    response = csrf_client.post("/intake/events", json=event(), headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 202
