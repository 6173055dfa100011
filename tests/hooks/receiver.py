"""A webhook receiver for the tests: a real HTTP server on a free port, in a thread of its own (so a
test may block, or run its own event loop, while deliveries come in). It keeps every request and
answers as `answer` says; a Standard Webhooks library checks the signatures."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook


@dataclass
class Request:
    headers: dict[str, str]
    body: bytes
    path: str

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def verified(self, secret: str) -> Any:
        """The body, once the `standardwebhooks` package has checked its signature (raises if not)."""
        return Webhook(secret).verify(self.body, self.headers)


class Receiver:
    def __init__(self, port: int = 0, answer: Callable[[Request], int] | None = None) -> None:
        self.requests: list[Request] = []
        self.answer = answer or (lambda _: 200)
        self.location = ""  # sent with a 3xx answer
        self.active = 0
        self.most_active = 0
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = Request({k.lower(): v for k, v in self.headers.items()}, body, self.path)
                with owner._lock:
                    owner.requests.append(request)
                    owner.active += 1
                    owner.most_active = max(owner.most_active, owner.active)
                try:
                    status = owner.answer(request)
                finally:
                    with owner._lock:
                        owner.active -= 1
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", owner.location)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def of_type(self, event: str, secret: str) -> list[Any]:
        """The verified bodies of every request for events of this type, in the order they came."""
        with self._lock:
            requests = list(self.requests)
        return [body for body in (r.verified(secret) for r in requests) if body["type"] == event]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def until(cond: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Wait for `cond` (a condition, never a blind sleep); fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.01)
