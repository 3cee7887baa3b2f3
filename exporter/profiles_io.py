"""Profiles as code: export and import the profiles JSON (DESIGN §6).

Import checks the whole file before it changes anything, then creates or updates each
profile by name in one transaction.
"""
from werkzeug.datastructures import MultiDict

from . import catalog, customer_types, mapping, security
from .extensions import db
from .models import FieldMapping, Profile, Route

VERSION = 1
MAPPING_KEYS = ("export_name", "field", "static_value", "format", "format_arg", "default_value")


class ImportProblem(ValueError):
    def __init__(self, profile, field, message):
        super().__init__(f"profile {profile!r}: {field}: {message}")
        self.profile, self.field, self.message = profile, field, message


def export_profile(profile, registry):
    """One profile as the JSON's dict; secret settings are left out, never exported."""
    cls = registry.get(profile.export_type)
    secret = set(cls.secret_settings) if cls else set()
    return {
        "name": profile.name, "export_type": profile.export_type, "active": profile.active,
        "delay_minutes": profile.delay_minutes, "pci_documented": profile.pci_documented,
        "skip_converted_partials": profile.skip_converted_partials,
        "settings": {k: v for k, v in (profile.settings or {}).items() if k not in secret},
        "mappings": [{k: getattr(m, k) for k in MAPPING_KEYS if getattr(m, k) or k in ("export_name", "field")}
                     for m in profile.mappings],
        "routes": [{"customer_types": list(r.customer_types), "campaigns": list(r.campaigns),
                    "products": list(r.products)} for r in profile.routes],
    }


def export_all(registry=None):
    from flask import current_app

    registry = registry or current_app.extensions["export_types"]
    profiles = db.session.scalars(db.select(Profile).order_by(Profile.name)).all()
    return {"version": VERSION, "profiles": [export_profile(p, registry) for p in profiles]}


def check_settings(cls, settings):
    """Validate settings with the type's own form; {field: first error}."""
    form = cls.settings_form(formdata=MultiDict(_form_items(settings)))
    form.validate()
    return {name: errors[0] for name, errors in form.errors.items()}


def _form_items(settings):
    for key, value in (settings or {}).items():
        if isinstance(value, bool):
            if value:
                yield key, "y"
        elif isinstance(value, list):
            for item in value:
                yield key, str(item)
        elif value is not None:
            yield key, str(value)


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
    types = route.get("customer_types")
    if not isinstance(types, list) or not types:
        return "customer_types", "choose at least one customer type"
    unknown = [t for t in types if t not in customer_types.BY_SLUG]
    if unknown:
        return "customer_types", f"unknown customer type {unknown[0]!r}"
    for key in ("campaigns", "products"):
        ids = route.get(key, [])
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            return key, "must be a list of ids (whole numbers); empty means all"
    return None


def check_profile(data, registry):
    """Raise ImportProblem naming the profile and field of the first thing wrong with data."""
    name = data.get("name") if isinstance(data, dict) else None
    if not isinstance(name, str) or not name.strip():
        raise ImportProblem(name, "name", "Profile Name is required")
    cls = registry.get(data.get("export_type"))
    if cls is None:
        raise ImportProblem(name, "export_type", f"export type {data.get('export_type')!r} is not installed")
    delay = data.get("delay_minutes", 0)
    if not isinstance(delay, int) or isinstance(delay, bool) or delay < 0:
        raise ImportProblem(name, "delay_minutes", "Export Delay is a whole number of minutes, 0 or more")
    settings = {k: v for k, v in (data.get("settings") or {}).items() if k not in cls.secret_settings}
    errors = {k: v for k, v in check_settings(cls, settings).items() if k not in cls.secret_settings}
    if errors:
        field, message = next(iter(errors.items()))
        raise ImportProblem(name, f"settings.{field}", message)
    mappings = data.get("mappings") or []
    try:
        mapping.validate(mappings)
    except mapping.MappingError as exc:
        raise ImportProblem(name, f"mappings[{exc.index}].{exc.field}", exc.message)
    problem = sensitive_problem(mappings, bool(data.get("pci_documented")))
    if problem:
        raise ImportProblem(name, "mappings", problem)
    for i, route in enumerate(data.get("routes") or []):
        bad = check_route(route) if isinstance(route, dict) else ("", "must be an object")
        if bad:
            raise ImportProblem(name, f"routes[{i}].{bad[0]}", bad[1])


def import_all(data, registry=None, secret_key=None):
    """Create or update each profile by name; nothing changes unless the whole file is valid."""
    from flask import current_app

    registry = registry or current_app.extensions["export_types"]
    secret_key = secret_key or current_app.config["SECRET_KEY"]
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("profiles"), list):
        raise ImportProblem(None, "version", f"expected {{\"version\": {VERSION}, \"profiles\": [...]}}")
    names = set()
    for item in data["profiles"]:
        check_profile(item, registry)
        if item["name"].strip() in names:
            raise ImportProblem(item["name"], "name", "appears twice in the file")
        names.add(item["name"].strip())
    created = updated = 0
    for item in data["profiles"]:
        profile = db.session.scalar(db.select(Profile).where(Profile.name == item["name"].strip()))
        if profile is None:
            profile = Profile(name=item["name"].strip())
            db.session.add(profile)
            created += 1
        else:
            updated += 1
        _apply(profile, item, registry.get(item["export_type"]), secret_key)
    db.session.commit()
    return created, updated


def _apply(profile, item, cls, secret_key):
    kept = {k: v for k, v in (profile.settings or {}).items() if k in cls.secret_settings}
    settings = dict(item.get("settings") or {})
    for key in cls.secret_settings:  # a secret in the file is encrypted; absent, the stored one stays
        if settings.get(key):
            settings[key] = security.encrypt(secret_key, settings[key])
        elif key in kept and profile.export_type == item["export_type"]:
            settings[key] = kept[key]
    profile.export_type = item["export_type"]
    profile.settings = settings
    profile.delay_minutes = item.get("delay_minutes", 0)
    profile.pci_documented = bool(item.get("pci_documented", False))
    profile.active = bool(item.get("active", True))
    profile.skip_converted_partials = bool(item.get("skip_converted_partials", True))
    profile.mappings = [FieldMapping(position=i, **{k: m.get(k) or "" for k in MAPPING_KEYS})
                        for i, m in enumerate(item.get("mappings") or [])]
    profile.routes = [Route(customer_types=list(r["customer_types"]), campaigns=list(r.get("campaigns", [])),
                            products=list(r.get("products", []))) for r in item.get("routes") or []]
