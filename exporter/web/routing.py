"""Profile Routing (the routes of a profile) and the Campaigns & Products page."""
import re

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from sqlalchemy.exc import IntegrityError
from wtforms import SelectMultipleField, StringField
from wtforms.validators import DataRequired, Length

from .. import audit
from ..profiles import customer_types, rules as profiles
from ..extensions import db
from ..models import Campaign, Product, Profile, Route
from . import admin_blueprint, choices, not_found_unless, strip

bp = admin_blueprint(Blueprint("routing", __name__))

ALL = "all"
MAX_ID = 2**63 - 1  # the id columns are BIGINT


# --- routes -------------------------------------------------------------------------------

class RouteForm(FlaskForm):
    customer_types = SelectMultipleField("Customer Types", validate_choice=False)
    campaigns = SelectMultipleField("Campaigns", validate_choice=False,
                                    description="All, or the campaigns to export; hold Ctrl or ⌘ for several.")
    products = SelectMultipleField("Products", validate_choice=False,
                                   description="All, or the products to export (an order with one of them).")


def _offered(model, current_ids):
    """(id, label) of each row in the table, plus ids the route has that no row names."""
    rows = {row.id: row.name for row in db.session.scalars(db.select(model).order_by(model.id))}
    missing = [i for i in current_ids if i not in rows]
    offered = [(str(i), f"{i} {name}".strip()) for i, name in rows.items()]
    offered += [(str(i), f"{i} (not on the Campaigns & Products page)") for i in missing]
    return [(ALL, "All")] + offered


def _setup(form, route):
    form.customer_types.choices = choices((t.slug, t.label) for t in customer_types.CUSTOMER_TYPES)
    form.campaigns.choices = choices(_offered(Campaign, route.campaigns if route else []))
    form.products.choices = choices(_offered(Product, route.products if route else []))


def _ids(field, noun):
    """The chosen ids; [] for All or nothing chosen; None (with the error beside it) if forged."""
    values = field.data or []
    if not values or ALL in values:
        return []
    offered = {c.value if hasattr(c, "value") else c[0] for c in field.choices}
    ids = []
    for value in values:
        if value not in offered:
            field.errors.append(f"{value!r} is not a {noun} on the Campaigns & Products page")
            return None
        if int(value) not in ids:
            ids.append(int(value))
    return ids


def _route_from_form(form):
    """The route as a dict, or None with each problem beside its field (exporter.profiles' checks)."""
    form.validate_on_submit()
    route = {"customer_types": list(dict.fromkeys(form.customer_types.data or [])),
             "campaigns": _ids(form.campaigns, "campaign"), "products": _ids(form.products, "product")}
    if route["campaigns"] is None or route["products"] is None:
        return None
    bad = profiles.check_route(route)
    if bad:
        key, message = bad
        getattr(form, key).errors.append(message[:1].upper() + message[1:])
        return None
    return None if any(f.errors for f in form) else route


def _route_or_404(profile, route_id):
    route = db.session.get(Route, route_id)
    not_found_unless(route is not None and route.profile_id == profile.id)
    return route


def _render_route_form(profile, form, route=None, status=200):
    if not form.campaigns.data:
        form.campaigns.data = [ALL]
    if not form.products.data:
        form.products.data = [ALL]
    return render_template("routing/route_form.html", profile=profile, form=form, route=route,
                           types=customer_types.CUSTOMER_TYPES), status


def _back_to_routing(profile):
    return redirect(url_for("profiles.index", profile=profile.id) + "#routing")


@bp.route("/profiles/<int:profile_id>/routes/new", methods=["GET", "POST"])
def new_route(profile_id):
    profile = db.get_or_404(Profile, profile_id)
    form = RouteForm()
    _setup(form, None)
    if request.method == "POST":
        route = _route_from_form(form)
        if route is not None:
            before = profiles.snapshot(profile)
            profile.routes.append(Route(**route))
            profiles.record_change("route.add", profile, before, "Route added")
            db.session.commit()
            flash("Route added.", "success")
            return _back_to_routing(profile)
        return _render_route_form(profile, form, status=422)
    return _render_route_form(profile, form)


@bp.route("/profiles/<int:profile_id>/routes/<int:route_id>", methods=["GET", "POST"])
def edit_route(profile_id, route_id):
    profile = db.get_or_404(Profile, profile_id)
    route = _route_or_404(profile, route_id)
    if request.method == "GET":
        form = RouteForm(formdata=None, data={
            "customer_types": list(route.customer_types), "campaigns": [str(i) for i in route.campaigns],
            "products": [str(i) for i in route.products]})
        _setup(form, route)
        return _render_route_form(profile, form, route)
    form = RouteForm()
    _setup(form, route)
    data = _route_from_form(form)
    if data is None:
        return _render_route_form(profile, form, route, status=422)
    before = profiles.snapshot(profile)
    route.customer_types, route.campaigns, route.products = (
        data["customer_types"], data["campaigns"], data["products"])
    profiles.record_change("route.edit", profile, before, "Route saved")
    db.session.commit()
    flash("Route saved.", "success")
    return _back_to_routing(profile)


@bp.post("/profiles/<int:profile_id>/routes/<int:route_id>/delete")
def delete_route(profile_id, route_id):
    profile = db.get_or_404(Profile, profile_id)
    route = _route_or_404(profile, route_id)
    before = profiles.snapshot(profile)
    profile.routes.remove(route)
    profiles.record_change("route.delete", profile, before, "Route deleted")
    db.session.commit()
    flash("Route deleted.", "success")
    return _back_to_routing(profile)


# --- Campaigns & Products -----------------------------------------------------------------

class NamedIdForm(FlaskForm):
    """A campaign or product: the CRM's id and its name."""
    crm_id = StringField("ID", filters=[strip])
    name = StringField("Name", filters=[strip], validators=[Length(max=255)])

    def __init__(self, noun, *args, **kwargs):
        super().__init__(*args, prefix=noun.lower(), **kwargs)
        self.noun = noun
        self.crm_id.label.text = f"{noun} ID"
        self.name.label.text = f"{noun} Name"
        self.name.validators = [DataRequired(f"{noun} Name is required"), Length(max=255)]

    def checked_id(self, model):
        """The id as an int, or None with the error beside the field."""
        text = self.crm_id.data or ""
        if not re.fullmatch(r"[0-9]+", text) or not 0 < int(text) <= MAX_ID:
            self.crm_id.errors.append(f"{self.noun} ID must be a positive whole number")
            return None
        if db.session.get(model, int(text)) is not None:
            self.crm_id.errors.append(f"{self.noun} {int(text)} already exists")
            return None
        return int(text)


def _render_campaigns(campaign_form=None, product_form=None, status=200):
    return render_template(
        "routing/campaigns.html",
        campaigns=db.session.scalars(db.select(Campaign).order_by(Campaign.id)).all(),
        products=db.session.scalars(db.select(Product).order_by(Product.id)).all(),
        campaign_form=campaign_form or NamedIdForm("Campaign", formdata=None),
        product_form=product_form or NamedIdForm("Product", formdata=None)), status


@bp.route("/campaigns", strict_slashes=False)  # /campaigns/ too, as /profiles and /profiles/ both answer
def campaigns():
    return _render_campaigns()


def _add(model, noun):
    form = NamedIdForm(noun)
    valid = form.validate_on_submit()
    crm_id = form.checked_id(model)
    if valid and crm_id is not None:
        db.session.add(model(id=crm_id, name=form.name.data))
        audit.record(f"{noun.lower()}.add", noun.lower(), crm_id, form.name.data,
                     summary=f"{noun} {crm_id} added", after={"id": crm_id, "name": form.name.data})
        try:
            db.session.commit()
        except IntegrityError:  # the CRM's intake added the same id a moment ago
            db.session.rollback()
            form.crm_id.errors.append(f"{noun} {crm_id} already exists")
        else:
            flash(f"{noun} {crm_id} {form.name.data!r} added.", "success")
            return redirect(url_for(".campaigns"))
    forms = {"campaign_form": form} if noun == "Campaign" else {"product_form": form}
    return _render_campaigns(status=422, **forms)


@bp.post("/campaigns/add-campaign")
def add_campaign():
    return _add(Campaign, "Campaign")


@bp.post("/campaigns/add-product")
def add_product():
    return _add(Product, "Product")
