"""Standard Webhooks signatures (standardwebhooks.com), the pure part: secrets and the signature.

A secret is `whsec_` followed by base64; the key is the bytes the base64 stands for. A request is
signed as `v1,<base64 of HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>")>`, which the
receivers' libraries (Python `standardwebhooks`, its Node, Go and Java ports) check.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from typing import Final

PREFIX: Final = "whsec_"
KEY_BYTES: Final = 32  # of a new secret


class SecretError(ValueError):
    """The text is not a `whsec_` + base64 secret."""


def new_secret() -> str:
    """A new secret, `hotline hooks secret`'s answer."""
    return PREFIX + base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def key_of(secret: str) -> bytes:
    """The key a secret stands for; SecretError when it is not `whsec_` + base64 of some bytes."""
    if not secret.startswith(PREFIX):
        raise SecretError("does not start with whsec_")
    try:
        key = base64.b64decode(secret[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise SecretError("is not base64 after whsec_") from None
    if len(key) < 16:
        raise SecretError(f"holds {len(key)} bytes; use at least 16 (`hotline hooks secret` makes 32)")
    return key


def sign(key: bytes, event_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header's value."""
    mac = hmac.new(key, f"{event_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()
