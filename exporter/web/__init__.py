"""Blueprints, one module each. Every admin page needs a login; only the intake uses tokens."""
from flask import abort
from flask_login import login_required
from wtforms import SelectChoice


def admin_blueprint(bp):
    """Require a login on every view of an admin blueprint."""

    @bp.before_request
    @login_required
    def _require_login():
        return None

    return bp


def choices(pairs):
    """Select choices from (value, label) pairs: WTForms 3.3 deprecates bare tuples."""
    return [SelectChoice(value=value, label=label) for value, label in pairs]


def strip(value):
    return value.strip() if isinstance(value, str) else value


def not_found_unless(condition):
    if not condition:
        abort(404)


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


def _favicon(app):
    from flask import redirect, url_for

    @app.get("/favicon.ico")
    def favicon():  # browsers ask for it before they read the page's <link rel="icon">
        return redirect(url_for("static", filename="favicon.svg"), 301)


def _error_filters(app):
    """An error text's first line is its plain words (what lists show); the rest is the detail."""

    @app.template_filter("error_words")
    def error_words(text):
        return (text or "").split("\n", 1)[0]

    @app.template_filter("error_detail")
    def error_detail(text):
        parts = (text or "").split("\n", 1)
        return parts[1].strip() if len(parts) > 1 else ""


def register_blueprints(app):
    from .security import protect

    protect(app)  # before the routes: the id converter applies to the rules as they are added
    _errors(app)
    _favicon(app)
    _error_filters(app)
    from . import (audit, auth, catalog, customers, dashboard, deliveries, export_types, files, intake, mappings,
                   profile_tools, profiles, replay, routing, tokens)

    for module in (auth, dashboard, profiles, mappings, profile_tools, routing, catalog, deliveries, files, customers,
                   tokens, export_types, audit, intake, replay):
        app.register_blueprint(module.bp)
    from . import health  # /healthz and /metrics: no login

    app.register_blueprint(health.bp)
