"""POST /intake/events: the CRM's webhook. Token auth, no CSRF, JSON only; the flow is in exporter.intake.
GET /intake/openapi.json: its description (exporter.intake_api), public like any API's manual."""
import json

from flask import Blueprint, current_app, jsonify, request

from ..intake import tokens
from ..extensions import csrf, db, limiter

bp = Blueprint("intake", __name__, url_prefix="/intake")


@limiter.request_filter
def _not_limited():
    """Only logins are throttled: the limiter's checks are skipped for the intake, which has no limit."""
    return request.blueprint == "intake"


MAX_JSON_DEPTH = 32  # an event nests 5 levels ({"events": [{"order": {"products": [{...}]}}]})


def _error(status, error, problems=()):
    body = {"error": error}
    if problems:
        body["problems"] = list(problems)
    return jsonify(body), status


@bp.route("/events", methods=["POST"])
@csrf.exempt
def events():
    # Imported here, not on top: its pydantic models take some 8 MB that a worker, which
    # never takes events but builds the same app, should not carry.
    from ..intake import accept as intake

    auth = request.headers.get("Authorization", "")
    token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    live = tokens.authenticate(token)
    if live is None:
        db.session.rollback()
        return _error(401, "missing or invalid intake token (Authorization: Bearer <token>)")
    if request.content_length is not None and request.content_length > current_app.config["INTAKE_MAX_BYTES"]:
        return _error(413, f"body over {current_app.config['INTAKE_MAX_BYTES']} bytes")
    if request.mimetype != "application/json":
        return _error(415, "Content-Type must be application/json")
    raw = request.get_data(cache=False)
    if len(raw) > current_app.config["INTAKE_MAX_BYTES"]:
        return _error(413, f"body over {current_app.config['INTAKE_MAX_BYTES']} bytes")
    try:
        body = json.loads(raw, parse_constant=_not_json)
    except ValueError as exc:
        return _error(400, f"malformed JSON: {exc}")
    except RecursionError:
        return _error(400, "malformed JSON: nested too deeply")
    if _deeper_than(body, MAX_JSON_DEPTH):
        return _error(400, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        counts = intake.accept(body, live.id)
    except intake.IntakeError as exc:
        db.session.rollback()
        return _error(exc.status, exc.error, exc.problems)
    return jsonify(counts), 202


@bp.get("/openapi.json")
def openapi():
    cfg = current_app.config
    from ..intake import openapi as intake_api  # built from the intake's pydantic models: loaded when asked for, as above

    return jsonify(intake_api.document(cfg["INTAKE_MAX_EVENTS"], cfg["INTAKE_MAX_BYTES"]))


def _not_json(constant):
    """NaN and Infinity: Python's json reads them, but they are not JSON and no database stores them."""
    raise ValueError(f"{constant} is not JSON")


def _deeper_than(body, limit):
    """Whether lists and objects nest more than limit levels (walked a level at a time, without
    recursion; only containers are visited, an order's many strings and numbers are not).
    json.loads makes plain dicts and lists only."""
    level, current = 1, [body] if isinstance(body, (dict, list)) else []
    while current:
        if level > limit:
            return True
        deeper = []
        for value in current:
            for child in (value.values() if value.__class__ is dict else value):
                if child.__class__ is dict or child.__class__ is list:
                    deeper.append(child)
        current, level = deeper, level + 1
    return False
