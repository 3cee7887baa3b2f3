"""Export Types page: every installed type, its package and version, and why a broken one is off."""
from collections import Counter

from flask import Blueprint, current_app, render_template

from ..extensions import db
from ..models import Profile
from . import admin_blueprint

bp = admin_blueprint(Blueprint("export_types", __name__, url_prefix="/export-types"))


@bp.route("/")
def index():
    registry = current_app.extensions["export_types"]
    used = Counter(db.session.scalars(db.select(Profile.export_type)).all())
    # Profiles whose type is not available cannot send: say so here, beside the reason.
    stranded = db.session.scalars(db.select(Profile).where(Profile.export_type.not_in(list(registry.types)))
                                  .order_by(Profile.name)).all()
    return render_template("export_types/index.html", registry=registry, used=used, stranded=stranded)
