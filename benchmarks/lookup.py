"""An HTTP look-up step beside a table look-up step: what each costs the server, and its latency.

    make bench-lookup      (or: .venv/bin/python -m benchmarks.lookup [--sessions N] [--rounds R])

In process, on uvloop, as benchmarks/steps.py does it: a Hub as the server builds it (transcripts
off: the look-up is what is measured) and SESSIONS real CallerSessions on a stand-in transport,
each walked to the phone-number input (not counted), then each takes the step: the number typed,
`data_received(b"13800138000\\r\\n")`, up to the balance written back. One menu, two ways to the same
balance: `1` reads config/accounts.yaml (a table), `2` asks a source, scripts/billing_backend.py
in another process (pinned to the other CPU) answering at once from the same accounts.

Counted: the CPU time of this process (the server side: engine, session, aiohttp's client; not the
backend's) per step, best of ROUNDS, and each step's latency, from the read to the balance written
(p50, p99 over every round). The HTTP step is run three ways: one caller at a time (a look-up's
own latency), all SESSIONS at once (a burst: the pool and the backend under load) and cached
(`cache: 60s`, after one look-up: no request).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import CLIENT_CPU, REPO, SERVER_CPU, free_port, pinned, python
from benchmarks.steps import Transport

SESSIONS = 200
PHONE = "13800138000"
MARKER = "余额 86.50".encode()


def menu(backend: str) -> str:
    """Two ways to one balance: a table lookup (1) and a source lookup (2, and 3 cached)."""
    source = {"url": backend + "/api/accounts/{phone}", "timeout": "2s", "result": "data.account"}
    ask = {"type": "input", "prompt": "请输入号码:", "save_as": "phone", "pattern": r"^1\d{10}$"}
    found = {"save_as": "account", "found": "balance", "missing": "main"}
    data = {
        "version": 1,
        "start": "main",
        "data": {"accounts": "accounts.yaml"},
        "sources": {
            "billing": {**source, "max_in_flight": 10_000},
            "cached": {**source, "max_in_flight": 10_000, "cache": "60s"},
        },
        "nodes": {
            "main": {
                "type": "menu",
                "prompt": "表 1,HTTP 2,缓存 3",
                "options": {"1": "ask_table", "2": "ask_http", "3": "ask_cached"},
            },
            "ask_table": {**ask, "next": "find_table"},
            "ask_http": {**ask, "next": "find_http"},
            "ask_cached": {**ask, "next": "find_cached"},
            "find_table": {"type": "lookup", "table": "accounts", "key": "{phone}", **found},
            "find_http": {"type": "lookup", "source": "billing", **found},
            "find_cached": {"type": "lookup", "source": "cached", **found},
            "balance": {
                "type": "message",
                "text": "{account.name},余额 {account.balance} 元。",
                "next": "main",
            },
        },
    }
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


class Waiting:
    """Steps not yet answered, and the event set when none is left."""

    def __init__(self) -> None:
        self.left = 0
        self.done = asyncio.Event()

    def expect(self, count: int) -> asyncio.Event:
        self.left, self.done = count, asyncio.Event()
        return self.done

    def answered(self, _: Timed) -> None:
        self.left -= 1
        if not self.left:
            self.done.set()


class Timed(Transport):
    """The stand-in transport, noting when the balance is written."""

    def __init__(self, port: int, answered: Callable[[Timed], None]) -> None:
        super().__init__(port)
        self.sent = 0.0
        self.latency = 0.0
        self._answered = answered

    def write(self, data: bytes) -> None:
        if MARKER in data and self.sent:
            self.latency = time.perf_counter() - self.sent
            self.sent = 0.0
            self._answered(self)


async def measure(folder: Path, sessions: int, rounds: int) -> dict[str, tuple[list[float], list[float]]]:
    """kind -> (CPU µs per step of each round, every step's latency in ms)."""
    from app import logs
    from app.configdir import load_config
    from app.net.tcp import CallerSession
    from app.server import Hub
    from app.settings import Settings

    logs.configure("warning", "json")
    settings = Settings(
        config=folder,
        data=tempfile.mkdtemp(prefix="hotline-lookup-"),
        max_lines_per_second=1e9,
        max_sessions=100_000,
        max_sessions_per_address=100_000,
        transcripts=False,
    )
    config = load_config(folder)
    assert config.graph is not None, config.problems
    hub = Hub(settings, config.graph, config.robot, config.desk, None)  # type: ignore[arg-type]
    out: dict[str, tuple[list[float], list[float]]] = {}
    line = f"{PHONE}\r\n".encode()
    try:
        for kind, key, burst in [
            ("table lookup", b"1", True),
            ("HTTP lookup, one caller at a time", b"2", False),
            (f"HTTP lookup, {sessions} callers at once", b"2", True),
            ("HTTP lookup, cached", b"3", True),
        ]:
            cpu: list[float] = []
            latencies: list[float] = []
            for _ in range(rounds + 1):  # the first round warms up (connections, the cache): not kept
                waiting = Waiting()
                callers = []
                for i in range(sessions):
                    transport = Timed(40000 + i, waiting.answered)
                    s = CallerSession(hub)
                    s.connection_made(transport)  # type: ignore[arg-type]
                    s.data_received(key + b"\r\n")
                    callers.append((s, transport))
                started = time.process_time()
                if burst:
                    done = waiting.expect(sessions)
                    for s, t in callers:
                        t.sent = time.perf_counter()
                        s.data_received(line)
                    await asyncio.wait_for(done.wait(), 30)
                else:
                    for s, t in callers:
                        done = waiting.expect(1)
                        t.sent = time.perf_counter()
                        s.data_received(line)
                        await asyncio.wait_for(done.wait(), 10)
                cpu.append((time.process_time() - started) / sessions * 1e6)
                latencies += [t.latency * 1e3 for _, t in callers]
                for s, _ in callers:
                    s.connection_lost(None)
            out[kind] = (cpu[1:], latencies[sessions:])
    finally:
        hub.timers.close()
        await hub.lookups.close()
    return out


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def backend(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        pinned(CLIENT_CPU, [python(), str(REPO / "scripts" / "billing_backend.py"), "--port", str(port)]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.terminate()
    raise RuntimeError("the billing backend did not start")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=SESSIONS)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    import uvloop

    cpus = os.sched_getaffinity(0)
    if len(cpus) > 1:
        os.sched_setaffinity(0, {int(SERVER_CPU)})  # the server side here, the backend on the other CPU
    port = free_port()
    proc = backend(port)
    folder = Path(tempfile.mkdtemp(prefix="hotline-lookup-config-"))
    try:
        shutil.copy(REPO / "config" / "accounts.yaml", folder / "accounts.yaml")
        (folder / "menu.yaml").write_text(menu(f"http://127.0.0.1:{port}"), encoding="utf-8")
        results = uvloop.run(measure(folder, args.sessions, args.rounds))
    finally:
        os.sched_setaffinity(0, cpus)  # `make bench` goes on with the next benchmark
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)
    report(results, args)


def report(results: dict[str, tuple[list[float], list[float]]], args: Any) -> None:
    table_cpu = min(results["table lookup"][0])
    print(
        f"\n### A look-up step: table against HTTP ({args.sessions} sessions, best CPU of {args.rounds} "
        "rounds; latency from the read to the balance written)\n"
    )
    print("| step | µs of CPU per step | × the table step | p50 | p99 |\n|---|---|---|---|---|")
    for kind, (cpu, latencies) in results.items():
        best = min(cpu)
        print(
            f"| {kind} | {best:.1f} | {best / table_cpu:.1f}× | {statistics.median(latencies):.3f} ms | "
            f"{percentile(latencies, 99):.3f} ms |"
        )


if __name__ == "__main__":
    main()
