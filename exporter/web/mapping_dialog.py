"""The mapping dialog on the profile edit page: its form, what the page needs to draw it, and the
unsaved mapping the live preview shows. Used by the profile page (web/profiles.py) and by the
Field Mappings views (web/mappings.py), which sit above it."""
from flask import request, url_for
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.validators import Length

from .. import catalog, mapping
from ..extensions import db
from ..models import FieldMapping, Profile
from ..profiles import rules as profiles
from . import choices, not_found_unless, strip, whole_number

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
        # The key and what it holds, so the dialog's search finds "phone" or "card" either way.
        self.field.choices = choices(
            [(f.key, f"{f.key}: {f.description}" + (" (sensitive)" if f.sensitive else "")) for f in catalog.FIELDS]
            + [(catalog.STATIC, "Static: a fixed value you type")])
        self.format.choices = choices(mapping.FORMATS.items())

    def mapping_data(self):
        return {key: getattr(self, key).data or "" for key in profiles.MAPPING_KEYS}

    def keep_secret(self, stored_value):
        """Editing a mapping whose Static Value is a secret: the field stays empty, a placeholder says why."""
        if profiles.is_stored_secret(stored_value):
            self.static_value.data = ""
            self.static_value.render_kw = {"placeholder": SECRET_PLACEHOLDER}


def original_choices(profile):
    """A reversal profile's Field may also be each value its original profile's export sent."""
    original = db.session.get(Profile, profile.reversal_of_id) if profile.reversal_of_id else None
    if original is None:
        return []
    names = dict.fromkeys(m.export_name for m in original.mappings)
    return choices((f"{catalog.ORIGINAL}{name}", f"{catalog.ORIGINAL}{name} (sent by {original.name})") for name in names)


def mapping_or_404(profile, mapping_id):
    m = db.session.get(FieldMapping, mapping_id)
    not_found_unless(m is not None and m.profile_id == profile.id)
    return m


def dialog(profile, form=None, mapping_id=None, open_=False):
    """What the edit page needs to draw the mapping dialog."""
    action = (url_for("mappings.edit", profile_id=profile.id, mapping_id=mapping_id) if mapping_id
              else url_for("mappings.add", profile_id=profile.id))
    form = form or MappingForm(formdata=None)
    form.field.choices += original_choices(profile)
    return {"mapping_form": form, "mapping_action": action,
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
    m = mapping_or_404(profile, whole_number(wanted) or -1)
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
