"""The dashboard: the first page after login."""
from flask import Blueprint, render_template

from . import admin_blueprint

bp = admin_blueprint(Blueprint("dashboard", __name__))


@bp.route("/")
def index():
    return render_template("dashboard/index.html")
