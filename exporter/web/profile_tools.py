"""Tools on the profile page that talk to the target: Send test, Test connection.

Both go through the export type's contract only, so they work for any installed type.
A test send is logged as an attempt marked is_test, with no delivery and never a line in
a customer's history; a connection test is shown and not stored. Both are in the audit log: one
sends to the partner, the other logs in with the stored password.
"""
import logging
import uuid
from datetime import date

from flask import Blueprint, abort, current_app, render_template

from .. import audit, catalog, mapping, security
from ..files import daily_files
from ..delivery import dispatch
from ..export_types import DAILY_FILE, Batch, Outcome
from ..extensions import db
from ..models import Profile, utcnow
from . import admin_blueprint

bp = admin_blueprint(Blueprint("profile_tools", __name__, url_prefix="/profiles"))
log = logging.getLogger(__name__)


def _result(profile, title, attempt=None, summary="", problem=None, status=200):
    cls = dispatch.registry().get(profile.export_type)
    label = cls.label if cls else profile.export_type
    return render_template("profile_tools/result.html", profile=profile, title=title, attempt=attempt,
                           summary=summary, problem=problem, type_label=label), status


def _audit(profile, action, title, attempt):
    """The tool's entry: what it reached and how it went, as masked as the attempt."""
    result = "succeeded" if attempt.ok else "failed"
    where = f" ({' '.join(filter(None, (attempt.method, attempt.target)))})" if attempt.target else ""
    audit.record(action, "profile", profile.id, profile.name, profile_id=profile.id,
                 summary=f"{title} {result}{where}", after={"ok": attempt.ok, "status": attempt.status})


def _call(export_type, what, *args, **kwargs):
    """A plugin's hook, whose bug becomes a failed Outcome on the page rather than a 500."""
    try:
        outcome = getattr(export_type, what)(*args, **kwargs)
    except Exception as exc:
        log.exception("%s of export type %s failed", what, export_type.key)
        return Outcome(ok=False, error=f"{type(exc).__name__}: {exc}")
    if not isinstance(outcome, Outcome):
        return Outcome(ok=False, error=f"{export_type.key}.{what}() returned {type(outcome).__name__}, not an Outcome")
    return outcome


@bp.route("/<int:profile_id>/send-test", methods=["POST"])
def send_test(profile_id):
    """Render the sample order with the profile's mappings and send it once, marked as a test."""
    profile = db.get_or_404(Profile, profile_id)
    title = "Send test"
    cls = dispatch.registry().get(profile.export_type)
    if cls is None:
        return _result(profile, title, problem=f"Export type {profile.export_type!r} is not installed.", status=409)
    try:
        renderer = dispatch.renderer_for(profile)
    except mapping.MappingError as exc:
        return _result(profile, title, problem=f"Field Mappings: {exc}", status=422)
    if not renderer.columns:
        return _result(profile, title, problem="Add a field mapping first: there is nothing to send.", status=422)
    try:
        export_type, secrets_ = dispatch.export_type_for(profile)
    except ValueError as exc:  # a stored secret that this SECRET_KEY cannot decrypt
        return _result(profile, title, problem=str(exc), status=409)
    row = renderer(catalog.sample_record())
    batch = Batch(columns=renderer.columns, rows=[row], profile_name=profile.name,
                  idempotency_key=f"test-{uuid.uuid4().hex[:16]}", is_test=True,
                  file_date=date.today() if cls.schedule == DAILY_FILE else None,
                  allow_private_targets=bool(current_app.config["ALLOW_PRIVATE_TARGETS"]),
                  work_dir=daily_files.work_dir() if cls.schedule == DAILY_FILE else "")
    started = utcnow()
    outcome = _call(export_type, "send", batch)
    # Masked exactly as a delivery's attempt is: sensitive mapped values and secret settings.
    secrets_ += dispatch.sensitive_pairs(renderer, [row])
    attempt = dispatch.attempt_from(outcome, secrets_, number=1, started_at=started, profile_id=profile.id,
                                    is_test=True)
    db.session.add(attempt)
    _audit(profile, "profile.send_test", title, attempt)
    db.session.commit()
    return _result(profile, title, attempt=attempt, summary=security.redact(outcome.summary, secrets_))


@bp.route("/<int:profile_id>/test-connection", methods=["POST"])
def test_connection(profile_id):
    """The type's optional test_connection(): reach the target without sending an export."""
    profile = db.get_or_404(Profile, profile_id)
    cls = dispatch.registry().get(profile.export_type)
    if cls is None or not callable(getattr(cls, "test_connection", None)):
        abort(404)
    title = "Test connection"
    try:
        export_type, secrets_ = dispatch.export_type_for(profile)
    except ValueError as exc:
        return _result(profile, title, problem=str(exc), status=409)
    started = utcnow()
    outcome = _call(export_type, "test_connection",
                    allow_private_targets=bool(current_app.config["ALLOW_PRIVATE_TARGETS"]))
    attempt = dispatch.attempt_from(outcome, secrets_, number=1, started_at=started, profile_id=profile.id,
                                    is_test=True)
    _audit(profile, "profile.test_connection", title, attempt)
    db.session.commit()
    return _result(profile, title, attempt=attempt, summary=security.redact(outcome.summary, secrets_))
