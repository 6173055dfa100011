"""Agent passwords: slow salted hashes (scrypt from the standard library), never the password itself.

Format: `scrypt$N$r$p$SALT$HASH` with SALT and HASH in base64. N=2**14, r=8, p=1 costs about 16 MiB
and tens of milliseconds per check: cheap for a login, slow for someone guessing offline.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

N, R, P = 1 << 14, 8, 1
_MAXMEM = 64 << 20


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, maxmem=_MAXMEM, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${N}${R}${P}${b64(salt).decode()}${b64(digest).decode()}"


def well_formed(stored: str) -> str | None:
    """None when `stored` is a hash this module can check, else why not."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return "is not a password hash; make one with: hotline passwd"
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        base64.b64decode(parts[4], validate=True)
        base64.b64decode(parts[5], validate=True)
    except ValueError:
        return "is not a password hash; make one with: hotline passwd"
    if n < 1 << 14 or n & (n - 1) or r < 8 or p < 1 or n * r > 1 << 20:
        return "has scrypt parameters that are too weak or too costly; make one with: hotline passwd"
    return None


def verify_password(password: str, stored: str) -> bool:
    """True when `password` matches `stored`; False for a wrong password or a malformed hash."""
    if well_formed(stored) is not None:
        return False
    _, n, r, p, salt, digest = stored.split("$")
    want = base64.b64decode(digest)
    got = hashlib.scrypt(
        password.encode(),
        salt=base64.b64decode(salt),
        n=int(n),
        r=int(r),
        p=int(p),
        maxmem=_MAXMEM,
        dklen=len(want),
    )
    return hmac.compare_digest(got, want)


DUMMY_HASH = hash_password(os.urandom(8).hex())  # checked for unknown ids: the same time as a real one
