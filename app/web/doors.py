"""The admin port's door (README.md, "The doors"): what a connection must do to be served, before
aiohttp sees it, and who the client really is.

- **Connections** (`DoorSite`, `Guarded`): at most `max_http_connections` in all and PER_ADDRESS from
  one address (a trusted proxy's connections count only in the total: its clients are many); past
  either a new connection is closed at once. A request's headers must be complete within
  HEADER_TIMEOUT of its first byte (of the connection's first byte for the first request), else
  408 and closed: aiohttp has no such limit (slowloris). aiohttp's own keep-alive timeout closes a
  connection idle between requests after KEEPALIVE.
- **Who the client is** (`middleware`): `X-Forwarded-For`, `-Proto` and `-Host` are believed only from
  the addresses in HOTLINE_PROXY_FROM; then `request.remote` is the client (lock-outs count it),
  `request.secure` says HTTPS (the cookie gets `Secure`), `request.host` is the name it asked for.
- **Which names it answers** (`Names`): `localhost`, loopback addresses, the bound address, the address
  the connection came in on, and HOTLINE_ALLOWED_HOSTS. Any other `Host` gets 421 and nothing else: a
  web page whose name an attacker points at 127.0.0.1 (DNS rebinding) cannot read the console. The
  WebSocket's and forms' Origin is checked against the same names. `/healthz`, `/readyz` and `/metrics`
  answer any name: probes and scrapers use the platform's service names, and they serve only counts.
- **Malformed requests** (`ErrorLog`): aiohttp logs each one as a plain traceback, and an oversized
  header with its first bytes (a cookie). Here they are counted, and logged as one JSON line per
  address per minute naming the error's kind only.

How the header deadline knows a request's headers are complete: aiohttp's request handler counts the
messages its parser has produced (`_request_count`, a private attribute of aiohttp 3.x's
RequestHandler, pinned in the lock file; tests/web/test_doors.py fails if it changes).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol, cast
from urllib.parse import urlsplit

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

log = structlog.get_logger("hotline.web")

PER_ADDRESS: Final = 64  # open connections from one client address
HEADER_TIMEOUT: Final = 10.0  # seconds for a request's headers, from its first byte
KEEPALIVE: Final = 60.0  # seconds an idle keep-alive connection stays open
LOG_EVERY: Final = 60.0  # seconds between two log lines about one address's malformed requests
# Probes and scrapers name the service however the platform calls it (a compose service, a pod's DNS
# name): these answer any Host. They hold no session and no caller data, only counts.
OPEN_PATHS: Final = frozenset({"/healthz", "/readyz", "/metrics"})
MISDIRECTED: Final = "misdirected request: this server does not serve that name\n"
_TIMED_OUT: Final = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class Refusals(Protocol):
    """Where refused and cut-off connections are counted (`hotline_refused_total{reason}`) and logged
    once per address and reason (unless `quiet`: the caller logs it its own way)."""

    def refuse(self, peer: str, reason: str, quiet: bool = False) -> None: ...


def _address(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) else str(peer or "")


class Doors:
    """The admin port's connection counts and limits."""

    def __init__(self, refusals: Refusals, max_connections: int, proxies: frozenset[str]) -> None:
        self.refusals = refusals
        self.max_connections = max_connections
        self.proxies = proxies
        self.open = 0
        self.per_address: dict[str, int] = {}

    def admit(self, address: str) -> bool:
        if self.open >= self.max_connections:
            self.refusals.refuse(address, "http_connections")
            return False
        if address not in self.proxies:
            count = self.per_address.get(address, 0)
            if count >= PER_ADDRESS:
                self.refusals.refuse(address, "http_connections_per_address")
                return False
            self.per_address[address] = count + 1
        self.open += 1
        return True

    def leave(self, address: str) -> None:
        self.open -= 1
        count = self.per_address.get(address)
        if count is not None:
            if count > 1:
                self.per_address[address] = count - 1
            else:
                del self.per_address[address]


class Guarded(asyncio.Protocol):
    """One admin-port connection: admitted or closed at once, then handed to aiohttp's request handler
    with a deadline on each request's headers."""

    def __init__(self, doors: Doors, handler_factory: Callable[[], Any]) -> None:
        self.doors = doors
        self.handler_factory = handler_factory
        self.handler: Any = None  # aiohttp's RequestHandler, once admitted
        self.transport: asyncio.Transport | None = None
        self.address = ""
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.address = _address(transport)
        if not self.doors.admit(self.address):
            cast(asyncio.Transport, transport).abort()
            return
        self.transport = cast(asyncio.Transport, transport)
        self.handler = self.handler_factory()
        self.handler.connection_made(transport)
        self._start_deadline()

    def data_received(self, data: bytes) -> None:
        handler = self.handler
        if handler is None:
            return
        before = handler._request_count
        handler.data_received(data)
        if handler._request_count != before:  # a request's headers are complete
            self._stop_deadline()
        elif self.deadline is None and _idle(handler):  # the first bytes of the next request
            self._start_deadline()

    def eof_received(self) -> bool | None:
        return self.handler.eof_received() if self.handler is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        if self.handler is not None:
            self.doors.leave(self.address)
            handler, self.handler = self.handler, None
            handler.connection_lost(exc)
        self.transport = None

    def pause_writing(self) -> None:
        if self.handler is not None:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        if self.handler is not None:
            self.handler.resume_writing()

    def _start_deadline(self) -> None:
        self.deadline = asyncio.get_running_loop().call_later(HEADER_TIMEOUT, self._too_slow)

    def _stop_deadline(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _too_slow(self) -> None:
        self.deadline = None
        transport = self.transport
        if transport is not None and not transport.is_closing():
            self.doors.refusals.refuse(self.address, "http_header_timeout")
            transport.write(_TIMED_OUT)
            transport.close()


def _idle(handler: Any) -> bool:
    """aiohttp's handler waits for the next request (no request is being served)."""
    waiter = handler._waiter
    return waiter is not None and not waiter.done()


class DoorSite(web.BaseSite):
    """aiohttp's TCPSite with each connection going through `Guarded` first."""

    __slots__ = ("_doors", "_host", "_port")

    def __init__(self, runner: web.BaseRunner, host: str, port: int, doors: Doors) -> None:
        super().__init__(runner, backlog=1024)
        self._host, self._port, self._doors = host, port, doors

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        doors = self._doors
        self._server = await loop.create_server(
            lambda: Guarded(doors, server), self._host, self._port, backlog=self._backlog, reuse_address=True
        )


# ---- who the client is, and which names this port answers -------------------------------------


def _host_name(host: str) -> str:
    """`Host` (or an Origin's netloc) without its port, lower case: 'LocalHost:9108' -> 'localhost'."""
    try:
        name = urlsplit("//" + host).hostname or ""
    except ValueError:
        return ""
    return name.rstrip(".")


class Names:
    """The host names the admin port answers to."""

    def __init__(self, bound: str, allowed: str | None) -> None:
        names = (allowed or "").split(",")
        self.fixed = {"localhost"} | {n.strip().lower().rstrip(".") for n in names if n.strip()}
        if bound not in ("0.0.0.0", "::", ""):
            self.fixed.add(_host_name(bound) or bound)

    def allows(self, name: str, local_address: str) -> bool:
        if not name:
            return False
        if name in self.fixed or name == local_address:
            return True
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False


def _local_address(request: web.Request) -> str:
    transport = request.transport
    sock = transport.get_extra_info("sockname") if transport is not None else None
    return str(sock[0]) if isinstance(sock, tuple) else ""


def same_origin(request: web.Request, names: Names) -> bool:
    """The request comes from a page of this site: its Origin names a host this port answers to, and
    the one this request was sent to (browsers send Origin on POST and on the WebSocket upgrade)."""
    origin = request.headers.get("Origin")
    if not origin:
        return False
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https"):
        return False
    return names.allows(_host_name(parts.netloc), _local_address(request)) and parts.netloc == request.host


def _client(forwarded_for: list[str], proxies: frozenset[str]) -> str | None:
    """The client in an X-Forwarded-For chain: the nearest address that is not a trusted proxy."""
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
    for hop in reversed(hops):
        try:
            address = str(ipaddress.ip_address(hop))
        except ValueError:
            return None  # garbage in the chain: believe none of it
        if address not in proxies:
            return address
    return None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def middleware(names: Names, proxies: frozenset[str], refusals: Refusals) -> Any:
    """The client behind a trusted proxy, then the Host check (421 for a name this port does not serve)."""

    @web.middleware
    async def doors(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host")
        if request.remote in proxies:
            changes: dict[str, Any] = {}
            client = _client(request.headers.getall("X-Forwarded-For", []), proxies)
            if client is not None:
                changes["remote"] = client
            proto = request.headers.getall("X-Forwarded-Proto", [])
            if proto and proto[-1].strip().lower() in ("http", "https"):
                changes["scheme"] = proto[-1].strip().lower()
            forwarded_host = request.headers.getall("X-Forwarded-Host", [])
            if forwarded_host:
                host = changes["host"] = forwarded_host[-1].split(",")[-1].strip()
            if changes:
                request = request.clone(**changes)
        if (
            host is not None
            and request.path not in OPEN_PATHS
            and not names.allows(_host_name(host), _local_address(request))
        ):
            refusals.refuse(request.remote or "?", "http_host")
            return web.Response(status=421, text=MISDIRECTED)
        return await handler(request)

    return doors


# ---- malformed requests -------------------------------------------------------------------------


class ErrorLog(logging.Logger):
    """aiohttp's server logger: a malformed request is counted and logged once a minute per address,
    as JSON, by the kind of error only (never a header's bytes, never a traceback). Anything else
    aiohttp reports (a bug in a handler) is logged with its traceback."""

    def __init__(self, refusals: Refusals) -> None:
        super().__init__("hotline.http", logging.DEBUG)
        self.refusals = refusals
        self.logged: dict[str, float] = {}

    def _log(self, level: int, msg: object, args: Any, exc_info: Any = None, *rest: Any, **kw: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1] if exc_info else None
        address = str(args[0]) if isinstance(args, tuple) and args else "?"
        if isinstance(exc, HttpProcessingError):
            self.bad_request(address, exc)
        elif level >= logging.ERROR:
            log.error("http_error", peer=address, error=type(exc).__name__ if exc else str(msg), exc_info=exc)

    def bad_request(self, address: str, exc: HttpProcessingError) -> None:
        self.refusals.refuse(address, "http_bad_request", quiet=True)
        now = time.monotonic()
        if now - self.logged.get(address, -LOG_EVERY) < LOG_EVERY:
            return
        if len(self.logged) >= 10_000:  # bounded under a flood from many addresses
            self.logged = {a: t for a, t in self.logged.items() if now - t < LOG_EVERY}
        self.logged[address] = now
        log.warning("http_bad_request", peer=address, error=type(exc).__name__, status=exc.code)
