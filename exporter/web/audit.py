"""The Audit page: who changed what, when, before and after (read-only, for every admin and viewer),
an entry's page with before and after side by side, and the History of one profile, which stays
readable after the profile is deleted (entries keep its id and name)."""
import json

from flask import Blueprint, render_template, request
from wtforms import DateField, Form, SearchField, SelectChoice, SelectField
from wtforms.validators import AnyOf, Length, Optional

from .. import audit
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
    changed = audit.changes(entry.before, entry.after)
    keys = list(dict.fromkeys([*(entry.before or {}), *(entry.after or {})]))
    return render_template("audit/show.html", entry=entry, keys=keys, changed=changed, shown=shown,
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
