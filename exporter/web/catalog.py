"""Available Field Mappings: the catalog of order-record fields a mapping may use."""
from flask import Blueprint, render_template

from .. import catalog
from . import admin_blueprint

bp = admin_blueprint(Blueprint("catalog", __name__, url_prefix="/fields"))


@bp.route("/")
def index():
    return render_template("catalog/index.html", fields=catalog.FIELDS)
