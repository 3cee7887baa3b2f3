"""Export profiles: the rules a profile keeps, whichever door it comes through (the edit
page, the profiles JSON, the CLI), what it would send for the sample order, and how it is
deleted. No Flask web parts here: web/ and profiles_io.py both call this module."""
import hashlib
import logging
from datetime import date, datetime, time
from decimal import Decimal

from sqlalchemy import inspect as sa_inspect
from werkzeug.datastructures import MultiDict

from .. import audit, catalog, mapping, security
from . import customer_types
from ..delivery import dispatch
from ..extensions import db
from ..models import Profile

log = logging.getLogger(__name__)

MAPPING_KEYS = ("export_name", "field", "static_value", "format", "format_arg", "default_value")
# The longest each mapping text may be (the Field Mappings dialog's limits; field and format
# are checked against the catalog and the formats).
MAPPING_MAX_LENGTHS = {"export_name": 120, "static_value": 2000, "format_arg": 60, "default_value": 255}
NAME_MAX_LENGTH = 120
MAX_DELAY_MINUTES = 525_600  # a year
DELAY_MESSAGE = f"Export Delay is a whole number of minutes, 0 or more (at most {MAX_DELAY_MINUTES:,}, a year)"
# The profile's switches, and what each is when left out.
FLAGS = {"active": True, "pci_documented": False, "skip_converted_partials": True}


# --- mappings and routes ----------------------------------------------------------------------

def sensitive_problem(mappings, pci_documented):
    """A sensitive field needs PCI Documentation on file; the message names the field."""
    if pci_documented:
        return None
    for m in mappings:
        field = m.get("field") if isinstance(m, dict) else m.field
        if field in catalog.SENSITIVE:
            return f"{field} is sensitive: it needs PCI Documentation on file"
    return None


def check_route(route):
    """(field, message) of the first thing wrong with a route dict, or None."""
    types = route.get("customer_types")
    if not isinstance(types, list) or not types:
        return "customer_types", "choose at least one customer type"
    unknown = [t for t in types if not isinstance(t, str) or t not in customer_types.BY_SLUG]
    if unknown:
        return "customer_types", f"unknown customer type {unknown[0]!r}"
    for key in ("campaigns", "products"):
        ids = route.get(key, [])
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            return key, "must be a list of ids (whole numbers); empty means all"
    return None


# --- reversals and duplicate suppression (issue 24) ---------------------------------------------

# The customer types a reversal profile may reverse (refund, chargeback, cancel), in that order.
REVERSAL_TYPES = ("refund", "chargeback", "cancel")
DEFAULT_REVERSAL_TYPES = ("refund", "chargeback")
MAX_DEDUPE_DAYS = 365
DEDUPE_MESSAGE = f"a whole number of days from 1 to {MAX_DEDUPE_DAYS}, or empty for no suppression"


def dedupe_choices():
    """What duplicate suppression may go by: email, phone, or a field of the catalog that is not
    sensitive (a card number is never a key)."""
    return [("email", "Email"), ("phone", "Phone")] + [
        (f.key, f.key) for f in catalog.FIELDS
        if not f.sensitive and not f.key.startswith(catalog.ORIGINAL) and f.key not in ("emailAddress", "phoneNumber")]


def reversal_problem(types, reversal_of, profile_name, export_type_cls):
    """(field, message) of what is wrong with a reversal setting, or None. reversal_of: the other
    profile (None: not a reversal)."""
    if reversal_of is None:
        return None
    if reversal_of.name == profile_name:
        return "reversal_of", "a profile cannot be the reversal of itself"
    if export_type_cls is not None and export_type_cls.schedule != "per_event":
        return "reversal_of", "a reversal is one request per event: choose a per-event export type"
    if not types:
        return "reversal_types", f"choose what to reverse: {', '.join(REVERSAL_TYPES)}"
    unknown = [t for t in types if t not in REVERSAL_TYPES]
    if unknown:
        return "reversal_types", f"{unknown[0]!r} cannot be reversed (choose among {', '.join(REVERSAL_TYPES)})"
    return None


def dedupe_problem(days, by):
    """(field, message) of what is wrong with duplicate suppression, or None."""
    if days is None:
        return None
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_DEDUPE_DAYS:
        return "days", DEDUPE_MESSAGE
    if by not in dict(dedupe_choices()):
        return "by", f"{by!r} is not email, phone or a field of the catalog that is not sensitive"
    return None


# --- a type's settings ------------------------------------------------------------------------

def filled_settings_form(cls, settings):
    """The type's settings form filled in with settings; a setting left out takes the form's default."""
    defaults = cls.settings_form().data
    return cls.settings_form(formdata=MultiDict(_form_items({**defaults, **(settings or {})})))


def check_settings(cls, settings):
    """Validate settings with the type's own form; {field: first error}."""
    form = filled_settings_form(cls, settings)
    form.validate()
    return {name: errors[0] for name, errors in form.errors.items()}


def _form_items(settings):
    for key, value in settings.items():
        if isinstance(value, bool):
            if value:
                yield key, "y"
        elif isinstance(value, list):
            for item in value:
                yield key, str(item)
        elif value is not None:
            yield key, str(value)


def jsonable(value):
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def settings_from_form(cls, form):
    """The type's settings form's validated data as stored, without its secrets."""
    return {f.short_name: jsonable(f.data) for f in form
            if f.type != "CSRFTokenField" and f.short_name not in cls.secret_settings and f.data is not None}


def merge_secrets(cls, settings, new_secrets, stored, keep_stored, secret_key):
    """The settings to store: a new secret encrypted; without one, the stored secret stays
    when keep_stored (the type did not change). The one rule for the form and the import."""
    for key in cls.secret_settings:
        if new_secrets.get(key):
            settings[key] = security.encrypt(secret_key, new_secrets[key])
        elif keep_stored and stored.get(key):
            settings[key] = stored[key]
    return settings


def visible_settings(profile, cls):
    """The stored settings a form may show: never a secret (a URL shows its credentials masked)."""
    return {k: v for k, v in (profile.settings or {}).items()
            if k not in cls.secret_settings and not k.endswith(dispatch.URL_CREDENTIALS)}


def stored_url(settings, name, secret_key):
    """The whole URL of a URL setting as stored (its credentials decrypted), or ""."""
    encrypted = (settings or {}).get(name + dispatch.URL_CREDENTIALS)
    return security.decrypt(secret_key, encrypted) if encrypted else (settings or {}).get(name) or ""


def protect_urls(cls, settings, stored, secret_key):
    """settings with each URL setting as stored: MASK in it is the stored credential (ValueError
    when there is none: {setting: message}); credentials kept apart, the whole URL encrypted
    beside it, the URL itself masked. The one rule for the form and the import."""
    for name in dispatch.url_settings(cls):
        hidden = name + dispatch.URL_CREDENTIALS
        settings.pop(hidden, None)
        url = settings.get(name)
        if not isinstance(url, str) or not url:
            continue
        before = stored_url(stored, name, secret_key)
        try:
            url = security.url_with_stored_credentials(url, before, dispatch.secret_names())
        except ValueError as exc:
            raise SettingProblem(name, str(exc)) from exc
        masked, has_credentials = security.masked_url(url, dispatch.secret_names())
        if has_credentials:  # the same URL keeps its ciphertext: Audit tells a new secret by it
            same = url == before and (stored or {}).get(hidden)
            settings[name], settings[hidden] = masked, stored[hidden] if same else security.encrypt(secret_key, url)
    return settings


class SettingProblem(ValueError):
    def __init__(self, setting, message):
        super().__init__(message)
        self.setting = setting


# --- secret Static Values ---------------------------------------------------------------------

def is_secret_mapping(m):
    """A Static mapping whose value is a secret (security.is_secret_mapping, with SECRET_NAMES)."""
    get = m.get if isinstance(m, dict) else lambda key: getattr(m, key)
    return security.is_secret_mapping(get("export_name"), get("field"), dispatch.secret_names())


def is_stored_secret(value):
    return isinstance(value, str) and value.startswith(security.ENCRYPTED_PREFIX)


def mapping_to_store(data, previous, secret_key):
    """A mapping dict (a form's, a file's) as stored: a secret Static Value encrypted; blank or
    MASK keeps previous (the stored value of the mapping it replaces, or None). MappingError
    when there is no value to keep."""
    data = dict(data)
    if not is_secret_mapping(data):
        return data
    value = data.get("static_value") or ""
    if value in ("", security.MASK):
        if not previous:
            raise mapping.MappingError(0, "static_value", "Static needs a Static Value (this one is a secret: "
                                                          "it is stored encrypted and never shown again)")
        value = previous if is_stored_secret(previous) else security.encrypt(secret_key, previous)
        data["static_value"] = value
    elif not is_stored_secret(value):
        data["static_value"] = security.encrypt(secret_key, value)
    return data


def shown_static_value(value):
    """A Static Value as a page, the profiles JSON or a preview shows it."""
    return security.MASK if is_stored_secret(value) else value


# --- what a profile sends ---------------------------------------------------------------------

def masked(text, cls, settings):
    """A type should never show a secret; mask any that shows anyway. (Shorter ones cannot be
    told from ordinary text: masking "x" would mangle every "x" of the text.)"""
    secrets = [(settings.get(k), security.MASK) for k in cls.secret_settings if len(settings.get(k) or "") >= 4]
    return security.redact(text, secrets)


def describe(profile):
    """Where a profile sends, in its type's own words (ExportType.describe); "" when it cannot say."""
    cls = dispatch.registry().get(profile.export_type)
    if cls is None:
        return ""
    try:
        settings = dispatch.plain_settings(profile, reveal_urls=False)  # what it sends to, credentials masked
        text = str(cls(settings).describe() or "")
    except Exception:  # a plugin's describe must not break the list
        log.warning("the %s type could not describe profile %s", cls.key, profile.id, exc_info=True)
        return ""
    return masked(text, cls, settings)


def preview(profile):
    """(text, problem): what the stored profile would send for the sample order."""
    cls = dispatch.registry().get(profile.export_type)
    if cls is None:
        return None, f"Export type {profile.export_type!r} is not installed."
    try:
        settings = dispatch.plain_settings(profile, reveal_urls=False)
    except ValueError as exc:  # a stored secret the key cannot decrypt
        return None, str(exc)
    return sample(cls, settings, profile.mappings)


def sample(cls, settings, mappings):
    """(text, problem): what a type with these plain settings and mappings sends for the
    sample order. The live preview calls it with a form's unsaved values. Secret Static Values
    show as the mask, a stored one and one just typed alike: a preview is for the page."""
    mappings = [{key: _shown(m, key) for key in MAPPING_KEYS} for m in mappings]
    try:
        renderer = mapping.compile(mappings)
    except mapping.MappingError as exc:
        return None, str(exc)
    row = renderer.masked(renderer(catalog.sample_record()))  # card data masked, following the mapping
    try:
        text = cls(settings).preview(renderer.columns, row)
    except Exception as exc:  # a plugin's preview must not break the page
        if not renderer.columns:
            return None, NO_MAPPING
        return None, f"The {cls.label} type could not make a preview: {exc}"
    # No mapping yet: what the settings alone send (the URL typed), and what is missing.
    return masked(text, cls, settings), None if renderer.columns else NO_MAPPING


NO_MAPPING = "Add a field mapping to see the fields this profile sends."


def _shown(m, key):
    value = (m.get(key) if isinstance(m, dict) else getattr(m, key)) or ""
    return security.MASK if key == "static_value" and value and is_secret_mapping(m) else value


# --- deleting ---------------------------------------------------------------------------------

def delete(profile):
    """Delete a profile with what hangs on it: the schema's ON DELETE rules (SQLite's foreign
    keys are on) remove its mappings, routes, deliveries, attempts and file rows, and unlink
    the history messages, which stay. The audit entry keeps what the profile was."""
    record_change("profile.delete", profile, snapshot(profile), f"Profile {profile.name!r} deleted", deleted=True)
    db.session.execute(db.delete(Profile).where(Profile.id == profile.id))
    db.session.commit()


# --- the audit log ----------------------------------------------------------------------------

# Ids and times say nothing an admin changed: a snapshot leaves them out.
SNAPSHOT_SKIPS = ("id", "created_at", "updated_at")
# Under this key a snapshot carries digests of the stored secrets (never stored in the log): an
# entry can then say that a secret changed without showing either value.
_SECRET_DIGESTS = "_secret_digests"


def snapshot(profile):
    """The profile as its audit entries show it: every column (so a field a later feature adds
    shows too), the settings with secrets masked, the mappings in order and the routes."""
    cls = dispatch.registry().get(profile.export_type)
    # An empty setting says what a missing one says: the first save of a form fills them in.
    settings = {k: v for k, v in (profile.settings or {}).items() if v not in (None, "")}
    data = {c.key: _plain(getattr(profile, c.key)) for c in sa_inspect(Profile).column_attrs
            if c.key not in SNAPSHOT_SKIPS}
    data["settings"] = audit.masked(settings, cls.secret_settings if cls else ())
    data["mappings"] = [{key: getattr(m, key) or "" for key in MAPPING_KEYS}
                        for m in sorted(profile.mappings, key=lambda m: m.position if m.position is not None else 1e9)]
    other = db.session.get(Profile, profile.reversal_of_id) if profile.reversal_of_id else None
    data["reversal_of"] = other.name if other else None  # its name, not only its id
    data["routes"] = [{"customer_types": list(r.customer_types or []), "campaigns": list(r.campaigns or []),
                       "products": list(r.products or [])} for r in profile.routes]
    data[_SECRET_DIGESTS] = {k: hashlib.sha256(str(v).encode()).hexdigest() for k, v in settings.items()
                             if data["settings"].get(k) == security.MASK}
    data[_SECRET_DIGESTS].update({f"Static Value of {m.export_name}": hashlib.sha256(m.static_value.encode()).hexdigest()
                                  for m in profile.mappings if is_stored_secret(m.static_value)})
    return data


def _plain(value):
    value = jsonable(value)
    if isinstance(value, time):
        return value.isoformat()
    return value if value is None or isinstance(value, (str, int, float, bool, list, dict)) else str(value)


def record_change(action, profile, before, summary="", deleted=False):
    """Add the audit entry of a change to the profile (before: its snapshot() before the change,
    None for a new profile); the caller commits. Nothing is recorded when nothing changed."""
    before = dict(before) if before else None
    after = None if deleted else snapshot(profile)
    old = before.pop(_SECRET_DIGESTS, {}) if before else {}
    new = after.pop(_SECRET_DIGESTS, {}) if after else {}
    changed_secrets = sorted(k for k in new if old.get(k) != new[k]) if before and after else []
    if before is not None and before == after and not changed_secrets:
        return None
    if changed_secrets:
        summary = f"{summary}; new secret: {', '.join(changed_secrets)}".lstrip("; ")
    if profile.id is None:
        db.session.flush()  # the new profile's id names the entry
    return audit.record(action, action.split(".")[0], profile.id, profile.name, profile_id=profile.id,
                        summary=summary, before=before, after=after)
