"""Customers: search, and a customer's events and history."""
from flask import Blueprint, render_template

from . import admin_blueprint

bp = admin_blueprint(Blueprint("customers", __name__, url_prefix="/customers"))


@bp.route("/")
def index():
    return render_template("customers/index.html")
