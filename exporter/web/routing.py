"""Profile Routing (routes of a profile) and the Campaigns & Products page."""
from flask import Blueprint, render_template

from . import admin_blueprint

bp = admin_blueprint(Blueprint("routing", __name__))


@bp.route("/campaigns")
def campaigns():
    return render_template("routing/campaigns.html")
