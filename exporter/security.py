"""PCI masking, secret encryption at rest, and the guard against private export targets.

Over 400 lines: the private-target guard (URL parsing, resolving, pinning) is most of it and
reads best whole, beside the masking it shares its tests and docs/security.md with."""
import base64
import functools
import hashlib
import ipaddress
import re
import secrets
import socket
from urllib.parse import quote, quote_plus, unquote_plus, urlsplit, urlunsplit

import requests
from cryptography.fernet import Fernet, InvalidToken
from requests.adapters import HTTPAdapter

from . import cards

ENCRYPTED_PREFIX = "enc:"
MASK = "****"


# --- encryption ---------------------------------------------------------------

def _fernet(secret_key):
    key = hashlib.sha256(("exporter-secrets:" + secret_key).encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt(secret_key, text):
    return ENCRYPTED_PREFIX + _fernet(secret_key).encrypt(text.encode()).decode()


def decrypt(secret_key, token):
    if not token or not token.startswith(ENCRYPTED_PREFIX):
        return token
    try:
        return _fernet(secret_key).decrypt(token[len(ENCRYPTED_PREFIX):].encode()).decode()
    except InvalidToken as exc:
        raise ValueError("a stored secret cannot be decrypted with this SECRET_KEY") from exc


def hash_token(token):
    """Intake tokens are stored as this hash; the token itself is shown once."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token():
    return "exp_" + secrets.token_urlsafe(32)


# --- card data at intake -----------------------------------------------------------------
#
# At intake anything CVV-like is dropped, at any depth, under any spelling; a card number in any
# shape (cards.py: separators, inside text, a JSON number, NFKC digits) is masked where it sits,
# under any key; the catalog's other sensitive fields are encrypted. Only then is the order stored.

# The CRM's ids: long numbers that are not cards, and must stay usable.
ID_KEYS = frozenset({"orderId", "customerId", "campaignId", "productId"})
CARD_KEY = "cardNumber"
is_cvv_key = cards.is_cvv_key


def scrub_order(order, secret_key):
    """(the order as it may be stored, the card numbers found in it, the first one being the
    order's own cardNumber when it has one).

    CVV-like keys are dropped at any depth; card numbers under any other key (billing.cardNumber,
    products[0].cardNumber, a note's text, a JSON number...) are masked where they sit and
    returned; the catalog's sensitive fields (expiry, ACH numbers) are encrypted with secret_key.
    The CRM's ids are kept as they are when they are integers.
    """
    order = dict(order)
    main = order.pop(CARD_KEY, None)  # the intake checked it: digits only
    found = [str(main)] if main else []
    clean = cards.scrubbed(order, found, ID_KEYS)  # a dict in, a dict out
    for key in _encrypted_keys():
        value = clean.get(key)
        if value not in (None, "") and not isinstance(value, (dict, list)):
            clean[key] = encrypt(secret_key, str(value))
    return clean, found


@functools.cache
def _encrypted_keys():
    from .catalog import SENSITIVE

    return tuple(SENSITIVE - {CARD_KEY})


def opened_order(order, secret_key, pci_documented):
    """The stored order as a mapping reads it: sensitive fields decrypted for a profile whose PCI
    documentation is on file, left out for any other."""
    from .catalog import SENSITIVE

    opened = dict(order or {})
    for key in SENSITIVE & opened.keys():
        value = opened.pop(key)
        if pci_documented and isinstance(value, str):
            opened[key] = decrypt(secret_key, value)
    return opened


def without_cvv(value):
    """value (an order) without any key named like a CVV, in any case, at any depth, lists included."""
    if isinstance(value, dict):
        return {k: without_cvv(v) for k, v in value.items() if not is_cvv_key(k)}
    if isinstance(value, list):
        return [without_cvv(v) for v in value]
    return value


# --- masking ------------------------------------------------------------------

def mask_card(number):
    """First 6 and last 4 digits at most, as PCI DSS allows."""
    return cards.mask(re.sub(r"\D", "", number or ""))


def mask_value(value):
    """Any other sensitive value (expiry, bank account): keep at most the last 2 characters."""
    text = str(value or "")
    if len(text) <= 4:
        return MASK if text else ""
    return "*" * (len(text) - 2) + text[-2:]


def masked(value, field=None):
    return mask_card(value) if field == "cardNumber" else mask_value(value)


def redact(text, secrets_):
    """Replace each secret in text (raw and URL-encoded) by its masked form."""
    if not text:
        return text
    for raw, replacement in secrets_:
        if not raw:
            continue
        for form in {raw, quote(raw, safe=""), quote_plus(raw)}:
            text = text.replace(form, replacement)
    return text


# --- credentials in Static mappings and URLs --------------------------------------------------
#
# A Static Value is a secret when its mapping becomes a header (`header:X-Api-Key`) or its Export
# Name is credential-like; a URL's userinfo and its credential-like query parameters are secrets
# too. They are stored encrypted and shown as MASK; MASK (or a blank) given back keeps the stored
# value. Names are compared as words: api_key, X-Api-Key, apiKey and APIKEY all hold "key" or
# "apikey"; monkey and keyword do not.

DEFAULT_SECRET_NAMES = ("password", "pass", "key", "token", "secret", "apikey")
HEADER_PREFIX = "header:"
_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORD_BREAK = re.compile(r"[^a-z0-9]+")


def _words(name):
    words = [w for w in _WORD_BREAK.split(_CAMEL_HUMP.sub(" ", str(name)).lower()) if w]
    return words + ["".join(words)]


def is_credential_name(name, secret_names=DEFAULT_SECRET_NAMES):
    """Whether a parameter or Export Name names a credential: one of its words, or all of them
    run together, is one of secret_names (each read the same way: "api_key" is "apikey")."""
    wanted = {"".join(_WORD_BREAK.split(str(n).lower())) for n in secret_names}
    return any(word in wanted for word in _words(name))


def is_secret_mapping(export_name, field, secret_names=DEFAULT_SECRET_NAMES):
    """A Static mapping whose value is a secret: a header, or a credential-like Export Name."""
    if field != "static":
        return False
    name = str(export_name or "").strip()
    return name.lower().startswith(HEADER_PREFIX) or is_credential_name(name, secret_names)


def masked_url(url, secret_names=DEFAULT_SECRET_NAMES):
    """(url with its userinfo and credential-like query values as MASK, whether it had any)."""
    parts = urlsplit(url)
    netloc, found = parts.netloc, False
    userinfo, at, host = netloc.rpartition("@")
    if at and userinfo:
        netloc, found = f"{MASK}@{host}", True
    pieces = []
    for piece in parts.query.split("&") if parts.query else []:
        name, eq, value = piece.partition("=")
        if eq and value and is_credential_name(unquote_plus(name), secret_names):
            piece, found = f"{name}={MASK}", True
        pieces.append(piece)
    return urlunsplit((parts.scheme, netloc, parts.path, "&".join(pieces), parts.fragment)), found


def url_with_stored_credentials(url, stored, secret_names=DEFAULT_SECRET_NAMES):
    """url where each MASK (the userinfo, a credential-like query value) is the stored URL's own;
    ValueError when the stored URL has none there."""
    if MASK not in url and quote(MASK) not in url:
        return url
    parts, old = urlsplit(url), urlsplit(stored or "")
    netloc = parts.netloc
    userinfo, at, host = netloc.rpartition("@")
    if at and userinfo == MASK:
        old_userinfo, old_at, _ = old.netloc.rpartition("@")
        if not old_at:
            raise ValueError(f"{MASK} stands for the stored user and password, but the stored URL has none: type them")
        netloc = f"{old_userinfo}@{host}"
    stored_values = {}
    for piece in old.query.split("&") if old.query else []:
        name, _, value = piece.partition("=")
        stored_values.setdefault(name, []).append(value)
    pieces = []
    for piece in parts.query.split("&") if parts.query else []:
        name, eq, value = piece.partition("=")
        if eq and unquote_plus(value) == MASK and is_credential_name(unquote_plus(name), secret_names):
            if not stored_values.get(name):
                raise ValueError(f"{MASK} stands for the stored {unquote_plus(name)}, but the stored URL has none: type it")
            piece = f"{name}={stored_values[name].pop(0)}"
        pieces.append(piece)
    return urlunsplit((parts.scheme, netloc, parts.path, "&".join(pieces), parts.fragment))


def url_secret_pairs(url, secret_names=DEFAULT_SECRET_NAMES):
    """(raw, masked) pairs that mask a URL's credentials wherever its text is logged: the userinfo,
    and each credential-like parameter with its name (a short value alone would mask too much)."""
    parts = urlsplit(url or "")
    pairs = []
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at and userinfo:
        pairs.append((f"//{userinfo}@", f"//{MASK}@"))
    for piece in parts.query.split("&") if parts.query else []:
        name, eq, value = piece.partition("=")
        if eq and value and is_credential_name(unquote_plus(name), secret_names):
            pairs.append((piece, f"{name}={MASK}"))
            if len(unquote_plus(value)) >= 4:  # quoted differently in an error text, say
                pairs.append((unquote_plus(value), MASK))
    return pairs


# --- export targets -------------------------------------------------------------
#
# An export target is checked where it is connected to: the name is resolved once, every
# address it gives is checked, and the connection goes to that checked address (pinned), so
# a second DNS answer cannot point inside. A URL is read with the parser the sender uses
# (urllib3's) and refused when Python's urlsplit reads it differently (a backslash, ...).

ALLOW_HINT = "set EXPORTER_ALLOW_PRIVATE_TARGETS=true to allow private targets"
NAT64 = ipaddress.ip_network("64:ff9b::/96")
URL_FORBIDDEN = re.compile(r"[\\\s\x00-\x1f\x7f]")  # backslash, whitespace, control characters


class TargetRefused(ValueError):
    pass


def embedded_ipv4(ip):
    """The IPv4 address an IPv6 one carries (mapped, NAT64, 6to4, Teredo client), or None."""
    if ip.version != 6:
        return None
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    return None


def address_problem(ip):
    """What kind of private address this is (loopback, multicast, reserved...), or None for a public one."""
    ip = ipaddress.ip_address(str(ip).split("%")[0])
    inner = embedded_ipv4(ip)
    if inner is not None:
        problem = address_problem(inner)
        if problem:
            return f"{problem}: {inner} inside {ip}"
        if ip in NAT64 or ip.sixtofour or ip.ipv4_mapped:
            return None  # judged by the public IPv4 address it carries
    if ip.is_multicast:
        return "multicast"
    if ip.is_loopback or ip.is_unspecified:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_reserved or not ip.is_global:
        return "private or reserved"
    return None


UNRESOLVED = "could not resolve host"


def resolve_target(host, port=None, allow_private=False):
    """The addresses to connect to for host, each one checked: connect only to these.

    TargetRefused when the name does not resolve, or when any address it resolves to is
    private (unless allowed).
    """
    if not host:
        raise TargetRefused("no host")
    literal = _ip_literal(host)
    if literal is not None:  # nothing to resolve: a name lookup per send would cost more than the send
        problem = None if allow_private else address_problem(literal)
        if problem:
            same = host.strip("[]") == literal  # "127.0.0.1 is 127.0.0.1" says nothing
            what = "a private address" if same else f"{literal}, a private address"
            raise TargetRefused(f"{host} is {what} ({problem}); {ALLOW_HINT}")
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        # The first line in plain words, as lists show errors; the resolver's own words below it.
        raise TargetRefused(f"{UNRESOLVED} {host}\n{exc}") from exc
    addresses = []
    for info in infos:
        address = info[4][0].split("%")[0]
        problem = None if allow_private else address_problem(address)
        if problem:
            raise TargetRefused(f"{host} resolves to {address}, a private address ({problem}); {ALLOW_HINT}")
        if address not in addresses:
            addresses.append(address)
    return addresses


def _ip_literal(host):
    """The address a host names itself (127.0.0.1, ::1, [::1]), in the form getaddrinfo gives, or None."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def check_target_host(host, allow_private):
    """Refuse loopback, private, link-local, multicast and reserved addresses unless allowed."""
    if not allow_private:
        resolve_target(host, None, allow_private)


class Target:
    """A URL's scheme, host and port as both the sender (urllib3) and urlsplit read them."""

    def __init__(self, scheme, host, port):
        self.scheme, self.host, self.port = scheme, host, port

    @property
    def host_header(self):
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = {"http": 80, "https": 443}.get(self.scheme)
        return host if self.port == default else f"{host}:{self.port}"


def parse_target(url):
    """The URL's target; TargetRefused when it is not a plain http(s) URL that every parser
    reads alike (the backslash trick: urlsplit sees one host, urllib3 connects to another)."""
    url = url or ""
    if URL_FORBIDDEN.search(url):
        raise TargetRefused("the URL has a backslash, a space or a control character")
    # Without those characters every parser ends the authority at the first / ? or #, so the
    # target is the scheme and authority's alone: parsed once, not at every send.
    return _parse_authority(_AUTHORITY.match(url).group())


_AUTHORITY = re.compile(r"[^/?#]*(//[^/?#]*)?")


@functools.lru_cache(maxsize=4096)
def _parse_authority(url):
    from urllib3.exceptions import LocationParseError
    from urllib3.util import parse_url

    try:
        ours, theirs = urlsplit(url), parse_url(url)
        ours_port = ours.port
    except (ValueError, LocationParseError) as exc:
        raise TargetRefused(f"not a valid URL: {exc}") from None
    scheme = (theirs.scheme or "").lower()
    if scheme not in ("http", "https") or not theirs.host:
        raise TargetRefused("the URL must be http:// or https:// with a host")
    host = theirs.host.strip("[]").lower()
    port = theirs.port or (443 if scheme == "https" else 80)
    if (ours.hostname or "").lower() != host or (ours_port or port) != port:
        raise TargetRefused("the URL is ambiguous: its host reads differently to different parsers")
    return Target(scheme, host, port)


def check_target_url(url, allow_private):
    """The URL's Target, its host checked (see parse_target and resolve_target)."""
    target = parse_target(url)
    if not allow_private:
        resolve_target(target.host, target.port, allow_private)
    return target


def target_setting_problem(settings, allow_private):
    """(setting, message) when a profile's target (its `url`, else its `host`) is a private
    address and private targets are not allowed; checked when a profile is saved or imported.
    A name that does not resolve now is left for the send to report."""
    settings = settings or {}
    key = "url" if settings.get("url") else "host"
    try:
        if settings.get("url"):
            target = parse_target(settings["url"])
            host, port = target.host, target.port
        elif settings.get("host"):
            host, port = str(settings["host"]).strip(), None
        else:
            return None
        if not allow_private:
            resolve_target(host, port, allow_private)
    except TargetRefused as exc:
        if str(exc).startswith(UNRESOLVED):
            return None
        return key, str(exc)
    return None


def refuse_private_target(form, allow_private):
    """Put target_setting_problem's message beside the settings form's field (a WTForms form)."""
    problem = target_setting_problem(form.data, allow_private)
    if problem and problem[0] in form and not form[problem[0]].errors:
        form[problem[0]].errors = [*form[problem[0]].errors, problem[1]]


# --- pinned HTTP connections ------------------------------------------------------------------

class PinnedAdapter(HTTPAdapter):
    """A requests transport adapter that connects to the address it checked.

    Each send parses the URL (parse_target), resolves its host once and checks every
    address (resolve_target), then connects to the first one while Host, TLS SNI and the
    certificate check keep the name. Mount it on a Session (``session.mount("http://", a)``
    and ``"https://"``): pools are kept per pinned address and name, and the adapter keeps
    no per-request state, so one Session may send from several threads. Proxies are not
    used: an export target is always connected to directly.
    """

    def __init__(self, allow_private=False, **kwargs):
        self.allow_private = allow_private
        super().__init__(**kwargs)

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        target = parse_target(request.url)
        address = resolve_target(target.host, target.port, self.allow_private)[0]
        # Host and Accept-Encoding first, as http.client would have put them.
        headers = requests.structures.CaseInsensitiveDict({"Host": target.host_header, "Accept-Encoding": "identity"})
        headers.update((k, v) for k, v in request.headers.items() if k.lower() != "host")
        request.headers = headers
        request.exporter_pin = (target.host, address)
        try:
            return super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=None)
        except requests.RequestException as exc:  # say the name the admin typed, not the address it had
            text = str(exc).replace(f"host='{address}'", f"host='{target.host}'")
            raise type(exc)(text, request=exc.request, response=exc.response) from exc

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        name, address = request.exporter_pin
        host_params["host"] = address
        if host_params["scheme"] == "https":
            pool_kwargs["server_hostname"] = name  # SNI and the certificate check use the name
        return host_params, pool_kwargs


def pinned_session(allow_private=False, **adapter_kwargs):
    """A requests Session whose http and https go through a PinnedAdapter, ignoring proxy
    settings from the environment."""
    session = requests.Session()
    session.trust_env = False
    adapter = PinnedAdapter(allow_private=allow_private, **adapter_kwargs)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
