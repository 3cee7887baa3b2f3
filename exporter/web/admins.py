"""Admins page: invite (a one-time set-password link shown once), reset a password, disable,
enable, change role; the pending links, each with Revoke. The rules live in exporter/admins.py; this is only HTTP."""
from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.validators import DataRequired

from ..ops import admins
from ..extensions import db
from ..models import ROLE_ADMIN, ROLE_VIEWER, User
from . import admin_blueprint, choices, strip

bp = admin_blueprint(Blueprint("admins", __name__, url_prefix="/admins"))

ROLE_CHOICES = [(ROLE_ADMIN, "Admin: changes everything"), (ROLE_VIEWER, "Viewer: reads everything, changes nothing")]


class InviteForm(FlaskForm):
    email = StringField("Email", filters=[strip], validators=[DataRequired("Email is required")])
    role = SelectField("Role", choices=choices(ROLE_CHOICES), default=ROLE_VIEWER)


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=choices(ROLE_CHOICES))


def _page(form=None, link=None, status=200):
    """The list and the invite form; link is (email, absolute URL) to show once."""
    users = db.session.scalars(db.select(User).order_by(User.email)).all()
    makers = {u.id: u.email for u in users}
    return render_template("admins/index.html", users=users, form=form or InviteForm(), link=link,
                           role_choices=ROLE_CHOICES, me=current_user.id, pending=admins.pending_links(),
                           makers=makers, link_days=admins.LINK_DAYS), status


def _link(user, token):
    return user.email, url_for("auth.set_password", token=token, _external=True)


def _refused(error):
    flash(str(error), "error")
    return _page(status=409)


@bp.route("/", methods=["GET", "POST"])
def index():
    form = InviteForm()
    if not form.validate_on_submit():
        return _page(form, status=422 if form.errors else 200)
    try:
        user, token = admins.invite(form.email.data, form.role.data, by=current_user)
    except admins.AdminError as error:
        getattr(form, error.field or "email").errors.append(str(error))
        return _page(form, status=422)
    flash(f"{user.email} is invited. Send them this link now: it is not shown again, and works once.", "success")
    return _page(link=_link(user, token))


@bp.route("/<int:user_id>/reset", methods=["POST"])
def reset(user_id):
    user = db.get_or_404(User, user_id)
    try:
        token = admins.reset(user, by=current_user)
    except admins.AdminError as error:
        return _refused(error)
    flash(f"{user.email}'s password is reset and their sessions ended. Send them this link now: "
          "it is not shown again, and works once.", "success")
    return _page(link=_link(user, token))


@bp.route("/<int:user_id>/revoke-link", methods=["POST"])
def revoke_link(user_id):
    user = db.get_or_404(User, user_id)
    admins.revoke_link(user)
    flash(f"{user.email}'s set-password link is revoked: it no longer works.", "success")
    return redirect(url_for(".index"))


@bp.route("/<int:user_id>/disable", methods=["POST"])
def disable(user_id):
    user = db.get_or_404(User, user_id)
    try:
        admins.disable(user)
    except admins.AdminError as error:
        return _refused(error)
    flash(f"{user.email} is disabled and logged out.", "success")
    return redirect(url_for(".index"))


@bp.route("/<int:user_id>/enable", methods=["POST"])
def enable(user_id):
    user = db.get_or_404(User, user_id)
    admins.enable(user)
    flash(f"{user.email} is enabled.", "success")
    return redirect(url_for(".index"))


@bp.route("/<int:user_id>/role", methods=["POST"])
def role(user_id):
    user = db.get_or_404(User, user_id)
    form = RoleForm()
    if not form.validate_on_submit():
        return _refused(admins.AdminError(f"Role must be one of: {ROLE_ADMIN}, {ROLE_VIEWER}"))
    try:
        admins.set_role(user, form.role.data)
    except admins.AdminError as error:
        return _refused(error)
    flash(f"{user.email} is now {'an admin' if user.is_admin else 'a viewer'}.", "success")
    return redirect(url_for(".index"))
