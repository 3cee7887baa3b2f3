"""Field Mappings of a profile: add, edit, delete and reorder, in a dialog on the profile edit page.

Without JavaScript `?mapping=new|<id>` opens the dialog server-side; a mapping with a problem
re-renders the edit page with the dialog open and the error beside its field."""
from flask import Blueprint, current_app, flash, redirect, url_for

from .. import mapping
from ..profiles import rules as profiles
from ..extensions import db
from ..models import FieldMapping, Profile, utcnow
from . import admin_blueprint
from .mapping_dialog import MappingForm, dialog, mapping_or_404
from .profiles import render_edit

bp = admin_blueprint(Blueprint("mappings", __name__, url_prefix="/profiles/<int:profile_id>/mappings"))
bp.add_app_template_global(profiles.shown_static_value, "shown_static_value")
bp.add_app_template_global(profiles.is_stored_secret, "is_stored_secret")


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
    m = mapping_or_404(profile, mapping_id)
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
    m = mapping_or_404(profile, mapping_id)
    before = profiles.snapshot(profile)
    profile.mappings.remove(m)
    _mappings_changed(profile, "mapping.delete", before, f"Mapping {m.export_name!r} deleted")
    flash(f"Mapping {m.export_name!r} deleted.", "success")
    return _back_to_mappings(profile)


@bp.post("/<int:mapping_id>/<any(up, down):direction>")
def move(profile_id, mapping_id, direction):
    profile = db.get_or_404(Profile, profile_id)
    m = mapping_or_404(profile, mapping_id)
    items = list(profile.mappings)
    i = items.index(m)
    j = i - 1 if direction == "up" else i + 1
    if 0 <= j < len(items):
        before = profiles.snapshot(profile)
        items[i], items[j] = items[j], items[i]
        _mappings_changed(profile, "mapping.move", before, f"Mapping {m.export_name!r} moved {direction}", items)
    return _back_to_mappings(profile)
