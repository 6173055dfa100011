"""A tiny billing backend for trying HTTP sources (docs/integrations.md): the demo accounts, over HTTP.

    .venv/bin/python scripts/billing_backend.py [--port 8080] [--token SECRET] [--delay S] [--status N]

GET /api/accounts/{phone} answers `{"data": {"account": {...}}}` with the account of
config/accounts.yaml (its values as text, exactly as written there: "86.50"), or 404 when there is
none. With --token, a request without `Authorization: Bearer SECRET` is answered 401. To try the
ways a backend fails: --delay S answers every request S seconds late (the wait prompt, the timeout),
--status N answers every request with status N (503: the retries, the error way, the breaker).
Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

ACCOUNTS = Path(__file__).resolve().parent.parent / "config" / "accounts.yaml"


def load_accounts(path: Path = ACCOUNTS) -> dict[str, dict[str, str]]:
    """The accounts file with every value as text (BaseLoader: 86.50 stays "86.50")."""
    data: Any = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader)  # noqa: S506 - BaseLoader builds only text
    return {str(k): dict(v) for k, v in data.items()}


def make_app(
    accounts: dict[str, dict[str, str]], token: str | None = None, delay: float = 0.0, status: int = 0
) -> web.Application:
    """The backend as an aiohttp application (the tests run it on a free port)."""

    async def account(request: web.Request) -> web.Response:
        if delay:
            await asyncio.sleep(delay)
        if status:
            return web.json_response({"error": f"status {status} (--status)"}, status=status)
        if token is not None and request.headers.get("Authorization") != f"Bearer {token}":
            return web.json_response({"error": "unauthorized"}, status=401)
        found = accounts.get(request.match_info["phone"])
        if found is None:
            return web.json_response({"error": "no such account"}, status=404)
        return web.json_response({"data": {"account": found}})

    app = web.Application()
    app.router.add_get("/api/accounts/{phone}", account)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="The demo accounts over HTTP, for menu sources.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--token", help="require Authorization: Bearer TOKEN")
    parser.add_argument("--delay", type=float, default=0.0, help="answer this many seconds late")
    parser.add_argument("--status", type=int, default=0, help="answer every request with this status")
    args = parser.parse_args()
    app = make_app(load_accounts(), args.token, args.delay, args.status)
    web.run_app(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
