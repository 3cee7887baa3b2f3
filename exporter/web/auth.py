"""Login, logout and the admin's own password (Flask-Login, hashed passwords).

A session names its user and the user's session token: logout and a password change
make a new token, which ends every session of that user. A session idle for longer than
SESSION_IDLE_MINUTES ends too. Failed logins are throttled per account and per address
(Flask-Limiter, on the app's Redis); an unknown email costs as much time as a wrong password.
"""
import hmac
import time
from functools import lru_cache
from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_limiter.util import get_remote_address
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, EqualTo, Length, ValidationError

from ..ops import admins
from .. import audit
from . import nobody_logged_in, whole_number
from ..extensions import db, limiter, login_manager
from ..models import User

bp = Blueprint("auth", __name__)
MIN_PASSWORD_LENGTH = 12


@login_manager.user_loader
def load_user(session_id):
    """The user a session names, while its token is the user's current one."""
    user_id, _, token = str(session_id).partition(":")
    if whole_number(user_id) is None or not token:
        return None
    user = db.session.get(User, whole_number(user_id))
    if user is None or user.disabled_at or not hmac.compare_digest(user.session_token or "", token):
        return None
    return user


@bp.before_app_request
def end_idle_sessions():
    """Log out a session that was idle longer than SESSION_IDLE_MINUTES; note this request."""
    if nobody_logged_in() or not current_user.is_authenticated:
        return
    now, seen = time.time(), session.get("seen")
    if seen and now - seen > float(current_app.config["SESSION_IDLE_MINUTES"]) * 60:
        logout_user()
        session.pop("seen", None)
        flash(f"You were logged out after {current_app.config['SESSION_IDLE_MINUTES']} minutes without activity.",
              "info")
        return
    session["seen"] = now


@bp.before_app_request
def who_acts():
    """Who the audit log names for this request's changes: the admin logged in, else the system."""
    if not nobody_logged_in() and current_user.is_authenticated:
        audit.set_actor(current_user.email, "web")


@bp.teardown_app_request
def nobody_acts(error=None):
    """A thread serves many requests (and a test calls code between them): the admin must not linger."""
    audit.set_actor("system", "")


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])


def _new_password_field():
    return PasswordField("New password", validators=[
        DataRequired("Choose a new password"),
        Length(min=MIN_PASSWORD_LENGTH, message=f"At least {MIN_PASSWORD_LENGTH} characters")])


class SetPasswordForm(FlaskForm):
    new_password = _new_password_field()
    confirm = PasswordField("New password again", validators=[EqualTo("new_password", "The two passwords differ")])


class PasswordForm(FlaskForm):
    current_password = PasswordField("Current password", validators=[DataRequired("Type your current password")])
    new_password = _new_password_field()
    confirm = PasswordField("New password again", validators=[EqualTo("new_password", "The two passwords differ")])

    def validate_current_password(self, field):
        if not current_user.check_password(field.data or ""):
            raise ValidationError("This is not your current password")


def safe_next(target):
    """A path on this site to go to after login, or None: never another host, whatever the
    browser makes of tabs, line breaks or backslashes (/%09/evil.com is //evil.com to it)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    if any(c == "\\" or c.isspace() or ord(c) < 32 or ord(c) == 127 for c in target):
        return None
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else None


@lru_cache(maxsize=1)
def _decoy_hash():
    """A hash to check an unknown user's password against: the same work as a known one's."""
    return generate_password_hash("decoy password, never anyone's")


def _account():
    return "account:" + admins.login_email(request.form.get("email"))


def _failed(response):
    return response.status_code != 302  # a login that worked redirects


def _limit(name):
    return lambda: current_app.config[name]


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_limit("LOGIN_LIMIT_PER_ACCOUNT"), key_func=_account, methods=["POST"], deduct_when=_failed,
               scope="login-account")
@limiter.limit(_limit("LOGIN_LIMIT_PER_ADDRESS"), key_func=get_remote_address, methods=["POST"],
               deduct_when=_failed, scope="login-address")
def login():
    form = LoginForm()
    if form.validate_on_submit():
        email = admins.login_email(form.email.data)
        user = db.session.scalar(db.select(User).where(User.email == email))
        if user is None or not user.password_hash:  # unknown, or invited and no password yet
            check_password_hash(_decoy_hash(), form.password.data)  # as slow as a wrong password
        elif user.check_password(form.password.data):  # False for a disabled user
            _log_in(user)
            return redirect(safe_next(request.args.get("next")) or url_for("dashboard.index"))
        admins.login_failed(email, get_remote_address())
        flash("Wrong email or password.", "error")
    return render_template("auth/login.html", form=form)


def _log_in(user):
    admins.logged_in(user, get_remote_address())
    login_user(user)
    session["seen"] = time.time()


@bp.app_errorhandler(429)
def too_many_logins(error):
    message = ("Too many failed logins for this account or from this address "
               f"(at most {error.description}). Wait, then try again.")
    if request.endpoint == "auth.login":
        flash(message, "error")
        return render_template("auth/login.html", form=LoginForm()), 429
    return render_template("errors.html", title="Too many requests", message=message), 429


@bp.route("/logout", methods=["POST"])
def logout():
    """Log out everywhere: the user's other sessions (and any copy of this cookie) end too."""
    if current_user.is_authenticated:
        admins.logged_out(current_user, get_remote_address())
    logout_user()
    session.pop("seen", None)
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    form = PasswordForm()
    if form.validate_on_submit():
        current_user.set_password(form.new_password.data)  # ends every session of this user...
        audit.record("admin.password", "admin", current_user.id, current_user.email,
                     summary="Changed their own password")
        db.session.commit()
        login_user(current_user._get_current_object())  # ...but this one, under the new token
        session["seen"] = time.time()
        flash("Password changed. Every other session of yours is logged out.", "success")
        return redirect(url_for("dashboard.index"))
    return render_template("auth/password.html", form=form), 422 if form.errors else 200


@bp.route("/account/set-password/<token>", methods=["GET", "POST"])
def set_password(token):
    """The one-time link of an invite or a reset: choose a password, then you are logged in."""
    try:
        user = admins.user_for_link(token)
    except admins.LinkDead as dead:
        return render_template("errors.html", title="Link not valid", message=str(dead)), 404
    form = SetPasswordForm()
    if form.validate_on_submit():
        user = admins.set_password_with_link(token, form.new_password.data)
        _log_in(user)
        flash("Password set. Welcome to Exporter.", "success")
        return redirect(url_for("dashboard.index"))
    return render_template("auth/set_password.html", form=form, email=user.email), 422 if form.errors else 200
