"""Export Types page: every installed type, its package and version, and why a broken one is off."""
from flask import Blueprint, current_app, render_template

from . import admin_blueprint

bp = admin_blueprint(Blueprint("export_types", __name__, url_prefix="/export-types"))


@bp.route("/")
def index():
    return render_template("export_types/index.html", registry=current_app.extensions["export_types"])
