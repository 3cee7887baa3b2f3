"""Tools on the profile page that talk to the target: Send test, Test connection."""
from flask import Blueprint, abort

from . import admin_blueprint

bp = admin_blueprint(Blueprint("profile_tools", __name__, url_prefix="/profiles"))


@bp.route("/<int:profile_id>/send-test", methods=["POST"])
def send_test(profile_id):
    abort(501)  # built in the plugins issue


@bp.route("/<int:profile_id>/test-connection", methods=["POST"])
def test_connection(profile_id):
    abort(501)  # built in the FTP issue
