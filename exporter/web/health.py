"""/healthz for load balancers and monitors, /metrics for Prometheus. Neither needs a login:
/healthz shows only counts and check names, /metrics asks for the METRICS_TOKEN."""
import hmac

from flask import Blueprint, current_app, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST

from ..ops import health, metrics
from ..extensions import db

bp = Blueprint("health", __name__)

METRICS_OFF = ("Metrics are off. Set EXPORTER_METRICS_TOKEN (or METRICS_TOKEN in instance/config.py) "
               "and send it as 'Authorization: Bearer <token>'.\n")


@bp.route("/healthz")
def healthz():
    """200 when every part works, else 503 naming the failing parts; the body says why."""
    body = health.report()
    response = jsonify(body)
    response.status_code = 200 if body["ok"] else 503
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/metrics")
def metrics_view():
    token = current_app.config.get("METRICS_TOKEN")
    if not token:
        return METRICS_OFF, 404, {"Content-Type": "text/plain; charset=utf-8"}
    given = request.headers.get("Authorization", "")
    if not given.startswith("Bearer ") or not hmac.compare_digest(given[7:].strip().encode(), str(token).encode()):
        return ("Send the metrics token as 'Authorization: Bearer <token>'.\n", 401,
                {"Content-Type": "text/plain; charset=utf-8", "WWW-Authenticate": 'Bearer realm="metrics"'})
    cfg = current_app.config
    try:
        text = metrics.render(cfg.get("REDIS_URL"), cfg["QUEUE_NAME"])
    except Exception as exc:  # the database is down: the scrape fails, and says why
        db.session.rollback()
        return (f"The database did not answer: {type(exc).__name__}\n", 503,
                {"Content-Type": "text/plain; charset=utf-8"})
    return text, 200, {"Content-Type": CONTENT_TYPE_LATEST}
