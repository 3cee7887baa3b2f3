"""POST /intake/events: the CRM's webhook. Token auth, no CSRF, JSON only; the flow is in exporter.intake."""
from flask import Blueprint, current_app, jsonify, request

from .. import intake, tokens
from ..extensions import csrf, db

bp = Blueprint("intake", __name__, url_prefix="/intake")


def _error(status, error, problems=()):
    body = {"error": error}
    if problems:
        body["problems"] = list(problems)
    return jsonify(body), status


@bp.route("/events", methods=["POST"])
@csrf.exempt
def events():
    auth = request.headers.get("Authorization", "")
    token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    if tokens.authenticate(token) is None:
        db.session.rollback()
        return _error(401, "missing or invalid intake token (Authorization: Bearer <token>)")
    db.session.commit()  # the token's last use
    if request.content_length is not None and request.content_length > current_app.config["INTAKE_MAX_BYTES"]:
        return _error(413, f"body over {current_app.config['INTAKE_MAX_BYTES']} bytes")
    if request.mimetype != "application/json":
        return _error(415, "Content-Type must be application/json")
    raw = request.get_data(cache=False)
    if len(raw) > current_app.config["INTAKE_MAX_BYTES"]:
        return _error(413, f"body over {current_app.config['INTAKE_MAX_BYTES']} bytes")
    try:
        import json

        body = json.loads(raw)
    except ValueError as exc:
        return _error(400, f"malformed JSON: {exc}")
    try:
        counts = intake.accept(body)
    except intake.IntakeError as exc:
        db.session.rollback()
        return _error(exc.status, exc.error, exc.problems)
    return jsonify(counts), 202
