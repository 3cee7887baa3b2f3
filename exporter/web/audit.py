"""The Audit page: who changed what, when, before and after (read-only, for every admin and viewer),
an entry's page with before and after side by side, and the History of one profile, which stays
readable after the profile is deleted (entries keep its id and name)."""
import json

from flask import Blueprint, render_template, request
from wtforms import DateField, Form, SearchField, SelectChoice, SelectField
from wtforms.validators import AnyOf, Length, Optional

from .. import audit, windows
from ..delivery import dispatch
from ..extensions import db
from ..models import AuditEntry, Profile
from . import MAX_PAGE, DateRangeChecks, admin_blueprint, not_found_unless, page_field, whole_number

bp = admin_blueprint(Blueprint("audit", __name__, url_prefix="/audit"))

PER_PAGE = 50


class FilterForm(DateRangeChecks, Form):
    """The log's filters, read from the query string (a GET form: nothing to protect)."""
    who = SearchField("Who", validators=[Length(max=255, message="Who is at most 255 characters")],
                      description="an admin's email, or cli:<login>")
    target_type = SelectField("Changed", default="", validate_choice=False)
    action = SelectField("Action", default="", validate_choice=False)
    profile = SelectField("Profile", default="", validate_choice=False)
    since = DateField("From", validators=[Optional()], format="%Y-%m-%d")
    until = DateField("To", validators=[Optional()], format="%Y-%m-%d", description="Days in UTC")
    page = page_field()

    def __init__(self, formdata):
        super().__init__(formdata)
        types = [("", "Anything")] + [(t, t) for t in _distinct(AuditEntry.target_type)]
        actions = [("", "Any action")] + [(a, a) for a in _distinct(AuditEntry.action)]
        profiles = [("", "Any profile")] + [(str(i), name) for i, name in profile_choices()]
        for field, pairs, message in ((self.target_type, types, "Choose what changed from the list"),
                                      (self.action, actions, "Choose an action from the list"),
                                      (self.profile, profiles, "No such profile in the log")):
            field.choices = [SelectChoice(v, label) for v, label in pairs]
            field.validators = [AnyOf([v for v, _ in pairs], message)]  # our words, not WTForms'
        self.plain_date_errors()



def _distinct(column):
    return db.session.scalars(db.select(column).distinct().order_by(column)).all()


def profile_choices():
    """(id, name) of each profile now, and of each deleted one (its profile.delete entry names it)."""
    names = dict(db.session.execute(db.select(Profile.id, Profile.name)).all())
    deleted = db.session.execute(db.select(AuditEntry.profile_id, AuditEntry.target_name)
                                 .where(AuditEntry.action == "profile.delete")).all()
    names.update({i: f"{name} (deleted)" for i, name in deleted if i is not None and i not in names})
    return sorted(names.items(), key=lambda pair: pair[1].lower())


def _filtered(form):
    query = db.select(AuditEntry).order_by(AuditEntry.id.desc())
    who = (form.who.data or "").strip().lower()
    if who:
        query = query.where(db.func.lower(AuditEntry.actor).contains(who, autoescape=True))
    if form.target_type.data:
        query = query.where(AuditEntry.target_type == form.target_type.data)
    if form.action.data:
        query = query.where(AuditEntry.action == form.action.data)
    if form.profile.data:
        query = query.where(AuditEntry.profile_id == int(form.profile.data))
    return query.where(*form.within_days(AuditEntry.at))


@bp.route("/")
def index():
    form = FilterForm(request.args)
    if not form.validate():
        return render_template("audit/index.html", form=form, entries=None), 400
    entries = db.paginate(_filtered(form), page=form.page.data or 1, per_page=PER_PAGE, error_out=False)
    return render_template("audit/index.html", form=form, entries=entries)


@bp.route("/<int:entry_id>")
def show(entry_id):
    entry = db.get_or_404(AuditEntry, entry_id)
    rows = as_shown(entry)
    return render_template("audit/show.html", entry=entry, rows=rows, changed=[r for r in rows if r.changed],
                           profile=_profile_now(entry.profile_id))


@bp.route("/profiles/<int:profile_id>")
def profile_history(profile_id):
    """History of this profile: its entries, newest first, whether or not it still exists."""
    profile = _profile_now(profile_id)
    query = db.select(AuditEntry).where(AuditEntry.profile_id == profile_id).order_by(AuditEntry.id.desc())
    entries = db.paginate(query, page=_page(), per_page=PER_PAGE, error_out=False)
    not_found_unless(profile is not None or entries.total)
    name = profile.name if profile else entries.items[0].target_name if entries.items else ""
    return render_template("audit/profile.html", entries=entries, profile=profile, profile_id=profile_id, name=name)


RECENT_ON_PROFILE_PAGE = 5


@bp.app_template_global()
def recent_audit_entries(profile_id):
    """The profile edit page's History of this profile: its latest entries."""
    return db.session.scalars(db.select(AuditEntry).where(AuditEntry.profile_id == profile_id)
                              .order_by(AuditEntry.id.desc()).limit(RECENT_ON_PROFILE_PAGE)).all()


def _page():
    """History's page: a bad one is the first page (the History link never makes one)."""
    page = whole_number(request.args.get("page", "1")) or 1
    return min(page, MAX_PAGE)


def _profile_now(profile_id):
    return db.session.get(Profile, profile_id) if profile_id is not None else None


def shown(value):
    """A snapshot's value as the entry's page shows it: text as is, the rest as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=1, ensure_ascii=False, sort_keys=False)


# --- before and after as the screens show them ------------------------------------------------
#
# A profile's snapshot keeps its columns' names and stored values (window_start 480, "POST_JSON");
# the screens say "From 08:00" and "POST (JSON)". Entries keep what was stored; these read them.

PROFILE_LABELS = {"name": "Profile Name", "export_type": "Export Type", "active": "Active",
                  "delay_minutes": "Export Delay (minutes)", "pci_documented": "PCI Documentation",
                  "skip_converted_partials": "Skip partials that convert", "window_days": "Days",
                  "window_start": "From", "window_end": "To", "window_time_zone": "Time Zone",
                  "daily_cap": "Daily Cap", "over_cap": "Over the cap", "mappings": "Field Mappings",
                  "routes": "Profile Routing", "created_at": "Created", "updated_at": "Updated"}


WORDED = ("profile", "alerts")  # entries whose before and after read in the screens' words


class Row:
    def __init__(self, key, label, before, after, changed):
        self.key, self.label, self.before, self.after, self.changed = key, label, before, after, changed


def as_shown(entry):
    """Rows (key, label, before, after, changed) in the screens' words; a profile's type settings
    one row each, labelled and valued as its settings form shows them."""
    before, after = _flat(entry, entry.before), _flat(entry, entry.after)
    rows = []
    for key in dict.fromkeys([*before, *after]):
        label, old = before.get(key, (None, None))
        label_after, new = after.get(key, (None, None))
        rows.append(Row(key, label or label_after, old if entry.before is not None else None,
                        new if entry.after is not None else None, old != new))
    return rows


@bp.app_template_global("audit_change_words")
def change_words(entry, most=3):
    """'Export Delay (minutes) 0 → 5; From — → 08:00' for the list's What; "" when none is short."""
    if entry.before is None or entry.after is None or entry.target_type not in WORDED:
        return ""
    changed = [r for r in as_shown(entry) if r.changed and "\n" not in (r.before or "") + (r.after or "")]
    words = [f"{r.label} {r.before or '—'} → {r.after or '—'}" for r in changed[:most]]
    if len(changed) > most:
        words.append(f"and {len(changed) - most} more")
    return "; ".join(words)


def _flat(entry, snapshot):
    """{key: (label, shown value)} of a snapshot; a profile's settings opened up, one key each."""
    if not snapshot:
        return {}
    if entry.target_type != "profile":
        return {key: (key, shown(value)) for key, value in snapshot.items()}
    flat = {}
    for key, value in snapshot.items():
        if key == "settings" and isinstance(value, dict):
            labels, values = _settings_words(snapshot.get("export_type"))
            for name, setting in value.items():
                flat[f"settings.{name}"] = (labels.get(name, name), values(name, setting))
        elif key != "export_type" or value:
            flat[key] = (PROFILE_LABELS.get(key, key), _profile_value(key, value))
    return flat


def _profile_value(key, value):
    if key in ("window_start", "window_end"):
        return windows.format_time(value) if value is not None else ""
    if key == "window_days":
        days = value.split(",") if value else []
        return "every day" if not days or set(days) == set(windows.DAYS) else ", ".join(
            windows.DAY_LABELS.get(d, d) for d in days)
    if key == "daily_cap":
        return "no cap" if value is None else str(value)
    if key == "over_cap":
        return windows.OVER_CAP.get(value, value)
    if key == "export_type":
        cls = dispatch.registry().get(value)
        return cls.label if cls else value
    if isinstance(value, bool):
        return "yes" if value else "no"
    return shown(value)


def _settings_words(type_key):
    """The labels of a type's settings form, and how a stored value reads (a choice's label)."""
    cls = dispatch.registry().get(type_key)
    if cls is None:
        return {}, lambda name, value: shown(value)
    form = cls.settings_form()
    labels = {f.short_name: f.label.text for f in form}
    choice_labels = {f.short_name: {str(getattr(c, "value", c[0] if isinstance(c, tuple) else c)):
                                    getattr(c, "label", c[1] if isinstance(c, tuple) else c) for c in f.choices}
                     for f in form if getattr(f, "choices", None)}

    def value_words(name, value):
        if isinstance(value, bool):
            return "yes" if value else "no"
        return choice_labels.get(name, {}).get(str(value), shown(value))

    return labels, value_words
