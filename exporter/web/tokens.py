"""Intake Tokens page: create (shown once), list, revoke."""
from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length

from ..intake import tokens
from ..extensions import db
from ..models import IntakeToken
from . import admin_blueprint

bp = admin_blueprint(Blueprint("tokens", __name__, url_prefix="/tokens"))


class TokenForm(FlaskForm):
    name = StringField("Token Name", validators=[DataRequired("Token Name is required"), Length(max=100)])


@bp.route("/", methods=["GET", "POST"])
def index():
    form, new_token = TokenForm(), None
    if form.validate_on_submit():
        new_token = tokens.create(form.name.data)
        flash("Token created. Copy it now: it is not shown again.", "success")
    rows = db.session.scalars(db.select(IntakeToken).order_by(IntakeToken.created_at.desc())).all()
    return render_template("tokens/index.html", form=form, tokens=rows, new_token=new_token)


@bp.route("/<int:token_id>/revoke", methods=["POST"])
def revoke(token_id):
    row = db.session.get(IntakeToken, token_id) or abort(404)
    tokens.revoke(row)
    flash(f"Token {row.name!r} revoked.", "success")
    return redirect(url_for(".index"))
