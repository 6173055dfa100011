"""Browser side benchmark: what open boards and a browser agent cost the menu, side by side in one run.

    make bench-board      (or: .venv/bin/python -m benchmarks.board [--seconds S] [--rounds R])

One hotline process (pinned to CPU 0) with the bench menu and a desk: 1,000 callers waiting in the
queue (deskgen, C/epoll), a terminal agent logged in (deskgen's, on break, so the callers keep
waiting), and an agent logged in from a "browser" (a WebSocket client of the console's JSON
protocol). Rounds alternate, each a few seconds of menu keypresses from loadgen.c: no board open;
50 boards open (50 WebSocket clients of a supervisor session, opened for the round, in a separate
process pinned to CPU 1 like the load); 50 boards open while 20 more callers churn in and out of the
queue every 50 ms (800 queue events a second: the board must still get one message a second). Cost =
server CPU per keypress from /proc, compared round by round; the target is on the boards alone, the
churning round shows the coalescing (its callers' own CPU is in its figure).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import CLIENT_CPU, median, pinned, python, raise_file_limit, targets_table
from benchmarks.desk import PASSWORD, Measured, keypresses, serve, start_drain, write_config

SUPERVISOR = "9001"


class Viewers:
    """The client process: a browser agent and `count` boards; counts what each board receives."""

    def __init__(self, admin_port: int, tcp_port: int, count: int) -> None:
        argv = [python(), "-m", "benchmarks.board", "--viewers", str(count), "--admin", str(admin_port)]
        argv += ["--tcp", str(tcp_port)]
        self.proc = subprocess.Popen(
            pinned(CLIENT_CPU, argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("READY"):
            self.proc.kill()
            raise RuntimeError(f"viewers did not connect: {line.strip()!r}")

    def open(self, churn: bool) -> None:
        """Open the boards (and churn the queue); returns once every board has its first snapshot."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("open churn\n" if churn else "open\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line.startswith("OPEN"):
            raise RuntimeError(f"boards did not open: {line.strip()!r}")

    def shut(self) -> dict[str, float]:
        """Close the boards; what each received while open."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("shut\n")
        self.proc.stdin.flush()
        stats: dict[str, float] = json.loads(self.proc.stdout.readline())
        return stats

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(30)
        self.proc.stdout.close()


async def _viewers(admin_port: int, tcp_port: int, count: int) -> None:
    """Run in the client process: log in, open the sockets, report on stdin's word."""
    import aiohttp

    base = f"http://127.0.0.1:{admin_port}"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:

        async def login(user: str) -> dict[str, str]:
            r = await http.post(
                base + "/login",
                data={"id": user, "password": PASSWORD},
                headers={"Origin": base},
                allow_redirects=False,
            )
            cookie = r.cookies["hotline_session"].value
            return {"Cookie": f"hotline_session={cookie}", "Origin": base}

        agent_ws = await http.ws_connect(base + "/ws", headers=await login("3002"))
        await agent_ws.receive()  # hello
        boss = await login(SUPERVISOR)
        agent_reader = asyncio.create_task(_drain_ws(agent_ws))
        loop = asyncio.get_running_loop()
        stdin = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
        print("READY", flush=True)
        boards: list[aiohttp.ClientWebSocketResponse] = []
        readers: list[asyncio.Task[None]] = []
        times: list[list[float]] = []
        churn: asyncio.Task[None] | None = None

        async def read(ws: aiohttp.ClientWebSocketResponse, seen: list[float]) -> None:
            async for _ in ws:
                seen.append(time.monotonic())

        while line := (await stdin.readline()).decode().strip():
            if line.startswith("open"):
                boards = [await http.ws_connect(base + "/ws", headers=boss) for _ in range(count)]
                for ws in boards:
                    await ws.receive()  # the snapshot every board gets at once
                times = [[] for _ in boards]
                readers = [asyncio.create_task(read(ws, t)) for ws, t in zip(boards, times, strict=True)]
                if line == "open churn":
                    churn = asyncio.create_task(_churn(tcp_port))
                print("OPEN", flush=True)
            elif line == "shut":
                if churn is not None:
                    churn.cancel()
                    churn = None
                for task in readers:
                    task.cancel()
                for ws in boards:
                    await ws.close()
                # a board's rate: messages between its first and last, over that time
                rates = [(len(t) - 1) / (t[-1] - t[0]) for t in times if len(t) > 1 and t[-1] > t[0]]
                gaps = [b - a for t in times for a, b in itertools.pairwise(t)]
                stats = {"per_viewer_per_second": max(rates, default=0.0), "min_gap": min(gaps, default=0.0)}
                print(json.dumps(stats), flush=True)
        agent_reader.cancel()
        await agent_ws.close()


async def _drain_ws(ws: Any) -> None:
    async for _ in ws:
        pass


async def _churn(tcp_port: int) -> None:
    """20 callers going into the queue and out again, every 50 ms: a busy queue for the board."""
    conns = [await asyncio.open_connection("127.0.0.1", tcp_port) for _ in range(20)]

    async def drain(reader: asyncio.StreamReader) -> None:
        while await reader.read(65536):
            pass

    drains = [asyncio.create_task(drain(reader)) for reader, _ in conns]
    try:
        while True:
            for key in (b"9\r\n", b"*\r\n"):
                for _, writer in conns:
                    writer.write(key)
                await asyncio.sleep(0.025)
    finally:
        for task in drains:
            task.cancel()
        for _, writer in conns:
            writer.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--boards", type=int, default=50)
    parser.add_argument("--waiting", type=int, default=1000)
    parser.add_argument("--viewers", type=int, help=argparse.SUPPRESS)  # the client process
    parser.add_argument("--admin", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tcp", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.viewers is not None:
        asyncio.run(_viewers(args.admin, args.tcp, args.viewers))
        return
    raise_file_limit()
    plain: list[Measured] = []
    boards: list[Measured] = []
    churned: list[Measured] = []
    seen: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="hotline-bench-board-") as tmp:
        config = write_config(Path(tmp), {"default": range(3001, 3003)})
        with (config / "desk.yaml").open("a", encoding="utf-8") as f:
            hashed = (config / "desk.yaml").read_text().split('password_hash: "', 1)[1].split('"', 1)[0]
            f.write(f'  - {{id: "{SUPERVISOR}", name: boss, password_hash: "{hashed}", role: supervisor}}\n')
        server = serve(config)
        queue = start_drain(server, 1, args.waiting, 3001, 600)  # one terminal agent, on break
        assert queue.stdin is not None and queue.stdout is not None
        viewers = None
        try:
            assert queue.stdout.readline().startswith("AGENTS")
            queue.stdin.write("go\n")
            queue.stdin.flush()
            line = queue.stdout.readline()
            assert line.startswith("READY"), line
            viewers = Viewers(server.admin_port, server.port, args.boards)
            for _ in range(args.rounds):
                plain.append(keypresses(server, args.sessions, args.seconds))
                viewers.open(churn=False)
                boards.append(keypresses(server, args.sessions, args.seconds))
                viewers.shut()
                viewers.open(churn=True)
                churned.append(keypresses(server, args.sessions, args.seconds))
                seen.append(viewers.shut())
        finally:
            if viewers is not None:
                viewers.close()
            queue.stdin.close()
            queue.wait(30)
            queue.stdout.close()
            server.proc.stop()
    report(args, plain, boards, churned, seen)


def report(
    args: argparse.Namespace,
    plain: list[Measured],
    boards: list[Measured],
    churned: list[Measured],
    seen: list[dict[str, float]],
) -> None:
    print(
        f"\n### Boards and a browser agent ({args.rounds} alternating rounds of {args.seconds:g} s, "
        f"{args.sessions} menu sessions, {args.waiting:,} callers waiting, a terminal and a browser agent; "
        "server CPU per keypress from /proc)\n"
    )
    print("| workload | keypresses per second | p50 / p99 | server CPU per keypress |\n|---|---|---|---|")
    for label, runs in (
        ("no board open", plain),
        (f"{args.boards} boards open", boards),
        (f"{args.boards} boards open, 20 callers churning through the queue", churned),
    ):
        ok = [m for m in runs if not m.run.failed]
        if not ok:
            print(f"| {label} | — ({runs[0].run.failed if runs else 'not run'}) | | |")
            continue
        print(
            f"| {label} | {median([m.run.rate for m in ok]):,.0f} | {median([m.run.p50 for m in ok]):.2f} / "
            f"{median([m.run.p99 for m in ok]):.2f} ms | {median([m.cpu_us for m in ok]):.1f} µs |"
        )
    ratios = [b.cpu_us / p.cpu_us for p, b in zip(plain, boards, strict=True) if p.cpu_us and b.cpu_us]
    rows: list[tuple[str, str, bool]] = []
    if ratios:
        r = median(ratios)
        rows.append(
            (
                f"{args.boards} open boards cost the menu < 5 % (CPU per keypress)",
                f"{r:.3f}× (rounds {min(ratios):.3f}–{max(ratios):.3f}×)",
                r < 1.05,
            )
        )
    if seen:
        per_second = max(s["per_viewer_per_second"] for s in seen)
        gap = min(s["min_gap"] for s in seen)
        rows.append(
            (
                "each board gets at most one update a second, however busy the queue (800 queue joins"
                " and leaves a second)",
                f"{per_second:.2f} messages per viewer per second at most; shortest gap {gap:.2f} s",
                per_second <= 1.05 and gap >= 0.8,
            )
        )
    targets_table(rows)


if __name__ == "__main__":
    main()
