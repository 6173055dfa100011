"""Console logins: the signing secret, and sessions behind a signed, expiring cookie.

The cookie is `token.expires.signature` (HMAC-SHA256 with the secret). A session lives in this
process's memory: the signature is checked first (in constant time), so a forged or guessed cookie
never reaches the table, and logging out deletes the session for good. A restart logs every browser
out; the browser's next page shows the login form.

A session is bound to its agent's grant: a digest of the password hash, role and queues desk.yaml gave
them when they logged in. When desk.yaml changes any of these the session no longer matches and ends
(a leaked cookie does not outlive a password change). An agent holds at most MAX_PER_AGENT sessions
(a new login ends that agent's oldest, never anyone else's), and a full table refuses new logins
rather than dropping other agents' sessions.

The secret is HOTLINE_SECRET, or one generated at the first start and kept in the data folder
(`web-secret`, mode 0600), so it is never in the image, the compose file or a log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Final

COOKIE: Final = "hotline_session"
SECRET_FILE: Final = "web-secret"  # noqa: S105 - the file name, not a secret
MAX_SESSIONS: Final = 10_000
MAX_PER_AGENT: Final = 10  # browsers one agent may be logged in from at once


class SecretError(Exception):
    """The secret file cannot be read or made (the message names the path)."""


def load_secret(given: str | None, data: Path) -> bytes:
    """HOTLINE_SECRET, else the data folder's secret file (made at the first start)."""
    if given:
        return given.encode()
    path = data / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise SecretError(f"{path}: cannot create the console's secret: {exc.strerror}") from None
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise SecretError(f"{path}: cannot read the console's secret: {exc.strerror}") from None
    if len(text) < 32:
        raise SecretError(f"{path}: the console's secret is too short; delete the file to make a new one")
    return text.encode()


def grant(password_hash: str, role: str, queues: tuple[str, ...]) -> str:
    """What a login was granted, as a digest: a session ends when desk.yaml changes any of it."""
    text = "\0".join((password_hash, role, *queues))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(slots=True)
class WebSession:
    token: str
    agent_id: str
    role: str  # agent | supervisor
    expires: float
    grant: str = ""


class Sessions:
    def __init__(self, secret: bytes, lifetime: float) -> None:
        self._key = hashlib.sha256(b"hotline console cookie\0" + secret).digest()
        self.lifetime = lifetime
        self.by_token: dict[str, WebSession] = {}

    def _sign(self, payload: str) -> str:
        mac = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def create(
        self, agent_id: str, role: str, now: float, granted: str = ""
    ) -> tuple[str, WebSession] | None:
        """A new session and its cookie value; None when the table is full of other live sessions."""
        mine = [t for t, s in self.by_token.items() if s.agent_id == agent_id]
        for token in mine[: max(0, len(mine) - MAX_PER_AGENT + 1)]:  # the agent's own oldest
            del self.by_token[token]
        if len(self.by_token) >= MAX_SESSIONS:
            self.expire(now)
            if len(self.by_token) >= MAX_SESSIONS:
                return None
        token = secrets.token_urlsafe(24)
        expires = int(now + self.lifetime)
        session = WebSession(token, agent_id, role, expires, granted)
        self.by_token[token] = session
        payload = f"{token}.{expires}"
        return f"{payload}.{self._sign(payload)}", session

    def get(self, cookie: str | None, now: float) -> WebSession | None:
        if not cookie or len(cookie) > 200:
            return None
        payload, _, signature = cookie.rpartition(".")
        if not hmac.compare_digest(self._sign(payload), signature):
            return None
        token, _, expires = payload.partition(".")
        session = self.by_token.get(token)
        if session is None or not expires.isdigit() or int(expires) != session.expires:
            return None
        if now >= session.expires:
            del self.by_token[token]
            return None
        return session

    def drop(self, session: WebSession) -> None:
        self.by_token.pop(session.token, None)

    def drop_agent(self, agent_id: str) -> None:
        for token in [t for t, s in self.by_token.items() if s.agent_id == agent_id]:
            del self.by_token[token]

    def expire(self, now: float) -> None:
        for token in [t for t, s in self.by_token.items() if now >= s.expires]:
            del self.by_token[token]
