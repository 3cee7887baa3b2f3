"""Field Mappings of a profile: add, edit, delete and reorder, in a dialog on the profile edit page.

Without JavaScript `?mapping=new|<id>` opens the dialog server-side; a mapping with a problem
re-renders the edit page with the dialog open and the error beside its field."""

from flask import Blueprint, current_app, flash, redirect, request, url_for
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.validators import Length

from .. import catalog, mapping, profiles
from ..extensions import db
from ..models import FieldMapping, Profile, utcnow
from . import admin_blueprint, choices, not_found_unless, strip, whole_number
from .profiles import render_edit

bp = admin_blueprint(Blueprint("mappings", __name__, url_prefix="/profiles/<int:profile_id>/mappings"))
bp.add_app_template_global(profiles.shown_static_value, "shown_static_value")
bp.add_app_template_global(profiles.is_stored_secret, "is_stored_secret")

MAX_LENGTHS = profiles.MAPPING_MAX_LENGTHS
# Formats that take a pattern: only they show the Format pattern field.
FORMATS_WITH_PATTERN = ("date",)


SECRET_PLACEHOLDER = "Stored encrypted, not shown: leave blank to keep it"


class MappingForm(FlaskForm):
    export_name = StringField("Export Name", filters=[strip], validators=[Length(max=MAX_LENGTHS["export_name"])])
    field = SelectField("Field", validate_choice=False)
    static_value = StringField("Static Value", validators=[Length(max=MAX_LENGTHS["static_value"])],
                               description="A header: mapping's value, or one whose Export Name is credential-like "
                                           "(password, key, token, secret...), is a secret: stored encrypted, "
                                           "shown as ****.")
    format = SelectField("Format", validate_choice=False)
    format_arg = StringField("Format pattern", validators=[Length(max=MAX_LENGTHS["format_arg"])],
                             description="strftime, e.g. %m/%d/%Y")
    default_value = StringField("Default when empty", validators=[Length(max=MAX_LENGTHS["default_value"])])

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.field.choices = choices(
            [(f.key, f"{f.key} (sensitive)" if f.sensitive else f.key) for f in catalog.FIELDS]
            + [(catalog.STATIC, "Static")])
        self.format.choices = choices(mapping.FORMATS.items())

    def mapping_data(self):
        return {key: getattr(self, key).data or "" for key in profiles.MAPPING_KEYS}

    def keep_secret(self, stored_value):
        """Editing a mapping whose Static Value is a secret: the field stays empty, a placeholder says why."""
        if profiles.is_stored_secret(stored_value):
            self.static_value.data = ""
            self.static_value.render_kw = {"placeholder": SECRET_PLACEHOLDER}


def _mapping_or_404(profile, mapping_id):
    m = db.session.get(FieldMapping, mapping_id)
    not_found_unless(m is not None and m.profile_id == profile.id)
    return m


def dialog(profile, form=None, mapping_id=None, open_=False):
    """What the edit page needs to draw the mapping dialog."""
    action = (url_for("mappings.edit", profile_id=profile.id, mapping_id=mapping_id) if mapping_id
              else url_for("mappings.add", profile_id=profile.id))
    return {"mapping_form": form or MappingForm(formdata=None), "mapping_action": action,
            "editing": mapping_id, "dialog_open": open_, "formats_with_pattern": FORMATS_WITH_PATTERN,
            "secret_placeholder": SECRET_PLACEHOLDER}


def dialog_from_query(profile):
    """?mapping=new or ?mapping=<id> opens the dialog without JavaScript."""
    wanted = request.args.get("mapping") if request.method == "GET" else None
    if wanted is None:
        return dialog(profile)
    if wanted == "new":
        return dialog(profile, open_=True)
    # At most 18 ASCII digits: a 64-bit id, never a 500 for a longer one or a '²'.
    m = _mapping_or_404(profile, whole_number(wanted) or -1)
    form = MappingForm(formdata=None, obj=m)
    form.keep_secret(m.static_value)
    return dialog(profile, form, m.id, open_=True)


def unsaved_mappings(profile):
    """(the profile's mappings with the dialog's unsaved one in its place, problem): for the
    live preview. `editing` is "new", a mapping id, or absent when the dialog is closed."""
    items = [{key: getattr(m, key) for key in profiles.MAPPING_KEYS} for m in profile.mappings]
    editing = request.form.get("editing", "")
    if not editing:
        return items, None
    data = MappingForm(formdata=request.form).mapping_data()
    if editing == "new":
        return items + [data], None
    ids = [m.id for m in profile.mappings]
    if whole_number(editing) not in ids:
        return items, None
    index = ids.index(whole_number(editing))
    if not data["static_value"] and profiles.is_stored_secret(items[index]["static_value"]):
        data["static_value"] = items[index]["static_value"]  # blank keeps the stored secret (shown masked)
    items[index] = data
    return items, None


def _mapping_checks(form, profile, stored=None):
    """The mapping as stored (a secret Static Value encrypted; blank keeps stored, the Static Value
    of the mapping edited), or None: the form's own checks, then the mapping engine's and the PCI
    rule, each beside its field."""
    ok = form.validate_on_submit()
    try:
        data = profiles.mapping_to_store(form.mapping_data(), stored, current_app.config["SECRET_KEY"])
        mapping.validate([data])
    except mapping.MappingError as exc:
        getattr(form, exc.field).errors.append(exc.message)
        return None
    problem = profiles.sensitive_problem([data], profile.pci_documented)
    if problem:
        form.field.errors.append(problem)
        return None
    return data if ok else None


def _mappings_changed(profile, action, before, summary, order=None):
    """Renumber (in the given order, else the list's); the profile was updated now; the audit
    entry (before: the profile's snapshot before the change)."""
    for i, m in enumerate(order if order is not None else profile.mappings):
        m.position = i
    profile.updated_at = utcnow()
    profiles.record_change(action, profile, before, summary)
    db.session.commit()


def _back_to_mappings(profile):
    return redirect(url_for("profiles.edit", profile_id=profile.id) + "#field-mappings")


@bp.post("")
def add(profile_id):
    profile = db.get_or_404(Profile, profile_id)
    form = MappingForm()
    data = _mapping_checks(form, profile)
    if data is None:
        return render_edit(profile, dialog=dialog(profile, form, open_=True), status=422)
    before = profiles.snapshot(profile)
    profile.mappings.append(FieldMapping(**data))
    _mappings_changed(profile, "mapping.add", before, f"Mapping {form.export_name.data!r} added")
    flash(f"Mapping {form.export_name.data!r} added.", "success")
    return _back_to_mappings(profile)


@bp.post("/<int:mapping_id>")
def edit(profile_id, mapping_id):
    profile = db.get_or_404(Profile, profile_id)
    m = _mapping_or_404(profile, mapping_id)
    form = MappingForm()
    data = _mapping_checks(form, profile, m.static_value)
    if data is None:
        form.keep_secret(m.static_value if not form.static_value.data else "")
        return render_edit(profile, dialog=dialog(profile, form, m.id, open_=True), status=422)
    before = profiles.snapshot(profile)
    for key, value in data.items():
        setattr(m, key, value)
    _mappings_changed(profile, "mapping.edit", before, f"Mapping {m.export_name!r} saved")
    flash(f"Mapping {m.export_name!r} saved.", "success")
    return _back_to_mappings(profile)


@bp.post("/<int:mapping_id>/delete")
def delete(profile_id, mapping_id):
    profile = db.get_or_404(Profile, profile_id)
    m = _mapping_or_404(profile, mapping_id)
    before = profiles.snapshot(profile)
    profile.mappings.remove(m)
    _mappings_changed(profile, "mapping.delete", before, f"Mapping {m.export_name!r} deleted")
    flash(f"Mapping {m.export_name!r} deleted.", "success")
    return _back_to_mappings(profile)


@bp.post("/<int:mapping_id>/<any(up, down):direction>")
def move(profile_id, mapping_id, direction):
    profile = db.get_or_404(Profile, profile_id)
    m = _mapping_or_404(profile, mapping_id)
    items = list(profile.mappings)
    i = items.index(m)
    j = i - 1 if direction == "up" else i + 1
    if 0 <= j < len(items):
        before = profiles.snapshot(profile)
        items[i], items[j] = items[j], items[i]
        _mappings_changed(profile, "mapping.move", before, f"Mapping {m.export_name!r} moved {direction}", items)
    return _back_to_mappings(profile)
