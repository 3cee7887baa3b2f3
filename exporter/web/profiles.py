"""Export Profiles: the list with Profile Routing beside it, profiles JSON download and upload,
and the profile edit page (General Settings, Field Mappings, the live preview)."""
import json
import logging
import re

from flask import Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from sqlalchemy.exc import SQLAlchemyError
from wtforms import BooleanField, IntegerField, SelectChoice, SelectField, StringField
from wtforms.validators import DataRequired, Length, ValidationError

from .. import catalog, customer_types, dispatch, mapping, profiles_io, security
from ..extensions import db
from ..models import Attempt, Campaign, Delivery, FieldMapping, FileRow, HistoryEntry, Product, Profile, utcnow
from . import admin_blueprint

log = logging.getLogger(__name__)


def choices(pairs):
    """Select choices from (value, label) pairs: WTForms 3.3 deprecates bare tuples."""
    return [SelectChoice(value=value, label=label) for value, label in pairs]


bp = admin_blueprint(Blueprint("profiles", __name__, url_prefix="/profiles"))


def strip(value):
    return value.strip() if isinstance(value, str) else value


def not_found_unless(condition):
    if not condition:
        abort(404)


# --- forms --------------------------------------------------------------------------------

def unique_profile_name(form, field):
    query = db.select(Profile.id).where(Profile.name == field.data)
    if form.profile_id is not None:
        query = query.where(Profile.id != form.profile_id)
    if db.session.scalar(query) is not None:
        raise ValidationError(f"A profile named {field.data!r} already exists")


def installed_export_type(form, field):
    if not field.data:
        raise ValidationError("Choose an Export Type")
    if dispatch.registry().get(field.data) is None:
        raise ValidationError(f"Export type {field.data!r} is not installed")


class MinutesField(IntegerField):
    """A whole number of minutes, 0 or more: '-5', '1.5' and '' are refused beside the field."""

    def process_formdata(self, valuelist):
        if not valuelist:
            return
        text = valuelist[0].strip()
        if not re.fullmatch(r"[0-9]+", text) or int(text) > profiles_io.MAX_DELAY_MINUTES:
            self.data = None
            raise ValueError(profiles_io.DELAY_MESSAGE)
        self.data = int(text)


class NewProfileForm(FlaskForm):
    name = StringField("Profile Name", filters=[strip], validators=[
        DataRequired("Profile Name is required"), Length(max=profiles_io.NAME_MAX_LENGTH), unique_profile_name])
    export_type = SelectField("Export Type", validate_choice=False, validators=[installed_export_type])

    def __init__(self, *args, profile_id=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.profile_id = profile_id
        self.export_type.choices = choices(dispatch.registry().choices())


class GeneralForm(NewProfileForm):
    """General Settings without the type's own fields (those are the type's settings_form)."""
    delay_minutes = MinutesField("Export Delay (minutes)", default=0,
                                 description="How long after the event the export is sent.")
    pci_documented = BooleanField("PCI Documentation", description=(
        "On file for this profile's receiver: only then may it map sensitive fields "
        "(card number, expiry, ACH)."))
    active = BooleanField("Active")
    skip_converted_partials = BooleanField("Skip partials that convert before the export fires")

    def __init__(self, *args, mappings=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.mappings = mappings

    def validate_pci_documented(self, field):
        problem = None if field.data else profiles_io.sensitive_problem(self.mappings, False)
        if problem:
            raise ValidationError(f"{problem}; delete that mapping before unticking PCI Documentation")


MAX_LENGTHS = profiles_io.MAPPING_MAX_LENGTHS


class MappingForm(FlaskForm):
    export_name = StringField("Export Name", filters=[strip], validators=[Length(max=MAX_LENGTHS["export_name"])])
    field = SelectField("Field", validate_choice=False)
    static_value = StringField("Static Value", validators=[Length(max=MAX_LENGTHS["static_value"])])
    format = SelectField("Format", validate_choice=False)
    format_arg = StringField("Format pattern", validators=[Length(max=MAX_LENGTHS["format_arg"])],
                             description="For Date pattern: strftime, e.g. %m/%d/%Y")
    default_value = StringField("Default when empty", validators=[Length(max=MAX_LENGTHS["default_value"])])

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.field.choices = choices(
            [(f.key, f"{f.key} (sensitive)" if f.sensitive else f.key) for f in catalog.FIELDS]
            + [(catalog.STATIC, "Static")])
        self.format.choices = choices(mapping.FORMATS.items())

    def mapping_data(self):
        return {key: getattr(self, key).data or "" for key in profiles_io.MAPPING_KEYS}


class UploadForm(FlaskForm):
    file = FileField("Profiles JSON", validators=[FileRequired("Choose a profiles JSON file")])


# --- the Export Profiles page -------------------------------------------------------------

def route_rows(profile):
    """The selected profile's routes as the Profile Routing panel shows them."""
    campaigns = dict(db.session.execute(db.select(Campaign.id, Campaign.name)).all())
    products = dict(db.session.execute(db.select(Product.id, Product.name)).all())

    def named(ids, names):
        return [f"{i} {names[i]}".strip() if i in names else str(i) for i in ids] or ["All"]

    return [{"route": r, "customer_types": [customer_types.label(t) for t in r.customer_types],
             "campaigns": named(r.campaigns, campaigns), "products": named(r.products, products)}
            for r in profile.routes]


def type_label(key):
    cls = dispatch.registry().get(key)
    return cls.label if cls else f"{key} (not installed)"


def masked(text, cls, settings):
    """A type should never show a secret; mask any that shows anyway. (Shorter ones cannot be
    told from ordinary text: masking "x" would mangle every "x" of the text.)"""
    secrets = [(settings.get(k), security.MASK) for k in cls.secret_settings if len(settings.get(k) or "") >= 4]
    return security.redact(text, secrets)


def target(profile):
    """Where a profile sends, in its type's own words (ExportType.describe); nothing when the
    type cannot say."""
    cls = dispatch.registry().get(profile.export_type)
    if cls is None:
        return ""
    try:
        settings = dispatch.plain_settings(profile)  # the type describes what it would send to
        text = str(cls(settings).describe() or "")
    except Exception:  # a plugin's describe must not break the list
        log.warning("the %s type could not describe profile %s", cls.key, profile.id, exc_info=True)
        return ""
    return masked(text, cls, settings)


def _render_index(create_form=None, upload_form=None, status=200):
    profiles = db.session.scalars(db.select(Profile).order_by(Profile.name)).all()
    wanted = request.args.get("profile")
    if wanted is not None:
        selected = next((p for p in profiles if str(p.id) == wanted), None)
        not_found_unless(selected)
    else:
        selected = profiles[0] if profiles else None
    return render_template(
        "profiles/index.html", profiles=profiles, selected=selected,
        routes=route_rows(selected) if selected else [], type_label=type_label, target=target,
        create_form=create_form or NewProfileForm(formdata=None),
        upload_form=upload_form or UploadForm(formdata=None)), status


@bp.route("/")
def index():
    return _render_index()


@bp.post("/new")
def create():
    form = NewProfileForm()
    if not form.validate_on_submit():
        return _render_index(create_form=form, status=422)
    cls = dispatch.registry().get(form.export_type.data)
    defaults = settings_to_store(cls, cls.settings_form(), {}, type_changed=True)
    profile = Profile(name=form.name.data, export_type=cls.key, settings=defaults, delay_minutes=0,
                      pci_documented=False, active=True, skip_converted_partials=True)
    db.session.add(profile)
    db.session.commit()
    flash(f"Profile {profile.name!r} created: now set its {cls.label} settings and field mappings.", "success")
    return redirect(url_for(".edit", profile_id=profile.id))


@bp.get("/export.json")
def download():
    body = json.dumps(profiles_io.export_all(dispatch.registry()), indent=2, ensure_ascii=False) + "\n"
    return current_app.response_class(body, mimetype="application/json", headers={
        "Content-Disposition": "attachment; filename=exporter-profiles.json"})


@bp.post("/import")
def upload():
    form = UploadForm()
    if form.validate_on_submit():
        problem = None
        try:
            data = json.loads(form.file.data.read().decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError) as exc:
            problem = f"Not a JSON file: {exc}"
        else:
            try:
                created, updated = profiles_io.import_all(data, dispatch.registry())
            except profiles_io.ImportProblem as exc:
                problem = str(exc)
            except SQLAlchemyError as exc:
                problem = f"The database refused the file: {type(exc).__name__}"
        if problem is None:
            flash(f"Profiles imported: {created} created, {updated} updated.", "success")
            return redirect(url_for(".index"))
        db.session.rollback()
        form.file.errors.append(problem)
    return _render_index(upload_form=form, status=422)


# --- the profile edit page ----------------------------------------------------------------

def visible_settings(profile, cls):
    """The stored settings a form may show: never a secret."""
    return {k: v for k, v in (profile.settings or {}).items() if k not in cls.secret_settings}


def settings_to_store(cls, form, stored, type_changed):
    """The type's settings form as stored: a secret left blank keeps the stored one, encrypted."""
    new_secrets = {key: form[key].data for key in cls.secret_settings if key in form}
    return profiles_io.merge_secrets(cls, profiles_io.settings_from_form(cls, form), new_secrets, stored,
                                     not type_changed, current_app.config["SECRET_KEY"])


def validate_settings(form, cls, stored, type_changed):
    form.validate()
    for key in cls.secret_settings:  # blank means "keep the stored secret", which is there
        if key in form and not form[key].data and not type_changed and stored.get(key):
            form[key].errors = []
    security.refuse_private_target(form, current_app.config["ALLOW_PRIVATE_TARGETS"])  # at save, not only at send
    return not any(f.errors for f in form)


def preview(profile):
    """(text, problem): what the profile would send for the sample order."""
    cls = dispatch.registry().get(profile.export_type)
    if cls is None:
        return None, f"Export type {profile.export_type!r} is not installed."
    try:
        renderer = mapping.compile(profile.mappings)
    except mapping.MappingError as exc:
        return None, str(exc)
    if not renderer.columns:
        return None, "Add a field mapping to see what this profile sends."
    row = renderer(catalog.sample_record())
    try:
        settings = dispatch.plain_settings(profile)  # the type previews as it would send
        text = cls(settings).preview(renderer.columns, row)
    except Exception as exc:  # a plugin's preview must not break the page
        return None, f"The {cls.label} type could not make a preview: {exc}"
    return masked(text, cls, settings), None


def _render_edit(profile, general=None, settings_form=None, mapping_form=None, mapping_action=None,
                 status=200):
    cls = dispatch.registry().get(general.export_type.data if general else profile.export_type)
    if general is None:
        general = GeneralForm(formdata=None, obj=profile, profile_id=profile.id)
    if settings_form is None and cls is not None:
        settings_form = cls.settings_form(data=visible_settings(profile, cls), prefix="settings-")
    dialog_open = mapping_form is not None
    wanted = request.args.get("mapping")
    if mapping_form is None and wanted is not None and request.method == "GET":
        if wanted == "new":
            mapping_form, dialog_open = MappingForm(formdata=None), True
        else:
            m = _mapping_or_404(profile, int(wanted) if re.fullmatch(r"[0-9]{1,18}", wanted) else -1)
            mapping_form, dialog_open = MappingForm(formdata=None, obj=m), True
            mapping_action = url_for(".edit_mapping", profile_id=profile.id, mapping_id=m.id)
    text, problem = preview(profile)
    stored_type = dispatch.registry().get(profile.export_type)
    return render_template(
        "profiles/edit.html", profile=profile, form=general, settings_form=settings_form,
        export_type=cls, stored_type=stored_type, type_label=type_label,
        secret_stored={k for k in (cls.secret_settings if cls else ())
                       if (profile.settings or {}).get(k) and profile.export_type == cls.key},
        mapping_form=mapping_form or MappingForm(formdata=None), dialog_open=dialog_open,
        mapping_action=mapping_action or url_for(".add_mapping", profile_id=profile.id),
        field_labels={f.key: f for f in catalog.FIELDS}, formats=mapping.FORMATS,
        preview=text, preview_problem=problem), status


@bp.route("/<int:profile_id>", methods=["GET", "POST"])
def edit(profile_id):
    profile = db.get_or_404(Profile, profile_id)
    if request.method == "GET":
        return _render_edit(profile)
    general = GeneralForm(profile_id=profile.id, mappings=profile.mappings)
    cls = dispatch.registry().get(general.export_type.data)
    stored = profile.settings or {}
    type_changed = general.export_type.data != profile.export_type
    if "refresh_type" in request.form:  # the Export Type changed: show that type's own fields
        settings_form = None
        if cls is not None:
            settings_form = cls.settings_form(data=None if type_changed else visible_settings(profile, cls),
                                              prefix="settings-")
        return _render_edit(profile, general=general, settings_form=settings_form)
    general_ok = general.validate_on_submit()
    settings_form = cls.settings_form(formdata=request.form, prefix="settings-") if cls else None
    settings_ok = settings_form is not None and validate_settings(settings_form, cls, stored, type_changed)
    if not (general_ok and settings_ok):
        return _render_edit(profile, general=general, settings_form=settings_form, status=422)
    profile.settings = settings_to_store(cls, settings_form, stored, type_changed)
    profile.name = general.name.data
    profile.export_type = cls.key
    profile.delay_minutes = general.delay_minutes.data
    profile.pci_documented = general.pci_documented.data
    profile.active = general.active.data
    profile.skip_converted_partials = general.skip_converted_partials.data
    db.session.commit()
    flash("General Settings saved.", "success")
    return redirect(url_for(".edit", profile_id=profile.id))


@bp.get("/<int:profile_id>/preview")
def preview_json(profile_id):
    profile = db.get_or_404(Profile, profile_id)
    text, problem = preview(profile)
    return jsonify({"preview": text, "problem": problem})


@bp.post("/<int:profile_id>/delete")
def delete(profile_id):
    """Delete a profile with what hangs on it (as the schema's ON DELETE rules, on SQLite too)."""
    profile = db.get_or_404(Profile, profile_id)
    deliveries = db.select(Delivery.id).where(Delivery.profile_id == profile.id)
    route_ids = [r.id for r in profile.routes]
    db.session.execute(db.update(HistoryEntry).where(HistoryEntry.delivery_id.in_(deliveries))
                       .values(delivery_id=None))
    db.session.execute(db.delete(Attempt).where(
        Attempt.delivery_id.in_(deliveries) | (Attempt.profile_id == profile.id)))
    db.session.execute(db.delete(Delivery).where(Delivery.profile_id == profile.id))
    if route_ids:
        db.session.execute(db.delete(FileRow).where(FileRow.route_id.in_(route_ids)))
    name = profile.name
    db.session.delete(profile)
    db.session.commit()
    flash(f"Profile {name!r} deleted.", "success")
    return redirect(url_for(".index"))


# --- Field Mappings -----------------------------------------------------------------------

def _mapping_or_404(profile, mapping_id):
    m = db.session.get(FieldMapping, mapping_id)
    not_found_unless(m is not None and m.profile_id == profile.id)
    return m


def _mapping_checks(form, profile):
    """The form's own checks, then the mapping engine's and the PCI rule, each beside its field."""
    ok = form.validate_on_submit()
    data = form.mapping_data()
    try:
        mapping.validate([data])
    except mapping.MappingError as exc:
        getattr(form, exc.field).errors.append(exc.message)
        return False
    problem = profiles_io.sensitive_problem([data], profile.pci_documented)
    if problem:
        form.field.errors.append(problem)
        return False
    return ok


def _mappings_changed(profile, order=None):
    """Renumber (in the given order, else the list's); the profile was updated now."""
    for i, m in enumerate(order if order is not None else profile.mappings):
        m.position = i
    profile.updated_at = utcnow()
    db.session.commit()


def _back_to_mappings(profile):
    return redirect(url_for(".edit", profile_id=profile.id) + "#field-mappings")


@bp.post("/<int:profile_id>/mappings")
def add_mapping(profile_id):
    profile = db.get_or_404(Profile, profile_id)
    form = MappingForm()
    if not _mapping_checks(form, profile):
        return _render_edit(profile, mapping_form=form, status=422)
    profile.mappings.append(FieldMapping(**form.mapping_data()))
    _mappings_changed(profile)
    flash(f"Mapping {form.export_name.data!r} added.", "success")
    return _back_to_mappings(profile)


@bp.post("/<int:profile_id>/mappings/<int:mapping_id>")
def edit_mapping(profile_id, mapping_id):
    profile = db.get_or_404(Profile, profile_id)
    m = _mapping_or_404(profile, mapping_id)
    form = MappingForm()
    if not _mapping_checks(form, profile):
        action = url_for(".edit_mapping", profile_id=profile.id, mapping_id=m.id)
        return _render_edit(profile, mapping_form=form, mapping_action=action, status=422)
    for key, value in form.mapping_data().items():
        setattr(m, key, value)
    _mappings_changed(profile)
    flash(f"Mapping {m.export_name!r} saved.", "success")
    return _back_to_mappings(profile)


@bp.post("/<int:profile_id>/mappings/<int:mapping_id>/delete")
def delete_mapping(profile_id, mapping_id):
    profile = db.get_or_404(Profile, profile_id)
    m = _mapping_or_404(profile, mapping_id)
    profile.mappings.remove(m)
    _mappings_changed(profile)
    flash(f"Mapping {m.export_name!r} deleted.", "success")
    return _back_to_mappings(profile)


@bp.post("/<int:profile_id>/mappings/<int:mapping_id>/<any(up, down):direction>")
def move_mapping(profile_id, mapping_id, direction):
    profile = db.get_or_404(Profile, profile_id)
    m = _mapping_or_404(profile, mapping_id)
    items = list(profile.mappings)
    i = items.index(m)
    j = i - 1 if direction == "up" else i + 1
    if 0 <= j < len(items):
        items[i], items[j] = items[j], items[i]
        _mappings_changed(profile, items)
    return _back_to_mappings(profile)
