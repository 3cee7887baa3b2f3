"""Export Profiles: the list with Profile Routing beside it, and the profile edit page."""
from flask import Blueprint, render_template

from ..extensions import db
from ..models import Profile
from . import admin_blueprint

bp = admin_blueprint(Blueprint("profiles", __name__, url_prefix="/profiles"))


@bp.route("/")
def index():
    profiles = db.session.scalars(db.select(Profile).order_by(Profile.name)).all()
    return render_template("profiles/index.html", profiles=profiles)
