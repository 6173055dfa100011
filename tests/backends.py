"""HTTP backends for the tests of sources: real servers on free ports that the tests script.

`Backend` runs on the test's own event loop (aiohttp's test server); `ThreadBackend` is a
`http.server` in a thread, for tests that run `hotline` in a subprocess or call synchronous code.
Both answer GET /api/accounts/{phone} from `accounts` and note every request they get.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from aiohttp import web
from aiohttp.test_utils import TestServer

ACCOUNTS = {
    "13800138000": {"name": "张先生", "balance": "86.50", "plan": "5G 畅享"},
    "13912345678": {"name": "李女士", "balance": "12.00", "plan": "4G 飞享"},
}


@dataclass
class Seen:
    """One request as the backend got it."""

    method: str
    raw_path: str  # path and query, as sent
    headers: dict[str, str]
    body: bytes


@dataclass
class Backend:
    """A billing backend on the test's loop. Script it: `statuses` are answered first, one per request
    (then the accounts); `raw` is sent instead of JSON; `gate`, when set, holds every request until
    it is set; `delay` answers late. `requests` and `cancelled` (requests whose client went away)
    say what it saw."""

    accounts: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(ACCOUNTS))
    statuses: list[int] = field(default_factory=list)
    raw: bytes | None = None
    gate: asyncio.Event | None = None
    delay: float = 0.0
    requests: list[Seen] = field(default_factory=list)
    cancelled: int = 0
    server: TestServer | None = None

    async def start(self) -> Backend:
        app = web.Application()
        app.router.add_route("*", "/api/accounts/{phone}", self._account)
        self.server = TestServer(app)  # handlers are cancelled when their client goes away
        await self.server.start_server()
        return self

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}"

    async def close(self) -> None:
        if self.gate is not None:
            self.gate.set()
        if self.server is not None:
            await self.server.close()

    async def _account(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(
            Seen(request.method, request.raw_path, dict(request.headers), await request.read())
        )
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.delay:
                await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.statuses:
            return web.json_response({"error": "scripted"}, status=self.statuses.pop(0))
        if self.raw is not None:
            return web.Response(body=self.raw, content_type="application/json")
        found = self.accounts.get(request.match_info["phone"])
        if found is None:
            return web.json_response({"error": "no such account"}, status=404)
        return web.json_response({"data": {"account": found}})


class ThreadBackend:
    """The same accounts from `http.server` in a thread (for synchronous callers and subprocesses)."""

    def __init__(self, accounts: dict[str, dict[str, Any]] | None = None, delay: float = 0.0) -> None:
        data = accounts if accounts is not None else dict(ACCOUNTS)
        seen: list[str] = []
        self.requests = seen
        stop = threading.Event()
        self._stop = stop

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(self.path)
                if delay:
                    stop.wait(delay)
                phone = unquote(urlsplit(self.path).path.rsplit("/", 1)[-1])
                found = data.get(phone)
                body = json.dumps({"data": {"account": found}} if found else {"error": "none"}).encode()
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
