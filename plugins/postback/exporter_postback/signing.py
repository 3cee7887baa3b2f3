"""Standard Webhooks signing (https://www.standardwebhooks.com): three headers on each request.

webhook-signature is `v1,` + base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}")), where the
body is the exact bytes sent (the empty string for a GET). The key is the secret's UTF-8
bytes, or, for a `whsec_...` secret as Standard Webhooks libraries make them, the bytes of
the base64 after the prefix, so a receiver using such a library verifies it unchanged.
"""
import base64
import binascii
import hashlib
import hmac
import time

PREFIX = "whsec_"


def signing_key(secret: str) -> bytes:
    if secret.startswith(PREFIX):
        try:
            return base64.b64decode(secret[len(PREFIX):], validate=True)
        except binascii.Error as exc:
            raise ValueError("a whsec_ secret must be base64 after the prefix") from exc
    return secret.encode()


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, message_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The three headers for one request; the timestamp is taken now, on every try."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(secret, message_id, timestamp, body)}
