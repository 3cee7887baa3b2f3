"""Daily files: re-run a past day's file, download a file as it was sent (masked)."""
from flask import Blueprint, abort

from . import admin_blueprint

bp = admin_blueprint(Blueprint("files", __name__, url_prefix="/files"))


@bp.route("/profiles/<int:profile_id>/rerun", methods=["POST"])
def rerun(profile_id):
    abort(501)  # built in the FTP issue


@bp.route("/deliveries/<int:delivery_id>/download")
def download(delivery_id):
    abort(501)  # built in the FTP issue
