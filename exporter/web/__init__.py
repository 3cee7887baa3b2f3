"""The web: blueprints, one module each, forms beside their views, templates under
templates/<blueprint>/. Every admin page needs a login; only the intake uses tokens.

May import: every part (intake, flows, files, profiles, ops, delivery) and the foundation; never
the entry points. No part imports web/. register_blueprints() here wires the blueprints."""
import re
from datetime import datetime, time, timedelta

from flask import abort, request
from flask_login import current_user, login_required
from wtforms import IntegerField, SelectChoice
from wtforms.validators import NumberRange, Optional, ValidationError

from ..models import FIRST_YEAR, LAST_YEAR

MAX_PAGE = 10**6  # past it the row offset overflows the database's integers
# A whole number in a request: 1 to 18 ASCII digits (a 64-bit id fits). str.isdigit() takes '²'
# (int() then fails: a 500) and int() takes '٣' or ' 7': neither is what a client meant to send.
WHOLE_NUMBER = re.compile(r"[0-9]{1,18}")


def whole_number(text):
    """text as an int when it is a whole number written in ASCII digits, else None."""
    return int(text) if isinstance(text, str) and WHOLE_NUMBER.fullmatch(text) else None


def admin_blueprint(bp):
    """Require a login on every view of an admin blueprint."""

    @bp.before_request
    @login_required
    def _require_login():
        return None

    return bp


def nobody_logged_in():
    """A request without cookies has no session, so it has no user (Flask-Login here reads users
    from the session only: no request or header loader): hooks need not load one. The CRM's
    token-authenticated intake requests are such requests."""
    return not request.cookies


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# What a viewer may POST: their own login, logout and password. Nothing else changes for them.
VIEWER_MAY_POST = frozenset({"auth.login", "auth.logout", "auth.change_password", "auth.set_password"})


def can_change():
    """The logged-in user may change things (an admin); a viewer reads only."""
    return bool(current_user.is_authenticated and current_user.is_admin)


def _roles(app):
    """Viewers change nothing: every state-changing request by one is refused here, for every
    route of every blueprint, so a new route cannot forget the check. Templates hide the
    buttons with can_change()."""
    from flask import jsonify, render_template

    app.jinja_env.globals["can_change"] = can_change

    @app.before_request
    def viewers_change_nothing():
        if request.method in SAFE_METHODS or request.endpoint in VIEWER_MAY_POST or nobody_logged_in():
            return None
        if not current_user.is_authenticated or current_user.is_admin:
            return None
        message = "You are a viewer: you can read every page but change nothing. Ask an admin."
        if request.accept_mimetypes.best == "application/json" or request.is_json:
            return jsonify(error=message), 403
        return render_template("errors.html", title="Not allowed", message=message), 403


def choices(pairs):
    """Select choices from (value, label) pairs: WTForms 3.3 deprecates bare tuples."""
    return [SelectChoice(value=value, label=label) for value, label in pairs]


class WholeNumberField(IntegerField):
    """An IntegerField that takes ASCII digits only (see whole_number), with the error beside it."""

    def process_formdata(self, valuelist):
        if valuelist and valuelist[0] != "":
            self.data = whole_number(valuelist[0].strip())
            if self.data is None:
                raise ValueError(f"{self.label.text} is a whole number, like 2")


def page_field():
    """A list's Page, from the query string."""
    return WholeNumberField("Page", default=1, validators=[
        Optional(), NumberRange(min=1, message="Page starts at 1"),
        NumberRange(max=MAX_PAGE, message=f"Page is at most {MAX_PAGE}")])


class DateRangeChecks:
    """The From (since) and To (until) days of a list's filters: our words for a date that is not
    one (WTForms says "Not a valid date value"), the years the database holds, To not before From.
    The form calls plain_date_errors() once it has read its data."""

    def plain_date_errors(self):
        for day in (self.since, self.until):
            day.process_errors = ["Give the date as YYYY-MM-DD"] if day.process_errors else []

    def validate_since(self, field):
        if field.data and not FIRST_YEAR <= field.data.year <= LAST_YEAR:
            raise ValidationError(f"Give a date between {FIRST_YEAR} and {LAST_YEAR}")

    def validate_until(self, field):
        self.validate_since(field)
        if field.data and self.since.data and field.data < self.since.data:
            raise ValidationError("To is before From")

    def within_days(self, column):
        """Conditions on a time column for the From and To days, both included."""
        conditions = []
        if self.since.data:
            conditions.append(column >= datetime.combine(self.since.data, time.min))
        if self.until.data:
            conditions.append(column < datetime.combine(self.until.data + timedelta(days=1), time.min))
        return conditions


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

    @app.template_filter("plural")
    def plural(n, one, many):
        """{{ n|plural("event", "events") }}: "1 event", "2 events"."""
        return f"{n} {one if n == 1 else many}"

    @app.template_filter("error_detail")
    def error_detail(text):
        parts = (text or "").split("\n", 1)
        return parts[1].strip() if len(parts) > 1 else ""


def register_blueprints(app):
    from .security import protect

    protect(app)  # before the routes: the id converter applies to the rules as they are added
    _roles(app)  # before the blueprints' own hooks: a viewer's change is refused first
    _errors(app)
    _favicon(app)
    _error_filters(app)
    from . import admins, alerts, audit, auth, catalog, customers, dashboard, deliveries, export_types, files, hosts, intake, mappings, profile_tools, profiles, replay, routing, tokens

    for module in (auth, dashboard, profiles, mappings, profile_tools, routing, catalog, deliveries, files, customers,
                   tokens, export_types, audit, admins, alerts, hosts, intake, replay):
        app.register_blueprint(module.bp)
    from . import health  # /healthz and /metrics: no login

    app.register_blueprint(health.bp)
