"""The Admins page (issue 12, point 6): invite with a one-time set-password link, reset, disable,
enable, change role; the last active admin stays; every act is in the audit log without a
password hash or a link in it."""
import json
import re
from datetime import timedelta
from html import unescape

import pytest
from flask import g

from exporter import create_app, security
from exporter.extensions import db
from exporter.models import AuditEntry, User, utcnow

from ..conftest import PASSWORD
from ..pages import error_beside, text

NEW_PASSWORD = "a brand new password"


def fresh(client, method, url, **kwargs):
    """A request as its own: Flask-Login keeps the last user it loaded on g, and Flask-WTF the
    last CSRF token, which the test's app context shares across clients; a real request starts
    without them."""
    g.pop("_login_user", None)
    g.pop("csrf_token", None)
    return client.open(url, method=method, **kwargs)


def invite(client, email="ann@example.com", role="viewer"):
    """Invite through the page; the link it shows."""
    response = fresh(client, "POST", "/admins/", data={"email": email, "role": role})
    assert response.status_code == 200, text(response)
    return unescape(re.search(r'<code id="set-password-link">([^<]+)</code>', text(response)).group(1))


def path(link):
    return link.removeprefix("http://localhost")


def set_password(client, link, password=NEW_PASSWORD, confirm=None):
    return fresh(client, "POST", path(link), data={"new_password": password, "confirm": confirm or password})


def log_in(client, email, password=NEW_PASSWORD):
    return fresh(client, "POST", "/login", data={"email": email, "password": password})


def user(email):
    db.session.expire_all()
    return db.session.scalar(db.select(User).where(User.email == email))


def row_of(html, email):
    """The Admins table's row of a user: (role, status)."""
    row = re.search(rf"<tr data-user-id=\"\d+\">\s*<td>{re.escape(email)}.*?</tr>", html, re.S).group(0)
    return (re.search(r'<td class="role">(\w+)</td>', row).group(1),
            re.search(r'<td class="status">(\w+)</td>', row).group(1))


def test_an_invite_shows_a_link_once_and_the_link_sets_a_password_once(app, logged_in):
    response = fresh(logged_in, "POST", "/admins/", data={"email": " Ann@Example.com ", "role": "viewer"})
    page = unescape(text(response))
    assert "ann@example.com is invited. Send them this link now" in page
    link = re.search(r'<code id="set-password-link">([^<]+)</code>', page).group(1)
    assert link.startswith("http://localhost/account/set-password/")
    assert row_of(page, "ann@example.com") == ("viewer", "invited")
    assert link not in text(fresh(logged_in, "GET", "/admins/"))  # shown once
    token = link.rsplit("/", 1)[1]
    ann = user("ann@example.com")
    assert ann.password_link_hash == security.hash_token(token)  # kept only as a hash
    assert token not in repr([getattr(ann, c.key) for c in User.__table__.columns])
    assert log_in(app.test_client(), "ann@example.com", "").status_code == 200  # no password yet: no login

    stranger = app.test_client()
    form = fresh(stranger, "GET", path(link))
    assert form.status_code == 200 and "ann@example.com" in text(form)
    assert error_beside(set_password(stranger, link, "short"), "new_password") == ["At least 12 characters"]
    assert error_beside(set_password(stranger, link, confirm="something else"), "confirm") == \
        ["The two passwords differ"]
    response = set_password(stranger, link)
    assert response.status_code == 302 and response.location == "/"
    assert fresh(stranger, "GET", "/").status_code == 200  # logged in by the link
    assert row_of(text(fresh(logged_in, "GET", "/admins/")), "ann@example.com") == ("viewer", "active")

    for method in ("GET", "POST"):  # used: dead, with words, never a 500
        again = set_password(app.test_client(), link, "another password 1") if method == "POST" \
            else fresh(app.test_client(), "GET", path(link))
        assert again.status_code == 404 and "already used" in text(again), method
    assert log_in(app.test_client(), "ann@example.com").status_code == 302
    assert log_in(app.test_client(), "ann@example.com", "another password 1").status_code == 200


def test_an_unknown_or_expired_link_gets_a_page_that_says_so(app, logged_in):
    link = invite(logged_in)
    ann = user("ann@example.com")
    ann.password_link_expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    for response in (fresh(app.test_client(), "GET", path(link)), set_password(app.test_client(), link)):
        assert response.status_code == 404 and "This link has expired (links last 7 days)" in text(response)
    assert user("ann@example.com").password_hash == ""
    for junk in ("nothing", "x" * 500, "%00"):
        response = fresh(app.test_client(), "GET", f"/account/set-password/{junk}")
        assert response.status_code == 404 and "This link does not work" in text(response)


def test_a_reset_kills_the_old_link_and_ends_the_users_sessions(app, logged_in):
    first = invite(logged_in, role="admin")
    ann_client = app.test_client()
    assert set_password(ann_client, first).status_code == 302
    ann = user("ann@example.com")
    response = fresh(logged_in, "POST", f"/admins/{ann.id}/reset")
    page = unescape(text(response))
    assert "ann@example.com's password is reset and their sessions ended" in page
    second = re.search(r'<code id="set-password-link">([^<]+)</code>', page).group(1)
    assert second != first
    assert fresh(ann_client, "GET", "/").status_code == 302  # logged out at once
    assert log_in(app.test_client(), "ann@example.com").status_code == 200  # the old password is gone
    assert fresh(app.test_client(), "GET", path(first)).status_code == 404

    # A new invite link replaces an unused one too.
    third = re.search(r'<code id="set-password-link">([^<]+)</code>',
                      unescape(text(fresh(logged_in, "POST", f"/admins/{ann.id}/reset")))).group(1)
    assert fresh(app.test_client(), "GET", path(second)).status_code == 404
    assert set_password(app.test_client(), third, "third time lucky").status_code == 302
    assert log_in(app.test_client(), "ann@example.com", "third time lucky").status_code == 302


def test_an_admin_resets_their_own_password_with_change_password(logged_in, admin):
    response = fresh(logged_in, "POST", f"/admins/{admin.id}/reset")
    assert response.status_code == 409 and "use Change password" in text(response)
    assert fresh(logged_in, "GET", "/").status_code == 200
    assert user(admin.email).check_password(PASSWORD)


def test_disabling_ends_sessions_and_blocks_login_until_enabled(app, logged_in):
    link = invite(logged_in)
    ann_client = app.test_client()
    set_password(ann_client, link)
    ann = user("ann@example.com")
    response = fresh(logged_in, "POST", f"/admins/{ann.id}/disable", follow_redirects=True)
    assert "ann@example.com is disabled and logged out." in text(response)
    assert row_of(text(response), "ann@example.com") == ("viewer", "disabled")
    assert fresh(ann_client, "GET", "/").status_code == 302
    refused = log_in(app.test_client(), "ann@example.com")
    assert refused.status_code == 200 and "Wrong email or password." in text(refused)
    response = fresh(logged_in, "POST", f"/admins/{ann.id}/enable", follow_redirects=True)
    assert row_of(text(response), "ann@example.com") == ("viewer", "active")
    assert log_in(app.test_client(), "ann@example.com").status_code == 302


def test_a_disabled_users_link_is_dead(app, logged_in):
    link = invite(logged_in)
    fresh(logged_in, "POST", f"/admins/{user('ann@example.com').id}/disable")
    assert fresh(app.test_client(), "GET", path(link)).status_code == 404


def ann_the_admin(app, logged_in):
    """Ann, a second admin, logged in on a client of her own."""
    set_password(app.test_client(), invite(logged_in, role="admin"))
    ann_client = app.test_client()
    assert log_in(ann_client, "ann@example.com").status_code == 302
    return ann_client


@pytest.mark.parametrize("act, data", [("disable", {}), ("role", {"role": "viewer"})])
def test_links_an_admin_made_end_when_they_are_disabled_or_demoted(app, logged_in, act, data):
    """Issue 21, point 4: Ann invites a backdoor admin, then loses her rights: the link must not
    outlive them."""
    ann = ann_the_admin(app, logged_in)
    backdoor = invite(ann, email="backdoor@example.com", role="admin")
    bob = invite(ann, email="bob@example.com", role="viewer")
    mine = invite(logged_in, email="carol@example.com", role="viewer")  # made by the first admin
    assert fresh(app.test_client(), "GET", path(backdoor)).status_code == 200
    assert fresh(logged_in, "POST", f"/admins/{user('ann@example.com').id}/{act}", data=data).status_code == 302
    for link in (backdoor, bob):
        assert fresh(app.test_client(), "GET", path(link)).status_code == 404
        assert set_password(app.test_client(), link).status_code == 404
    assert user("backdoor@example.com").password_hash == ""
    assert fresh(app.test_client(), "GET", path(mine)).status_code == 200  # not hers: it still works
    pending = text(fresh(logged_in, "GET", "/admins/"))
    pending = re.search(r'<table id="pending-links">(.*?)</table>', pending, re.S).group(1)
    assert "carol@example.com" in pending and "backdoor@example.com" not in pending
    ended = db.session.scalars(db.select(AuditEntry).where(AuditEntry.action == "admin.link_revoked")).all()
    assert sorted(e.target_name for e in ended) == ["backdoor@example.com", "bob@example.com"]
    assert all("ann@example.com, who made it, is" in e.summary for e in ended)


def test_the_admins_page_lists_pending_links_and_revokes_one(app, logged_in):
    link = invite(logged_in, email="backdoor@example.com", role="admin")
    page = text(fresh(logged_in, "GET", "/admins/"))
    row = re.search(r'<table id="pending-links">.*?<tr data-user-id="(\d+)">(.*?)</tr>', page, re.S)
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row.group(2), re.S)]
    assert cells[:4] == ["backdoor@example.com", "admin", "invite", "admin@example.com"]
    assert f'action="/admins/{row.group(1)}/revoke-link"' in page
    assert fresh(logged_in, "POST", f"/admins/{row.group(1)}/revoke-link").status_code == 302
    assert fresh(app.test_client(), "GET", path(link)).status_code == 404
    assert "No pending links." in text(fresh(logged_in, "GET", "/admins/"))
    entry = db.session.scalars(db.select(AuditEntry).where(AuditEntry.action == "admin.link_revoked")).one()
    assert (entry.actor, entry.target_name) == ("admin@example.com", "backdoor@example.com")


def test_the_last_active_admin_cannot_be_disabled_or_demoted(app, logged_in, admin):
    for url, data in ((f"/admins/{admin.id}/disable", {}), (f"/admins/{admin.id}/role", {"role": "viewer"})):
        response = fresh(logged_in, "POST", url, data=data)
        assert response.status_code == 409, url
        assert "admin@example.com is the last active admin: make another admin first" in text(response)
    assert (user(admin.email).role, user(admin.email).status) == ("admin", "active")
    invite(logged_in, "bob@example.com", role="admin")  # invited, not yet active: does not count
    assert fresh(logged_in, "POST", f"/admins/{admin.id}/role", data={"role": "viewer"}).status_code == 409
    set_password(app.test_client(), invite(logged_in, "cy@example.com", role="admin"))
    response = fresh(logged_in, "POST", f"/admins/{admin.id}/role", data={"role": "viewer"}, follow_redirects=True)
    assert "admin@example.com is now a viewer." in text(response)
    assert user(admin.email).role == "viewer"
    assert fresh(logged_in, "POST", "/admins/", data={"email": "dan@example.com"}).status_code == 403  # at once


@pytest.mark.parametrize("email, message", [
    ("", "Email is required"), ("   ", "Email is required"), ("not-an-email", "Enter an email address"),
    ("two@@example.com", "Enter an email address"), ("a@b", "Enter an email address")])
def test_a_bad_email_gets_an_error_beside_the_field(logged_in, admin, email, message):
    response = fresh(logged_in, "POST", "/admins/", data={"email": email, "role": "viewer"})
    assert response.status_code == 422
    assert any(message in error for error in error_beside(response, "email"))
    assert db.session.query(User).count() == 1


@pytest.mark.parametrize("email, message", [
    ("\u0430dmin@example.com", "mixes alphabets (cyrillic, latin)"),  # a Cyrillic а
    ("admin@ex\u0430mple.com", "mixes alphabets (cyrillic, latin)"),
    ("admin@example.com\u200b", "invisible"), ("ad\u200dmin@example.com", "invisible"),
    ("admin\u00a0@example.com", "invisible"), ("\u202eadmin@example.com", "invisible"),
    ("\uff41dmin@example.com", "admin@example.com already has an account"),  # a full-width ａ is an a
])
def test_a_look_alike_email_is_refused_beside_the_field(logged_in, admin, email, message):
    """Issue 21, point 10: in Audit's "who" these would look like the real admin."""
    response = fresh(logged_in, "POST", "/admins/", data={"email": email, "role": "admin"})
    assert response.status_code == 422
    assert any(message in unescape(error) for error in error_beside(response, "email")), error_beside(response, "email")
    assert db.session.query(User).count() == 1


def test_an_international_domain_is_stored_in_its_idna_form_and_logs_in_either_way(app, logged_in):
    link = invite(logged_in, email="Ann@B\u00fccher.example", role="viewer")
    assert user("ann@xn--bcher-kva.example") is not None
    assert fresh(logged_in, "POST", "/admins/", data={"email": "ann@xn--bcher-kva.example"}).status_code == 422
    single_script = invite(logged_in, email="\u0430\u043d\u043d\u0430@example.com")  # анна: all Cyrillic
    assert single_script and user("\u0430\u043d\u043d\u0430@example.com") is not None
    assert set_password(logged_in, link).status_code == 302
    fresh(logged_in, "POST", "/logout")
    assert log_in(logged_in, "ann@b\u00fccher.example").status_code == 302
    fresh(logged_in, "POST", "/logout")
    assert log_in(logged_in, "ann@xn--bcher-kva.example").status_code == 302


def test_a_taken_email_or_unknown_role_gets_an_error_beside_the_field(logged_in, admin):
    response = fresh(logged_in, "POST", "/admins/", data={"email": "ADMIN@example.com", "role": "viewer"})
    assert response.status_code == 422
    assert error_beside(response, "email") == ["admin@example.com already has an account"]
    response = fresh(logged_in, "POST", "/admins/", data={"email": "ann@example.com", "role": "owner"})
    assert response.status_code == 422 and error_beside(response, "role") == ["Not a valid choice."]
    assert fresh(logged_in, "POST", f"/admins/{admin.id}/role", data={"role": "owner"}).status_code == 409
    assert db.session.query(User).count() == 1 and user(admin.email).role == "admin"


def test_an_unknown_user_is_404(logged_in):
    for action in ("reset", "disable", "enable", "role"):
        assert fresh(logged_in, "POST", f"/admins/999/{action}", data={"role": "viewer"}).status_code == 404


def test_every_act_is_in_the_audit_log_without_a_password_hash_or_a_link(app, logged_in):
    link = invite(logged_in, role="viewer")
    set_password(app.test_client(), link)
    ann = user("ann@example.com")
    fresh(logged_in, "POST", f"/admins/{ann.id}/role", data={"role": "admin"})
    fresh(logged_in, "POST", f"/admins/{ann.id}/disable")
    fresh(logged_in, "POST", f"/admins/{ann.id}/enable")
    reset_page = text(fresh(logged_in, "POST", f"/admins/{ann.id}/reset"))
    second = re.search(r'<code id="set-password-link">([^<]+)</code>', unescape(reset_page)).group(1)
    entries = db.session.scalars(db.select(AuditEntry).where(AuditEntry.action != "admin.login")
                                 .order_by(AuditEntry.id)).all()  # logins have entries of their own
    # Who acted is set per request: the inviting admin, except the link's user setting their own password.
    assert [(e.action, e.target_type, e.target_id, e.target_name) for e in entries] == [
        (action, "admin", ann.id, "ann@example.com") for action in
        ("admin.invite", "admin.password_set", "admin.role", "admin.disable", "admin.enable", "admin.reset")]
    assert entries[1].actor == "ann@example.com"
    assert [e.actor for e in entries[:1] + entries[2:]] == ["admin@example.com"] * 5
    assert {e.via for e in entries} == {"web"}
    assert entries[0].after == {"email": "ann@example.com", "role": "viewer", "status": "invited"}
    assert (entries[2].before["role"], entries[2].after["role"]) == ("viewer", "admin")
    assert (entries[3].before["status"], entries[3].after["status"]) == ("active", "disabled")
    logged = json.dumps([[e.before, e.after, e.summary] for e in entries])
    ann = user("ann@example.com")
    for secret in (link.rsplit("/", 1)[1], second.rsplit("/", 1)[1], ann.password_link_hash, ann.session_token):
        assert secret not in logged
    assert "scrypt" not in logged and "pbkdf2" not in logged


def test_the_forms_need_their_csrf_token(app_config, admin):
    app = create_app({**app_config, "WTF_CSRF_ENABLED": True})
    with app.app_context():
        client = app.test_client()
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', text(client.get("/login"))).group(1)
        assert log_in(client, admin.email, PASSWORD).status_code == 400  # no token
        assert client.post("/login", data={"email": admin.email, "password": PASSWORD,
                                           "csrf_token": token}).status_code == 302
        assert fresh(client, "POST", "/admins/", data={"email": "ann@example.com"}).status_code == 400
        assert fresh(client, "POST", f"/admins/{admin.id}/disable").status_code == 400
        page = text(fresh(client, "GET", "/admins/"))
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        response = fresh(client, "POST", "/admins/", data={"email": "ann@example.com", "role": "viewer",
                                                           "csrf_token": token})
        link = re.search(r'<code id="set-password-link">([^<]+)</code>', unescape(text(response))).group(1)
        stranger = app.test_client()
        assert set_password(stranger, link).status_code == 400  # the set-password form has one too
        form_token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"',
                               text(fresh(stranger, "GET", path(link)))).group(1)
        response = fresh(stranger, "POST", path(link), data={"new_password": NEW_PASSWORD, "confirm": NEW_PASSWORD,
                                                             "csrf_token": form_token})
        assert response.status_code == 302
