"""Profiles as code: export and import the profiles JSON (DESIGN §6).

Import checks the whole file before it changes anything, then creates or updates each
profile by name in one transaction. Each value is checked as the edit page checks it:
a problem names the profile and the field, and nothing is stored.
"""
from .. import mapping, security, windows
from ..delivery import schedule
from ..delivery.sending import URL_CREDENTIALS
from ..extensions import db
from ..models import FieldMapping, Profile, Route
from .rules import (DEFAULT_REVERSAL_TYPES, DELAY_MESSAGE, FLAGS, MAPPING_KEYS, MAPPING_MAX_LENGTHS, MAX_DELAY_MINUTES,
                    NAME_MAX_LENGTH, SettingProblem, check_route, dedupe_problem, filled_settings_form,
                    mapping_to_store, merge_secrets, protect_urls, record_change, reversal_problem,
                    sensitive_problem, settings_from_form, shown_static_value, snapshot)

# 2 (issue 24): reversal_of, reversal_types and duplicate_suppression. A version 1 file (none of
# them) still imports: its profiles are no reversals and suppress nothing.
VERSION = 2
VERSIONS = (1, 2)


class ImportProblem(ValueError):
    def __init__(self, profile, field, message):
        where = f"profile {profile!r}: " if profile is not None else ""
        super().__init__(f"{where}{field}: {message}")
        self.profile, self.field, self.message = profile, field, message


def export_profile(profile, registry):
    """One profile as the JSON's dict; a secret setting is exported as the mask, never in clear
    (importing the mask keeps the stored secret)."""
    cls = registry.get(profile.export_type)
    secret = set(cls.secret_settings) if cls else set()
    secret |= {k for k in (profile.settings or {}) if k.endswith(URL_CREDENTIALS)}  # the URL shows masked
    masked = {k: security.MASK for k in secret if (profile.settings or {}).get(k) and not k.endswith(URL_CREDENTIALS)}
    return {
        "name": profile.name, "export_type": profile.export_type, "active": profile.active,
        "delay_minutes": profile.delay_minutes, "pci_documented": profile.pci_documented,
        "skip_converted_partials": profile.skip_converted_partials,
        **export_window(profile),
        **export_partners(profile),
        "settings": {**{k: v for k, v in (profile.settings or {}).items() if k not in secret}, **masked},
        "mappings": [{k: shown_static_value(getattr(m, k)) if k == "static_value" else getattr(m, k)
                      for k in MAPPING_KEYS if getattr(m, k) or k in ("export_name", "field")}
                     for m in profile.mappings],
        "routes": [{"customer_types": list(r.customer_types), "campaigns": list(r.campaigns),
                    "products": list(r.products)} for r in profile.routes],
    }


def export_window(profile):
    """The send window (null: any time), its time zone, the daily cap (null: none)."""
    window = None
    if profile.window_start is not None and profile.window_end is not None:
        window = {"days": [d for d in (profile.window_days or "").split(",") if d],
                  "from": windows.format_time(profile.window_start), "to": windows.format_time(profile.window_end)}
    return {"send_window": window, "time_zone": profile.window_time_zone or "UTC",
            "daily_cap": profile.daily_cap, "over_cap": profile.over_cap or "wait"}


def export_partners(profile):
    """Reversal of another profile (by name; null: none) and duplicate suppression (null: none)."""
    dedupe = None
    if profile.dedupe_days:
        dedupe = {"days": profile.dedupe_days, "by": profile.dedupe_by or "email"}
    return {"reversal_of": profile.reversal_of.name if profile.reversal_of else None,
            "reversal_types": [t for t in (profile.reversal_types or "").split(",") if t],
            "duplicate_suppression": dedupe}


def export_all(registry=None):
    from flask import current_app

    registry = registry or current_app.extensions["export_types"]
    profiles = db.session.scalars(db.select(Profile).order_by(Profile.name)).all()
    return {"version": VERSION, "profiles": [export_profile(p, registry) for p in profiles]}


# --- one profile of the file ------------------------------------------------------------------

def check_profile(data, registry):
    """The profile as it will be stored; ImportProblem naming the profile and field of the first
    thing wrong with data."""
    name = _checked_name(data)
    cls = registry.get(data.get("export_type")) if isinstance(data.get("export_type"), str) else None
    if cls is None:
        raise ImportProblem(name, "export_type", f"export type {data.get('export_type')!r} is not installed")
    profile = {"name": name.strip(), "export_type": cls.key, "delay_minutes": _checked_delay(name, data)}
    profile.update(_checked_flags(name, data))
    profile.update(_checked_window(name, data))
    profile["settings"], profile["secrets"] = _checked_settings(name, cls, data.get("settings"))
    target = security.target_setting_problem(profile["settings"], _allow_private_targets())
    if target:
        raise ImportProblem(name, f"settings.{target[0]}", target[1])
    profile["mappings"] = _checked_mappings(name, data.get("mappings"))
    problem = sensitive_problem(profile["mappings"], profile["pci_documented"])
    if problem:
        raise ImportProblem(name, "mappings", problem)
    profile["routes"] = _checked_routes(name, data.get("routes"))
    profile.update(_checked_partners(name, data))
    return profile


def _checked_partners(name, data):
    """reversal_of (a profile's name, checked against the database and the file later),
    reversal_types, duplicate_suppression ({"days": N, "by": "email"} or null)."""
    reversal_of = data.get("reversal_of")
    if reversal_of is not None and (not isinstance(reversal_of, str) or not reversal_of.strip()):
        raise ImportProblem(name, "reversal_of", "must be a profile's name, or null")
    types = data.get("reversal_types", list(DEFAULT_REVERSAL_TYPES) if reversal_of else [])
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise ImportProblem(name, "reversal_types", "must be a list of customer types")
    dedupe = data.get("duplicate_suppression")
    days, by = None, "email"
    if dedupe is not None:
        if not isinstance(dedupe, dict):
            raise ImportProblem(name, "duplicate_suppression", 'must be {"days": 30, "by": "email"}, or null')
        days, by = dedupe.get("days"), dedupe.get("by", "email")
        problem = dedupe_problem(days, by)
        if problem:
            raise ImportProblem(name, f"duplicate_suppression.{problem[0]}", problem[1])
    return {"reversal_of": reversal_of.strip() if reversal_of else None, "reversal_types": types,
            "dedupe_days": days, "dedupe_by": by}


def _allow_private_targets():
    from flask import current_app, has_app_context

    return bool(has_app_context() and current_app.config.get("ALLOW_PRIVATE_TARGETS"))


def _checked_name(data):
    name = data.get("name")
    if name is not None and not isinstance(name, str):
        raise ImportProblem(name, "name", "Profile Name must be a string")
    if not name or not name.strip():
        raise ImportProblem(name, "name", "Profile Name is required")
    if len(name.strip()) > NAME_MAX_LENGTH:
        raise ImportProblem(name, "name", f"Profile Name is at most {NAME_MAX_LENGTH} characters")
    return name


def _checked_delay(name, data):
    delay = data.get("delay_minutes", 0)
    if not isinstance(delay, int) or isinstance(delay, bool) or not 0 <= delay <= MAX_DELAY_MINUTES:
        raise ImportProblem(name, "delay_minutes", DELAY_MESSAGE)
    return delay


def _checked_flags(name, data):
    """Each switch is a JSON true or false: the string "false" is not false."""
    flags = {flag: data.get(flag, default) for flag, default in FLAGS.items()}
    for flag, value in flags.items():
        if not isinstance(value, bool):
            raise ImportProblem(name, flag, f"must be true or false, not {value!r}")
    return flags


# The JSON's names for the window's columns, in the problems it reports.
WINDOW_KEYS = {"window_days": "send_window.days", "window_start": "send_window.from", "window_end": "send_window.to"}
WINDOW_SHAPE = 'must be {"days": ["mon", ...], "from": "HH:MM", "to": "HH:MM"}, or null for no send window'


def _checked_window(name, data):
    """The send window, time zone, daily cap and what happens over it, as the profile's columns."""
    checked = {"window_days": "", "window_start": None, "window_end": None}
    window = data.get("send_window")
    if window is not None:
        if not isinstance(window, dict):
            raise ImportProblem(name, "send_window", WINDOW_SHAPE)
        checked.update(_checked_window_times(name, window))
    zone = data.get("time_zone", "UTC")
    try:
        checked["window_time_zone"] = windows.zone(zone).key
    except ValueError as exc:
        raise ImportProblem(name, "time_zone", str(exc))
    cap = data.get("daily_cap")
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or not 1 <= cap <= windows.MAX_DAILY_CAP):
        raise ImportProblem(name, "daily_cap", windows.CAP_MESSAGE)
    over = data.get("over_cap", "wait")
    if over not in windows.OVER_CAP:
        raise ImportProblem(name, "over_cap", f'must be "wait" or "skip", not {over!r}')
    return {**checked, "daily_cap": cap, "over_cap": over}


def _checked_window_times(name, window):
    days = window.get("days", list(windows.DAYS))
    if not isinstance(days, list) or not all(isinstance(d, str) for d in days):
        raise ImportProblem(name, "send_window.days", f"must be a list of days: {', '.join(windows.DAYS)}")
    checked = {}
    try:
        checked["window_days"] = windows.parse_days(days)
    except ValueError as exc:
        raise ImportProblem(name, "send_window.days", str(exc))
    for key, column in (("from", "window_start"), ("to", "window_end")):
        try:
            checked[column] = windows.parse_time(window.get(key)) if isinstance(window.get(key), str) else None
        except ValueError as exc:
            raise ImportProblem(name, f"send_window.{key}", str(exc))
        if checked[column] is None:
            raise ImportProblem(name, f"send_window.{key}", windows.TIME_MESSAGE)
    problems = windows.check(checked["window_days"], checked["window_start"], checked["window_end"])
    if problems:
        column, message = next(iter(problems.items()))
        raise ImportProblem(name, WINDOW_KEYS[column], message)
    return checked


def _object(name, field, value):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ImportProblem(name, field, "must be an object")
    return value


def _list(name, field, value):
    if value is None:
        return []
    if not isinstance(value, list):
        raise ImportProblem(name, field, "must be a list")
    return value


def _checked_settings(name, cls, settings):
    """(the settings form's validated data without secrets, the file's secrets): a secret the
    file leaves out is not an error, the stored one stays."""
    settings = _object(name, "settings", settings)
    secrets = {k: v for k, v in settings.items() if k in cls.secret_settings and v not in (None, "", security.MASK)}
    for key, value in secrets.items():
        if not isinstance(value, str):
            raise ImportProblem(name, f"settings.{key}", "must be a string")
    checked = {k: v for k, v in settings.items() if k not in cls.secret_settings or k in secrets}
    form = filled_settings_form(cls, checked)
    form.validate()
    errors = {k: v[0] for k, v in form.errors.items() if k not in cls.secret_settings or k in secrets}
    if errors:
        field, message = next(iter(errors.items()))
        raise ImportProblem(name, f"settings.{field}", message)
    return settings_from_form(cls, form), {k: form[k].data for k in secrets}


def _checked_mappings(name, mappings):
    checked = [_checked_mapping(name, i, m) for i, m in enumerate(_list(name, "mappings", mappings))]
    try:
        mapping.validate(checked)
    except mapping.MappingError as exc:
        raise ImportProblem(name, f"mappings[{exc.index}].{exc.field}", exc.message)
    return checked


def _checked_mapping(name, index, m):
    if not isinstance(m, dict):
        raise ImportProblem(name, f"mappings[{index}]", "must be an object")
    for key in MAPPING_KEYS:
        value = m.get(key)
        if value is not None and not isinstance(value, str):
            raise ImportProblem(name, f"mappings[{index}].{key}", f"must be a string, not {value!r}")
        if key in MAPPING_MAX_LENGTHS and len(value or "") > MAPPING_MAX_LENGTHS[key]:
            raise ImportProblem(name, f"mappings[{index}].{key}",
                                f"at most {MAPPING_MAX_LENGTHS[key]} characters")
    return {key: m.get(key) or "" for key in MAPPING_KEYS}


def _checked_routes(name, routes):
    checked = []
    for i, route in enumerate(_list(name, "routes", routes)):
        if not isinstance(route, dict):
            raise ImportProblem(name, f"routes[{i}]", "must be an object")
        bad = check_route(route)
        if bad:
            raise ImportProblem(name, f"routes[{i}].{bad[0]}", bad[1])
        checked.append({"customer_types": list(route["customer_types"]),
                        "campaigns": list(route.get("campaigns", [])), "products": list(route.get("products", []))})
    return checked


def _mappings_to_store(checked, stored, secret_key):
    """The file's mappings as stored: a secret Static Value encrypted; **** keeps the stored value
    of the profile's mapping of the same Export Name (the first one not yet taken)."""
    previous = {}
    for m in stored:
        previous.setdefault(m.export_name, []).append(m.static_value)
    result = []
    for i, m in enumerate(checked["mappings"]):
        old = previous.get(m["export_name"].strip())
        try:
            result.append(mapping_to_store(m, old.pop(0) if old else None, secret_key))
        except mapping.MappingError as exc:
            raise ImportProblem(checked["name"], f"mappings[{i}].static_value",
                                f"{security.MASK} stands for a stored secret, but this profile has no "
                                f"mapping {m['export_name']!r} to keep it from: type the value") from exc
    return result


# --- the whole file ---------------------------------------------------------------------------

def check_file(data, registry):
    """Each profile of the file as it will be stored; ImportProblem on the first thing wrong."""
    if not isinstance(data, dict) or data.get("version") not in VERSIONS or not isinstance(data.get("profiles"), list):
        raise ImportProblem(None, "version", f"expected {{\"version\": {VERSION}, \"profiles\": [...]}} "
                                             f"(versions {', '.join(map(str, VERSIONS))} import)")
    profiles, names = [], set()
    for i, item in enumerate(data["profiles"]):
        if not isinstance(item, dict):
            raise ImportProblem(None, f"profiles[{i}]", "must be an object")
        profile = check_profile(item, registry)
        if profile["name"] in names:
            raise ImportProblem(item["name"], "name", "appears twice in the file")
        names.add(profile["name"])
        profiles.append(profile)
    for profile in profiles:
        _check_reversal(profile, names, registry)
    return profiles


class _Named:
    def __init__(self, name):
        self.name = name


def _check_reversal(profile, names, registry):
    """The profile a reversal names is in the file or stored already; the rest as the form checks."""
    other = profile["reversal_of"]
    if other is not None and other not in names and db.session.scalar(
            db.select(Profile.id).where(Profile.name == other)) is None:
        raise ImportProblem(profile["name"], "reversal_of", f"no profile named {other!r} (in the file or stored)")
    problem = reversal_problem(profile["reversal_types"], _Named(other) if other else None, profile["name"],
                               registry.get(profile["export_type"]))
    if problem:
        raise ImportProblem(profile["name"], problem[0], problem[1])


def import_all(data, registry=None, secret_key=None):
    """Create or update each profile by name; nothing changes unless the whole file is valid.
    Each profile created or changed gets a profile.import audit entry (the upload and the CLI
    name who acts with audit.acting_as)."""
    from flask import current_app

    registry = registry or current_app.extensions["export_types"]
    secret_key = secret_key or current_app.config["SECRET_KEY"]
    created = updated = 0
    due, changed = [], []
    checked_profiles = check_file(data, registry)
    for checked in checked_profiles:
        profile = db.session.scalar(db.select(Profile).where(Profile.name == checked["name"]))
        before = snapshot(profile) if profile is not None else None
        old_window = windows.of(profile) if profile is not None else None
        if profile is None:
            profile = Profile(name=checked["name"])
            db.session.add(profile)
            created += 1
        else:
            updated += 1
        _apply(profile, checked, registry.get(checked["export_type"]), secret_key)
        due += schedule.rewindow(profile, old_window)
        changed.append((profile, before))
    db.session.flush()  # every profile of the file has its id: a reversal may name any of them
    by_name = {p.name: p for p, _ in changed}
    for (profile, before), checked in zip(changed, checked_profiles):
        other = checked["reversal_of"]
        profile.reversal_of = by_name.get(other) or (db.session.scalar(
            db.select(Profile).where(Profile.name == other)) if other else None)
        record_change("profile.import", profile, before,
                      "Created by the profiles JSON" if before is None else "Updated by the profiles JSON")
    db.session.commit()
    if due:
        schedule.wake(due)
    return created, updated


def _apply(profile, checked, cls, secret_key):
    same_type = profile.export_type == cls.key
    settings = merge_secrets(cls, dict(checked["settings"]), checked["secrets"], profile.settings or {},
                             same_type, secret_key)
    try:  # **** in a URL keeps the stored credential, as a secret setting's mask does
        settings = protect_urls(cls, settings, profile.settings if same_type else {}, secret_key)
    except SettingProblem as problem:
        raise ImportProblem(checked["name"], f"settings.{problem.setting}", str(problem))
    mappings = _mappings_to_store(checked, profile.mappings, secret_key)
    profile.export_type = cls.key
    profile.settings = settings
    profile.delay_minutes = checked["delay_minutes"]
    for flag in FLAGS:
        setattr(profile, flag, checked[flag])
    for column in windows.COLUMNS:
        setattr(profile, column, checked[column])
    profile.mappings = [FieldMapping(position=i, **m) for i, m in enumerate(mappings)]
    profile.routes = [Route(**r) for r in checked["routes"]]
    profile.reversal_types = ",".join(checked["reversal_types"]) if checked["reversal_of"] else ""
    profile.dedupe_days, profile.dedupe_by = checked["dedupe_days"], checked["dedupe_by"]
