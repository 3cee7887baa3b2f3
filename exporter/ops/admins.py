"""Several admins (issue 12): invite, reset, disable, enable, change role, and the one-time
set-password link that an invite or a reset makes.

A link is a random token shown once to the inviting admin; only its hash is stored, with an
expiry. Using it, or making a new one, kills it. There is always at least one active admin:
a change that would leave none is refused. Every act is recorded in the audit log, never
with a password hash or a link in it. No Flask here: web/admins.py is only HTTP.
"""
import re
import secrets
import unicodedata
from datetime import timedelta

import idna

from .. import audit, security
from ..extensions import db
from ..models import ROLE_ADMIN, ROLES, User, utcnow

LINK_DAYS = 7
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


class AdminError(ValueError):
    """A refused change, in words for the admin; field names the form field it is about, if any."""

    def __init__(self, message, field=None):
        super().__init__(message)
        self.field = field


class LinkDead(AdminError):
    """A set-password link that is unknown, used, replaced or expired."""


# Characters that show nothing (zero-width space and joiners, bidi marks, soft hyphen...) or are
# spaces of another kind: "admin@example.com\u200b" would look like the real admin in Audit's "who".
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})
# Scripts written together in one language: Japanese mixes these three.
SCRIPT_FAMILIES = {"HIRAGANA": "CJK", "KATAKANA": "CJK"}


def normal_email(email):
    """The email as stored: NFKC (a full-width 'ａ' is 'a'), lower case, the domain in its IDNA
    (ASCII) form. Refused: invisible characters, and a part that mixes scripts, like 'аdmin' with
    a Cyrillic 'а': either would look the same as another admin's email in Audit's "who"."""
    email = unicodedata.normalize("NFKC", (email or "").strip()).lower()
    if any(unicodedata.category(c) in INVISIBLE_CATEGORIES for c in email):
        raise AdminError("The email has an invisible or unusual space character: type it again", "email")
    if not EMAIL_PATTERN.match(email):
        raise AdminError("Enter an email address, like name@example.com", "email")
    local, _, domain = email.rpartition("@")
    for part in (local, *domain.split(".")):
        if len(_scripts(part)) > 1:
            raise AdminError(f"{part!r} mixes alphabets ({', '.join(sorted(_scripts(part))).lower()}), "
                             "as a look-alike address does", "email")
    try:
        email = f"{local}@{idna.encode(domain, uts46=True).decode()}"
    except idna.IDNAError as exc:
        raise AdminError(f"The domain {domain!r} is not a valid domain name: {exc}", "email")
    if len(email) > 255:
        raise AdminError("An email is at most 255 characters", "email")
    return email


def login_email(email):
    """The stored form of an email typed at login, or the text lowered when it cannot be one
    (then no account has it: the login fails like any wrong email)."""
    try:
        return normal_email(email)
    except AdminError:
        return (email or "").strip().lower()


def _scripts(text):
    """The scripts of text's letters (LATIN, CYRILLIC, GREEK, CJK...): a Unicode name's first word."""
    names = (unicodedata.name(c, "").split(" ")[0] for c in text if unicodedata.category(c).startswith("L"))
    return {SCRIPT_FAMILIES.get(name, name) for name in names}


def by_email(email):
    return db.session.scalar(db.select(User).where(User.email == email))


def snapshot(user):
    """What the audit log keeps of a user: never the password hash, a link or a session token."""
    return {"email": user.email, "role": user.role, "status": user.status}


def _new_link(user, by):
    token = secrets.token_urlsafe(32)
    user.password_link_hash = security.hash_token(token)
    user.password_link_expires_at = utcnow() + timedelta(days=LINK_DAYS)
    user.password_link_by_id = by.id if by is not None else None
    return token


def _end_link(user):
    user.password_link_hash = user.password_link_expires_at = user.password_link_by_id = None


def pending_links():
    """The users whose set-password link is live (an invite, or a reset), soonest to expire first."""
    return db.session.scalars(db.select(User).where(User.password_link_hash.is_not(None),
                                                    User.password_link_expires_at > utcnow())
                              .order_by(User.password_link_expires_at)).all()


def revoke_link(user):
    """End the user's set-password link; an invited user keeps no way in until a reset makes another."""
    if user.password_link_hash is None:
        return
    _end_link(user)
    audit.record("admin.link_revoked", "admin", user.id, user.email, summary=f"Set-password link of {user.email} revoked")
    db.session.commit()


def _end_links_made_by(maker, why):
    """Links are a maker's rights lent out: once the maker loses them (disabled, or no longer an
    admin), the links they made end too, each in the audit log."""
    for user in db.session.scalars(db.select(User).where(User.password_link_by_id == maker.id,
                                                         User.password_link_hash.is_not(None))):
        _end_link(user)
        audit.record("admin.link_revoked", "admin", user.id, user.email,
                     summary=f"Set-password link of {user.email} ended: {maker.email}, who made it, {why}")


def invite(email, role, by=None):
    """A new user with no password and a set-password link: (user, token). The token is shown once."""
    email = normal_email(email)
    _check_role(role)
    if by_email(email) is not None:
        raise AdminError(f"{email} already has an account", "email")
    user = User(email=email, password_hash="", role=role)
    token = _new_link(user, by)
    db.session.add(user)
    db.session.flush()
    audit.record("admin.invite", "admin", user.id, user.email, after=snapshot(user))
    db.session.commit()
    return user, token


def reset(user, by):
    """Forget the user's password, end their sessions and make a new link (the old one dies)."""
    if user.id == by.id:
        raise AdminError("To change your own password use Change password (your email, top right)")
    before = snapshot(user)
    user.password_hash = ""
    user.end_sessions()
    token = _new_link(user, by)
    audit.record("admin.reset", "admin", user.id, user.email, before=before, after=snapshot(user))
    db.session.commit()
    return token


def disable(user):
    """The user cannot log in, and every session of theirs ends now; their link dies."""
    if user.disabled_at:
        return
    _keep_an_admin(user)
    before = snapshot(user)
    user.disabled_at = utcnow()
    user.end_sessions()
    _end_link(user)
    audit.record("admin.disable", "admin", user.id, user.email, before=before, after=snapshot(user))
    _end_links_made_by(user, "is disabled")
    db.session.commit()


def enable(user):
    if not user.disabled_at:
        return
    before = snapshot(user)
    user.disabled_at = None
    audit.record("admin.enable", "admin", user.id, user.email, before=before, after=snapshot(user))
    db.session.commit()


def set_role(user, role):
    _check_role(role)
    if role == user.role:
        return
    if role != ROLE_ADMIN:
        _keep_an_admin(user)
    before = snapshot(user)
    user.role = role
    audit.record("admin.role", "admin", user.id, user.email, before=before, after=snapshot(user))
    if role != ROLE_ADMIN:
        _end_links_made_by(user, f"is now a {role}")
    db.session.commit()


def user_for_link(token):
    """The user a live link belongs to; LinkDead (with words) otherwise."""
    user = None
    if token and len(token) <= 100:
        user = db.session.scalar(db.select(User).where(User.password_link_hash == security.hash_token(token)))
    if user is None or user.disabled_at or not _maker_may_lend(user):
        raise LinkDead("This link does not work: it was already used, or a newer link replaced it. "
                       "Ask an admin for a new one.")
    if user.password_link_expires_at is None or user.password_link_expires_at < utcnow():
        raise LinkDead(f"This link has expired (links last {LINK_DAYS} days). Ask an admin for a new one.")
    return user


def _maker_may_lend(user):
    """The link's maker is still an enabled admin (a link from before makers were kept names none)."""
    maker = db.session.get(User, user.password_link_by_id) if user.password_link_by_id else None
    return maker is None or (maker.is_admin and not maker.disabled_at)


def set_password_with_link(token, password):
    """Set the password of the link's user and kill the link: it works once."""
    user = user_for_link(token)
    user.set_password(password)
    _end_link(user)
    with audit.acting_as(user.email, "web"):
        audit.record("admin.password_set", "admin", user.id, user.email, summary="set a password with a link")
    db.session.commit()
    return user


# --- sessions in the audit log ------------------------------------------------------------------

def logged_in(user, address):
    """A login that worked: the user's entry, as the user."""
    user.last_login_at = utcnow()
    with audit.acting_as(user.email, "web"):
        audit.record("admin.login", "admin", user.id, user.email, summary=f"Logged in from {address}")
    db.session.commit()


def login_failed(email, address):
    """A login refused (wrong password, unknown, disabled or invited account). The email typed is
    named only when it is an account's: people type a password into the email box."""
    user = by_email(email)
    with audit.acting_as(user.email if user else "anonymous", "web"):
        audit.record("admin.login_failed", "admin", user.id if user else None, user.email if user else "",
                     summary=f"Login failed from {address}" + ("" if user else " (no account has that email)"))
    db.session.commit()


def logged_out(user, address):
    """Logout: every session of the user ends (a stolen cookie's too)."""
    user.end_sessions()
    audit.record("admin.logout", "admin", user.id, user.email, summary=f"Logged out from {address}: every session ended")
    db.session.commit()


def create_admin(email, password):
    """`exporter create-admin`: an admin with this password, created, or restored if it exists
    (an admin again, enabled, its link dead): the way back in when nobody can log in."""
    email = normal_email(email)
    user = by_email(email)
    before = snapshot(user) if user else None
    if user is None:
        user = User(email=email)
        db.session.add(user)
    user.role, user.disabled_at = ROLE_ADMIN, None
    _end_link(user)
    user.set_password(password)
    db.session.flush()
    audit.record("admin.create" if before is None else "admin.password", "admin", user.id, user.email,
                 summary="Admin created" if before is None else "Password set by create-admin (an admin, enabled)",
                 before=before, after=snapshot(user))
    db.session.commit()
    return user


def _check_role(role):
    if role not in ROLES:
        raise AdminError(f"Role must be one of: {', '.join(ROLES)}", "role")


def _keep_an_admin(user):
    """Refuse to disable or demote the last active admin (locking the rows where the database can)."""
    if not (user.is_admin and user.status == "active"):
        return
    active = db.session.scalars(db.select(User.id).where(
        User.role == ROLE_ADMIN, User.disabled_at.is_(None), User.password_hash != "").with_for_update()).all()
    if set(active) <= {user.id}:
        raise AdminError(f"{user.email} is the last active admin: make another admin first")
