"""Blueprints, one module each. Every admin page needs a login; only the intake uses tokens."""
from flask_login import login_required


def admin_blueprint(bp):
    """Require a login on every view of an admin blueprint."""

    @bp.before_request
    @login_required
    def _require_login():
        return None

    return bp


def register_blueprints(app):
    from . import (auth, catalog, customers, dashboard, deliveries, export_types, files, intake, profile_tools, profiles,
                   routing, tokens)

    for module in (auth, dashboard, profiles, profile_tools, routing, catalog, deliveries, files, customers, tokens,
                   export_types, intake):
        app.register_blueprint(module.bp)
