"""The admin HTTP endpoint: /healthz (the process runs), /readyz (listening, menu loaded), /metrics.

Deliberately tiny: one request per connection, bounded request size and time, HTTP/1.0 answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final, cast

MAX_REQUEST: Final = 8192
REQUEST_TIMEOUT: Final = 5.0


class AdminProtocol(asyncio.Protocol):
    """Answers one HTTP request, then closes."""

    def __init__(self, ready: Callable[[], bool], metrics: Callable[[], bytes]) -> None:
        self.ready = ready
        self.metrics = metrics
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.transport = transport
        self.timer = asyncio.get_running_loop().call_later(REQUEST_TIMEOUT, transport.abort)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if b"\r\n\r\n" not in self.buf and b"\n\n" not in self.buf:
            if len(self.buf) > MAX_REQUEST:
                self.respond(431, "request too large\n")
            return
        parts = self.buf.split(b"\n", 1)[0].split()
        method = parts[0] if parts else b""
        path = parts[1].split(b"?", 1)[0] if len(parts) > 1 else b""
        if method not in (b"GET", b"HEAD"):
            self.respond(405, "method not allowed\n")
        elif path == b"/healthz":
            self.respond(200, "ok\n")
        elif path == b"/readyz":
            ok = self.ready()
            self.respond(200 if ok else 503, "ready\n" if ok else "not ready\n")
        elif path == b"/metrics":
            self.respond(200, self.metrics(), "text/plain; version=0.0.4; charset=utf-8")
        else:
            self.respond(404, "not found; try /healthz, /readyz or /metrics\n")

    def respond(
        self, status: int, body: str | bytes, content_type: str = "text/plain; charset=utf-8"
    ) -> None:
        reason = {
            200: "OK",
            404: "Not Found",
            405: "Method Not Allowed",
            431: "Request Header Fields Too Large",
            503: "Service Unavailable",
        }[status]
        payload = body.encode() if isinstance(body, str) else body
        head = (
            f"HTTP/1.0 {status} {reason}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
        ).encode()
        if self.transport is not None:
            self.transport.write(head + payload)
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
