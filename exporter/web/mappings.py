"""Field Mappings of a profile: add, edit, delete and reorder, in a dialog on the profile edit page.

Without JavaScript `?mapping=new|<id>` opens the dialog server-side; a mapping with a problem
re-renders the edit page with the dialog open and the error beside its field."""

from flask import Blueprint, flash, redirect, request, url_for
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.validators import Length

from .. import catalog, mapping, profiles
from ..extensions import db
from ..models import FieldMapping, Profile, utcnow
from . import admin_blueprint, choices, not_found_unless, strip, whole_number
from .profiles import render_edit

bp = admin_blueprint(Blueprint("mappings", __name__, url_prefix="/profiles/<int:profile_id>/mappings"))

MAX_LENGTHS = profiles.MAPPING_MAX_LENGTHS
# Formats that take a pattern: only they show the Format pattern field.
FORMATS_WITH_PATTERN = ("date",)


class MappingForm(FlaskForm):
    export_name = StringField("Export Name", filters=[strip], validators=[Length(max=MAX_LENGTHS["export_name"])])
    field = SelectField("Field", validate_choice=False)
    static_value = StringField("Static Value", validators=[Length(max=MAX_LENGTHS["static_value"])])
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


def _mapping_or_404(profile, mapping_id):
    m = db.session.get(FieldMapping, mapping_id)
    not_found_unless(m is not None and m.profile_id == profile.id)
    return m


def dialog(profile, form=None, mapping_id=None, open_=False):
    """What the edit page needs to draw the mapping dialog."""
    action = (url_for("mappings.edit", profile_id=profile.id, mapping_id=mapping_id) if mapping_id
              else url_for("mappings.add", profile_id=profile.id))
    return {"mapping_form": form or MappingForm(formdata=None), "mapping_action": action,
            "editing": mapping_id, "dialog_open": open_, "formats_with_pattern": FORMATS_WITH_PATTERN}


def dialog_from_query(profile):
    """?mapping=new or ?mapping=<id> opens the dialog without JavaScript."""
    wanted = request.args.get("mapping") if request.method == "GET" else None
    if wanted is None:
        return dialog(profile)
    if wanted == "new":
        return dialog(profile, open_=True)
    # At most 18 ASCII digits: a 64-bit id, never a 500 for a longer one or a '²'.
    m = _mapping_or_404(profile, whole_number(wanted) or -1)
    return dialog(profile, MappingForm(formdata=None, obj=m), m.id, open_=True)


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
    items[ids.index(whole_number(editing))] = data
    return items, None


def _mapping_checks(form, profile):
    """The form's own checks, then the mapping engine's and the PCI rule, each beside its field."""
    ok = form.validate_on_submit()
    data = form.mapping_data()
    try:
        mapping.validate([data])
    except mapping.MappingError as exc:
        getattr(form, exc.field).errors.append(exc.message)
        return False
    problem = profiles.sensitive_problem([data], profile.pci_documented)
    if problem:
        form.field.errors.append(problem)
        return False
    return ok


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
    if not _mapping_checks(form, profile):
        return render_edit(profile, dialog=dialog(profile, form, open_=True), status=422)
    before = profiles.snapshot(profile)
    profile.mappings.append(FieldMapping(**form.mapping_data()))
    _mappings_changed(profile, "mapping.add", before, f"Mapping {form.export_name.data!r} added")
    flash(f"Mapping {form.export_name.data!r} added.", "success")
    return _back_to_mappings(profile)


@bp.post("/<int:mapping_id>")
def edit(profile_id, mapping_id):
    profile = db.get_or_404(Profile, profile_id)
    m = _mapping_or_404(profile, mapping_id)
    form = MappingForm()
    if not _mapping_checks(form, profile):
        return render_edit(profile, dialog=dialog(profile, form, m.id, open_=True), status=422)
    before = profiles.snapshot(profile)
    for key, value in form.mapping_data().items():
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
