"""Webhook deliveries drained per second: an outbox of pending deliveries, a receiver answering at once.

    make bench-hooks      (or: .venv/bin/python -m benchmarks.hooks [--events N] [--rounds R] [--postgres])

In process, on uvloop: a records database (SQLite in a temp folder; with --postgres also a throwaway
PostgreSQL, tests/servers.py's) holds EVENTS pending `ticket.created` deliveries for one webhook, as
the recorder writes them (a body of about 600 bytes, like a ticket's); the server's delivery worker
(app/net/hooks.py: claims in the database thread, signed POSTs, at most 8 at once) is started and
timed until every row is `delivered`. The receiver is an aiohttp server in another process (pinned
to the other CPU) answering 204 to each POST without checking it. Two shapes: EVENTS calls of one
event each (8 in flight), and one call with EVENTS / 10 events (in order: one at a time). Best of
ROUNDS, each on a fresh outbox.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import CLIENT_CPU, REPO, free_port, pinned, python

EVENTS = 1000
ROUNDS = 3
KEY = b"benchmark-webhook-key-32-bytes!!"


def receiver(port: int) -> None:
    """The receiver process: 204 to every POST."""
    from aiohttp import web

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks", hook)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def _fill(db: Any, events: int, calls: int) -> None:
    from app.records import outbox

    ticket = {
        "id": "T20261203-0001",
        "created": "2026-12-03T09:00:00+08:00",
        "status": "open",
        "session_id": "",
        "caller": "127.0.0.1:50000",
        "queue": None,
        "message": "请尽快回电,我的话费好像扣错了" * 4,
        "vars": {"phone": "13800138000", "account": {"name": "张三", "balance": "86.50"}},
        "callback": "13800138000",
        "closed": None,
        "note": None,
    }
    db.begin()
    now = time.time()
    for i in range(events):
        call = f"session-{i % calls:06d}"
        outbox.add(db, ("bench",), "ticket.created", call, {**ticket, "session_id": call}, now)
    db.commit()


async def _drain(target: Path | str, url: str, db: Any, events: int) -> float:
    from app.hooks.config import HooksConfig, Webhook
    from app.net.hooks import Deliveries, Retry

    hook = Webhook("bench", url, url, frozenset({"ticket.created"}), KEY, 5.0)
    deliveries = Deliveries(target, HooksConfig((hook,)), Retry(0.05, 0.5))
    started = time.perf_counter()
    deliveries.start()
    try:
        while True:
            row = db.execute("SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'").fetchone()
            if row[0] == events:
                return time.perf_counter() - started
            await asyncio.sleep(0.005)
    finally:
        await deliveries.close()


def _round(kind: str, url: str, events: int, calls: int, pg: Any) -> float:
    import uvloop

    from app.records import database as dbm

    folder = Path(tempfile.mkdtemp(prefix="hotline-bench-hooks-"))
    try:
        target: Path | str = pg.database() if kind == "postgresql" else folder
        db = dbm.connect(target if kind == "postgresql" else dbm.prepare_folder(folder), create=True)
        try:
            _fill(db, events, calls)
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(_drain(target, url, db, events))
        finally:
            db.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=EVENTS)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--postgres", action="store_true", help="also with the outbox in PostgreSQL")
    parser.add_argument("--receiver", type=int, help=argparse.SUPPRESS)  # the receiver process
    args = parser.parse_args()
    if args.receiver:
        receiver(args.receiver)
        return
    port = free_port()
    proc = subprocess.Popen(
        pinned(CLIENT_CPU, [python(), "-m", "benchmarks.hooks", "--receiver", str(port)]), cwd=REPO
    )
    pg = None
    try:
        _wait_for(port)
        url = f"http://127.0.0.1:{port}/hooks"
        kinds = ["sqlite"]
        if args.postgres:
            sys.path.insert(0, str(REPO))
            from tests.servers import PostgresServer

            pg = PostgresServer(fsync=True)
            kinds.append("postgresql")
        print(
            f"webhook deliveries drained, {args.events} pending, best of {args.rounds} (receiver answers at once)"
        )
        print(f"{'outbox':12} {'shape':34} {'seconds':>8} {'deliveries/s':>13}")
        for kind in kinds:
            shapes = [(f"{args.events} calls, 1 event each", args.events, args.events)]
            one = max(1, args.events // 10)
            shapes.append((f"1 call, {one} events in order", one, 1))
            for label, events, calls in shapes:
                best = min(_round(kind, url, events, calls, pg) for _ in range(args.rounds))
                print(f"{kind:12} {label:34} {best:8.3f} {events / best:13,.0f}")
    finally:
        proc.terminate()
        proc.wait(10)
        if pg is not None:
            pg.close()


def _wait_for(port: int) -> None:
    import socket

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the receiver did not start")


if __name__ == "__main__":
    main()
