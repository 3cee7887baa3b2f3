"""Deliveries: the list by status and profile, and a delivery's page with every attempt."""
from flask import Blueprint, render_template

from . import admin_blueprint

bp = admin_blueprint(Blueprint("deliveries", __name__, url_prefix="/deliveries"))


@bp.route("/")
def index():
    return render_template("deliveries/index.html")
