"""Export Profiles: the list with Profile Routing beside it, profiles JSON download and upload,
and the profile edit page (General Settings, the live preview). Field Mappings are the
mappings blueprint's, Profile Routing the routing blueprint's; the rules are exporter.profiles'.

Over 400 lines: the edit page's one form spans General Settings, the type's own settings and
the live preview, which must read the page's unsaved values exactly as a save would.
"""
import json
import re

from flask import Blueprint, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from sqlalchemy.exc import SQLAlchemyError
from wtforms import BooleanField, IntegerField, SelectField, SelectMultipleField, StringField, widgets
from wtforms.validators import DataRequired, Length, ValidationError

from .. import audit, catalog, mapping, security, windows
from ..profiles import customer_types, rules as profiles, as_code as profiles_io
from ..delivery import dispatch, schedule
from ..files import daily_files
from ..export_types import DAILY_FILE
from ..extensions import db
from ..models import Campaign, Product, Profile
from . import admin_blueprint, choices, mapping_dialog, not_found_unless, strip

bp = admin_blueprint(Blueprint("profiles", __name__, url_prefix="/profiles"))

# Most profiles, and the model's own flow, are postbacks: the new-profile form offers it first.
PREFERRED_TYPE = "postback"


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
        if not re.fullmatch(r"[0-9]+", text) or int(text) > profiles.MAX_DELAY_MINUTES:
            self.data = None
            raise ValueError(profiles.DELAY_MESSAGE)
        self.data = int(text)


class DaysField(SelectMultipleField):
    """The send window's days as checkboxes; stored as "mon,tue,..." (none stored: every day ticked)."""
    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()

    def process_data(self, value):
        self.data = value.split(",") if isinstance(value, str) and value else list(windows.DAYS)


class TimeOfDayField(StringField):
    """HH:MM, kept as minutes after midnight; empty is None."""

    def process_formdata(self, valuelist):
        text = valuelist[0].strip() if valuelist else ""
        self.data = None
        if text:
            self.data = windows.parse_time(text)  # its ValueError is the error beside the field

    def _value(self):
        return self.raw_data[0] if self.raw_data else windows.format_time(self.data)


class CapField(StringField):
    """A whole number of sends a day, or empty for no cap."""

    def process_formdata(self, valuelist):
        text = valuelist[0].strip() if valuelist else ""
        self.data = None
        if text:
            if not re.fullmatch(r"[0-9]+", text) or not 1 <= int(text) <= windows.MAX_DAILY_CAP:
                raise ValueError(windows.CAP_MESSAGE)
            self.data = int(text)

    def _value(self):
        return self.raw_data[0] if self.raw_data else ("" if self.data is None else str(self.data))


class DedupeDaysField(CapField):
    """Duplicate suppression's days: a whole number from 1 to 365, or empty for none."""

    def process_formdata(self, valuelist):
        text = valuelist[0].strip() if valuelist else ""
        self.data = None
        if text:
            if not re.fullmatch(r"[0-9]+", text) or not 1 <= int(text) <= profiles.MAX_DEDUPE_DAYS:
                raise ValueError(profiles.DEDUPE_MESSAGE)
            self.data = int(text)


def time_zone_name(form, field):
    if len(field.data or "") > windows.MAX_ZONE_LENGTH:
        return  # Length says so
    try:
        windows.zone(field.data)
    except ValueError as exc:
        raise ValidationError(str(exc))


class WindowFields:
    """General Settings' Send Window and Daily Cap (issue 12)."""
    window_days = DaysField("Days", choices=choices(windows.DAY_LABELS.items()))
    window_start = TimeOfDayField("From", description="HH:MM, e.g. 08:00; empty From and To: any time")
    window_end = TimeOfDayField("To", description="HH:MM, e.g. 20:00; at or before From: ends the next day")
    window_time_zone = StringField("Time Zone", default="UTC", filters=[strip], validators=[
        Length(max=windows.MAX_ZONE_LENGTH, message=windows.ZONE_LENGTH_MESSAGE), time_zone_name],
                                   description="The window's and the daily cap's: type to search, e.g. New_York")
    daily_cap = CapField("Daily Cap", description=(
        "At most this many exports a day of the Time Zone; empty: no cap. It counts from when it is set: "
        "exports sent earlier that day do not count."))
    over_cap = SelectField("Over the cap", choices=choices(windows.OVER_CAP.items()), default="wait")

    def validate_window(self):
        """The window's fields together: both times or neither, a day, not a whole day."""
        if self.window_start.errors or self.window_end.errors:
            return False
        problems = windows.check(self.window_days.data, self.window_start.data, self.window_end.data)
        for name, message in problems.items():
            self[name].errors.append(message)
        return not problems

    def window_columns(self):
        columns = {name: self[name].data for name in windows.COLUMNS if name != "window_days"}
        # Days mean something only with From and To: without a window they are stored empty, as
        # the profiles JSON stores them, so saving the form untouched changes nothing.
        no_window = columns["window_start"] is None and columns["window_end"] is None
        columns["window_days"] = "" if no_window else windows.parse_days(self.window_days.data or [])
        return columns


class PartnerFields:
    """General Settings' Reversal Of and Duplicate Suppression (issue 24)."""
    reversal_of_id = SelectField("Reversal of", coerce=lambda v: int(v) if v not in (None, "", "None") else None,
                                 validate_choice=False,
                                 description="Send the reversal of that profile's export of the same order when a "
                                             "refund, chargeback or cancel arrives (no routes needed): map "
                                             "original.captured_id, original.sent_at, original.<Export Name>")
    reversal_types = DaysField("Reverse on", choices=choices((t, customer_types.label(t)) for t in profiles.REVERSAL_TYPES))
    dedupe_days = DedupeDaysField("Do not send the same customer again within (days)",
                           description="Empty: no duplicate suppression")
    dedupe_by = SelectField("Same customer by", validate_choice=False, default="email")

    def setup_partner_fields(self, profile_id):
        others = db.session.execute(db.select(Profile.id, Profile.name).where(Profile.id != profile_id)
                                    .order_by(Profile.name)).all()
        self.reversal_of_id.choices = choices([("", "No (not a reversal)")] + [(str(i), n) for i, n in others])
        self.dedupe_by.choices = choices(profiles.dedupe_choices())
        if not self.reversal_types.data or self.reversal_types.data == list(windows.DAYS):
            self.reversal_types.data = list(profiles.DEFAULT_REVERSAL_TYPES) if self.reversal_types.raw_data is None else []

    def validate_partners(self, cls):
        other = db.session.get(Profile, self.reversal_of_id.data) if self.reversal_of_id.data else None
        if self.reversal_of_id.data and other is None:
            self.reversal_of_id.errors.append("No such profile")
            return False
        problem = profiles.reversal_problem(self.reversal_types.data or [], other, self.name.data, cls)
        if problem is None and self.dedupe_days.data is not None:
            problem = profiles.dedupe_problem(self.dedupe_days.data, self.dedupe_by.data)
            problem = problem and ("dedupe_" + problem[0], problem[1])
        if problem:
            self[problem[0] if problem[0] != "reversal_of" else "reversal_of_id"].errors.append(problem[1])
        return problem is None

    def partner_columns(self):
        reversal = self.reversal_of_id.data
        return {"reversal_of_id": reversal,
                "reversal_types": ",".join(self.reversal_types.data or []) if reversal else "",
                "dedupe_days": self.dedupe_days.data, "dedupe_by": self.dedupe_by.data or "email"}


class NewProfileForm(FlaskForm):
    name = StringField("Profile Name", filters=[strip], validators=[
        DataRequired("Profile Name is required"), Length(max=profiles.NAME_MAX_LENGTH), unique_profile_name])
    export_type = SelectField("Export Type", validate_choice=False, validators=[installed_export_type])

    def __init__(self, *args, profile_id=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.profile_id = profile_id
        self.export_type.choices = choices(dispatch.registry().choices())


class GeneralForm(PartnerFields, WindowFields, NewProfileForm):
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
        self.setup_partner_fields(kwargs.get("profile_id"))

    def validate(self, extra_validators=None):
        valid = super().validate(extra_validators)
        valid = self.validate_window() and valid
        return self.validate_partners(dispatch.registry().get(self.export_type.data)) and valid

    def validate_pci_documented(self, field):
        problem = None if field.data else profiles.sensitive_problem(self.mappings, False)
        if problem:
            raise ValidationError(f"{problem}; delete that mapping before unticking PCI Documentation")


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


def _new_profile_defaults():
    installed = dispatch.registry().get(PREFERRED_TYPE) is not None
    return {"export_type": PREFERRED_TYPE} if installed else {}


def _render_index(create_form=None, upload_form=None, status=200):
    rows = db.session.scalars(db.select(Profile).order_by(Profile.name)).all()
    wanted = request.args.get("profile")
    if wanted is not None:
        selected = next((p for p in rows if str(p.id) == wanted), None)
        not_found_unless(selected)
    else:
        selected = rows[0] if rows else None
    return render_template(
        "profiles/index.html", profiles=rows, selected=selected,
        routes=route_rows(selected) if selected else [], type_label=type_label, target=profiles.describe,
        create_form=create_form or NewProfileForm(formdata=None, data=_new_profile_defaults()),
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
    profiles.record_change("profile.create", profile, None, f"Profile {profile.name!r} created")
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
                with audit.acting_as(current_user.email, "upload"):
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

def settings_to_store(cls, form, stored, type_changed):
    """The type's settings form as stored: a secret left blank keeps the stored one, encrypted; a
    URL's credentials are encrypted apart (**** in it keeps the stored one)."""
    key = current_app.config["SECRET_KEY"]
    new_secrets = {name: form[name].data for name in cls.secret_settings if name in form}
    settings = profiles.merge_secrets(cls, profiles.settings_from_form(cls, form), new_secrets, stored,
                                      not type_changed, key)
    return profiles.protect_urls(cls, settings, {} if type_changed else stored, key)


def validate_settings(form, cls, stored, type_changed):
    form.validate()
    for key in cls.secret_settings:  # blank means "keep the stored secret", which is there
        if key in form and not form[key].data and not type_changed and stored.get(key):
            form[key].errors = []
    security.refuse_private_target(form, current_app.config["ALLOW_PRIVATE_TARGETS"])  # at save, not only at send
    if not any(f.errors for f in form):
        try:  # **** in a URL where the stored one has no credential
            settings_to_store(cls, form, stored, type_changed)
        except profiles.SettingProblem as problem:
            form[problem.setting].errors = [str(problem)]
    return not any(f.errors for f in form)


def render_edit(profile, general=None, settings_form=None, dialog=None, status=200):
    """The edit page; the mappings blueprint passes its dialog (open, with errors beside fields)."""
    dialog = dialog or mapping_dialog.dialog_from_query(profile)
    cls = dispatch.registry().get(general.export_type.data if general else profile.export_type)
    if general is None:
        general = GeneralForm(formdata=None, obj=profile, profile_id=profile.id)
    if settings_form is None and cls is not None:
        settings_form = cls.settings_form(data=profiles.visible_settings(profile, cls), prefix="settings-")
    text, problem = profiles.preview(profile)
    return render_template(
        "profiles/edit.html", profile=profile, form=general, settings_form=settings_form,
        export_type=cls, stored_type=dispatch.registry().get(profile.export_type), type_label=type_label,
        secret_stored={k for k in (cls.secret_settings if cls else ())
                       if (profile.settings or {}).get(k) and profile.export_type == cls.key},
        **dialog,
        field_labels={f.key: f for f in catalog.FIELDS}, formats=mapping.FORMATS,
        preview=text, preview_problem=problem, next_files=daily_files.next_files(profile),
        time_zones=windows.zone_names()), status


@bp.route("/<int:profile_id>", methods=["GET", "POST"])
def edit(profile_id):
    profile = db.get_or_404(Profile, profile_id)
    if request.method == "GET":
        return render_edit(profile)
    general = GeneralForm(profile_id=profile.id, mappings=profile.mappings)
    cls = dispatch.registry().get(general.export_type.data)
    stored = profile.settings or {}
    type_changed = general.export_type.data != profile.export_type
    if "refresh_type" in request.form:  # the Export Type changed: show that type's own fields
        settings_form = None
        if cls is not None:
            data = None if type_changed else profiles.visible_settings(profile, cls)
            settings_form = cls.settings_form(data=data, prefix="settings-")
        return render_edit(profile, general=general, settings_form=settings_form)
    general_ok = general.validate_on_submit()
    settings_form = cls.settings_form(formdata=request.form, prefix="settings-") if cls else None
    settings_ok = settings_form is not None and validate_settings(settings_form, cls, stored, type_changed)
    if not (general_ok and settings_ok):
        flash("General Settings not saved: see the errors below.", "error")
        return render_edit(profile, general=general, settings_form=settings_form, status=422)
    before, old_window = profiles.snapshot(profile), windows.of(profile)
    profile.settings = settings_to_store(cls, settings_form, stored, type_changed)
    profile.name = general.name.data
    profile.export_type = cls.key
    profile.delay_minutes = general.delay_minutes.data
    profile.pci_documented = general.pci_documented.data
    profile.active = general.active.data
    profile.skip_converted_partials = general.skip_converted_partials.data
    for column, value in {**general.window_columns(), **general.partner_columns()}.items():
        setattr(profile, column, value)
    if cls.schedule == DAILY_FILE and profile.settings.get("time_zone"):
        profile.window_time_zone = profile.settings["time_zone"]  # one Time Zone on the page: the file's
    due = schedule.rewindow(profile, old_window)  # "applies at once, to deliveries already waiting too"
    profiles.record_change("profile.update", profile, before, "General Settings saved")
    db.session.commit()
    if due:
        schedule.wake(due)
    flash("General Settings saved.", "success")
    return redirect(url_for(".edit", profile_id=profile.id))


@bp.route("/<int:profile_id>/preview", methods=["GET", "POST"])
def preview(profile_id):
    """GET: the stored profile's preview (the page asks again when it comes back from history).
    POST: the preview of the page's unsaved values. One rule for both, so that an id past 64 bits
    is a 404 for either method, not a 405."""
    profile = db.get_or_404(Profile, profile_id)
    if request.method == "POST":
        return _live_preview(profile)
    text, problem = profiles.preview(profile)
    return jsonify({"preview": text, "problem": problem})


def _live_preview(profile):
    """General Settings, the type's settings and the mapping being edited in the dialog, as the
    page has them now. Nothing is stored."""
    general = GeneralForm(profile_id=profile.id)  # CSRFProtect has checked the token already
    cls = dispatch.registry().get(general.export_type.data)
    if cls is None:
        return jsonify({"preview": None, "problem": f"Export type {general.export_type.data!r} is not installed."})
    settings, problem = _unsaved_settings(profile, cls)
    if problem is None:
        items, problem = mapping_dialog.unsaved_mappings(profile)
    if problem is None:
        text, problem = profiles.sample(cls, settings, items)
        return jsonify({"preview": text, "problem": problem})
    return jsonify({"preview": None, "problem": problem})


def _unsaved_settings(profile, cls):
    """(plain settings, problem) from the page's settings fields; a blank secret is the stored one."""
    form = cls.settings_form(formdata=request.form, prefix="settings-")
    form.validate()
    for f in form:
        if f.errors and f.short_name not in cls.secret_settings:
            return None, f"{f.label.text}: {f.errors[0]}"
    settings = {f.short_name: profiles.jsonable(f.data) for f in form if f.type != "CSRFTokenField"}
    if profile.export_type == cls.key:
        try:
            stored = dispatch.plain_settings(profile, reveal_urls=False)
        except ValueError:
            stored = {}
        for key in cls.secret_settings:
            if not settings.get(key) and stored.get(key):
                settings[key] = stored[key]
    for name in dispatch.url_settings(cls):  # a URL typed with credentials shows them masked
        if isinstance(settings.get(name), str):
            settings[name] = security.masked_url(settings[name], dispatch.secret_names())[0]
    return settings, None


@bp.post("/<int:profile_id>/delete")
def delete(profile_id):
    profile = db.get_or_404(Profile, profile_id)
    name = profile.name
    profiles.delete(profile)
    flash(f"Profile {name!r} deleted.", "success")
    return redirect(url_for(".index"))
