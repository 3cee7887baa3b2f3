"""Blueprints, one module each. Every admin page needs a login; only the intake uses tokens."""
from flask_login import login_required


def admin_blueprint(bp):
    """Require a login on every view of an admin blueprint."""

    @bp.before_request
    @login_required
    def _require_login():
        return None

    return bp


def _errors(app):
    from flask import render_template
    from flask_wtf.csrf import CSRFError

    @app.errorhandler(CSRFError)
    def csrf_error(error):
        return render_template("errors.html", title="Form expired",
                               message=f"{error.description} Go back, reload the page and try again."), 400

    @app.errorhandler(404)
    def not_found(error):
        return render_template("errors.html", title="Not found", message="There is nothing at this address."), 404


def register_blueprints(app):
    from .security import protect

    protect(app)  # before the routes: the id converter applies to the rules as they are added
    _errors(app)
    from . import (auth, catalog, customers, dashboard, deliveries, export_types, files, intake, profile_tools, profiles,
                   routing, tokens)

    for module in (auth, dashboard, profiles, profile_tools, routing, catalog, deliveries, files, customers, tokens,
                   export_types, intake):
        app.register_blueprint(module.bp)
    from . import health  # /healthz and /metrics: no login

    app.register_blueprint(health.bp)
