"""PCI masking, secret encryption at rest, and the guard against private export targets."""
import base64
import hashlib
import ipaddress
import re
import secrets
import socket
from urllib.parse import quote, quote_plus, urlsplit

from cryptography.fernet import Fernet, InvalidToken

ENCRYPTED_PREFIX = "enc:"
CVV_KEYS = frozenset({"cvv", "cvv2", "cvc", "cardsecuritycode", "securitycode"})  # lowercase
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


# --- CVV ------------------------------------------------------------------------

def without_cvv(value):
    """value (an order) without any key named like a CVV, in any case, at any depth, lists included."""
    if isinstance(value, dict):
        return {k: without_cvv(v) for k, v in value.items() if k.lower() not in CVV_KEYS}
    if isinstance(value, list):
        return [without_cvv(v) for v in value]
    return value


# --- masking ------------------------------------------------------------------

def mask_card(number):
    """First 6 and last 4 digits at most, as PCI DSS allows."""
    digits = re.sub(r"\D", "", number or "")
    if len(digits) < 12:
        return MASK if digits else ""
    return digits[:6] + "*" * (len(digits) - 10) + digits[-4:]


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


# --- export targets -------------------------------------------------------------

class TargetRefused(ValueError):
    pass


def check_target_host(host, allow_private):
    """Refuse loopback, private, link-local and reserved addresses unless allowed (SSRF guard)."""
    if allow_private:
        return
    if not host:
        raise TargetRefused("no host")
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        raise TargetRefused(f"cannot resolve {host}: {exc}") from exc
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%")[0])
        if not ip.is_global:
            raise TargetRefused(
                f"{host} resolves to {ip}, a private address; set EXPORTER_ALLOW_PRIVATE_TARGETS to allow it")


def check_target_url(url, allow_private):
    check_target_host(urlsplit(url).hostname, allow_private)
