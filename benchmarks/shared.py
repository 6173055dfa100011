"""Replicas sharing the desk through Redis, side by side with the desk in one process.

    make bench-shared     (or: .venv/bin/python -m benchmarks.shared [--seconds S] [--rounds R])

The hotline servers and redis-server run on CPU 0, the load (loadgen, deskgen, the relay client) on
CPU 1: two replicas share one core with Redis here, so the figures show what sharing costs, not
what a second machine adds.

1. Menu keypresses (loadgen) on hotline without Redis and with HOTLINE_REDIS_URL set and idle, in
   alternating rounds: the menu path must not touch the shared state.
2. Offers: 500 agents and 2,000 waiting callers drained by deskgen (OFFER -> /accept, CONNECTED ->
   /end, wrap_up 0), calls served per second: one process without Redis; one replica with Redis;
   callers on replica A and agents on replica B (every offer, answer and end crosses replicas).
3. The relay at 1,000 lines a second (50 connected pairs, each caller says a line every 100 ms and
   its agent answers it): latency of each line from the moment it is sent to the moment the other
   side reads it, with the two ends on one replica and on two.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import (
    SERVER_CPU,
    Proc,
    free_port,
    median,
    pinned,
    python,
    raise_file_limit,
    targets_table,
)
from benchmarks.desk import PASSWORD, Measured, Server, deskgen, keypresses, write_config
from benchmarks.tcp import HOTLINE_ENV, Run, loadgen

CONNECTED = "已接通"
SAYS = "坐席说:"


class Redis:
    """A throwaway redis-server (Debian's), pinned beside the servers, without persistence."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        self.proc = subprocess.Popen(
            pinned(SERVER_CPU, [*argv, "--appendonly", "no", "--dir", str(folder)]),
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def flush(self) -> None:
        subprocess.run(["redis-cli", "-p", str(self.port), "flushall"], capture_output=True, check=True)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def serve(config: Path, redis_url: str = "", name: str = "", proxy: bool = False) -> Server:
    port, agent_port, admin_port = free_port(), free_port(), free_port()
    env = {
        **HOTLINE_ENV,
        "HOTLINE_CONFIG": str(config),
        "HOTLINE_AGENT_PORT": str(agent_port),
        "HOTLINE_ADMIN_PORT": str(admin_port),
        "HOTLINE_TRANSCRIPTS": "false",
    }
    if redis_url:
        env |= {"HOTLINE_REDIS_URL": redis_url, "HOTLINE_REPLICA": name}
    if proxy:
        env |= {"HOTLINE_PROXY_PROTOCOL": "true", "HOTLINE_PROXY_FROM": "127.0.0.1"}
    proc = Proc([python(), "-m", "app", "serve", "--tcp-port", str(port)], env=env, tcp_port=port)
    return Server(proc, port, agent_port, admin_port)


def menu_rounds(args: argparse.Namespace, redis: Redis) -> dict[str, list[Measured]]:
    plain, shared = serve(args.config), serve(args.config, redis.url, "bench")
    results: dict[str, list[Measured]] = {"plain": [], "shared": []}
    try:
        for _ in range(args.rounds):
            results["plain"].append(keypresses(plain, 100, args.seconds))
            results["shared"].append(keypresses(shared, 100, args.seconds))
    finally:
        plain.proc.stop()
        shared.proc.stop()
    return results


BALANCER = """
global
    maxconn 4000
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend callers
    bind 127.0.0.1:{port}
    default_backend callers
backend callers
    balance roundrobin
{servers}
"""


def _haproxy(folder: Path, name: str, servers: list[Server]) -> tuple[Proc, int]:
    port = free_port()
    cfg = folder / f"{name}.cfg"
    lines = "\n".join(f"    server r{i} 127.0.0.1:{s.port} send-proxy-v2" for i, s in enumerate(servers))
    cfg.write_text(BALANCER.format(port=port, servers=lines), encoding="utf-8")
    return Proc(["haproxy", "-f", str(cfg), "-db"], tcp_port=port), port


def balancer_rounds(args: argparse.Namespace, folder: Path, redis: Redis) -> dict[str, list[Measured]]:
    """Menu keypresses straight to hotline; through HAProxy (deploy/haproxy.cfg's callers path: mode
    tcp, send-proxy-v2) to one hotline that reads the PROXY header; and through HAProxy round-robin to
    two replicas sharing Redis. HAProxy's CPU per keypress; hotline's summed over its replicas."""
    direct = serve(args.config)
    behind = serve(args.config, proxy=True)
    pair = [serve(args.config, redis.url, f"bench-{i}", proxy=True) for i in (1, 2)]
    one, one_port = _haproxy(folder, "one", [behind])
    two, two_port = _haproxy(folder, "two", pair)
    results: dict[str, list[Measured]] = {
        k: [] for k in ("direct", "balanced", "haproxy", "two", "haproxy two")
    }
    try:
        for _ in range(args.rounds):
            results["direct"].append(keypresses(direct, 100, args.seconds))
            for key, proxy, port, servers in (
                ("balanced", one, one_port, [behind]),
                ("two", two, two_port, pair),
            ):
                before = proxy.cpu_seconds()
                used = sum(s.proc.cpu_seconds() for s in servers)
                run = loadgen(port, 100, args.seconds, 60)
                used = sum(s.proc.cpu_seconds() for s in servers) - used
                steps = run.rate * args.seconds if not run.failed else 0
                results[key].append(Measured(run, used / steps * 1e6 if steps else 0))
                results["haproxy" if key == "balanced" else "haproxy two"].append(
                    Measured(run, (proxy.cpu_seconds() - before) / steps * 1e6 if steps else 0)
                )
    finally:
        for proc in (one, two, direct.proc, behind.proc, *(s.proc for s in pair)):
            proc.stop()
    return results


def drain(callers: Server, agents: Server, count: int, waiting: int) -> Run:
    """deskgen drain: `count` agents log in on `agents`, `waiting` callers join on `callers`, then
    the agents take them as fast as they are offered."""
    server = Server(callers.proc, callers.port, agents.agent_port, callers.admin_port)
    argv = deskgen(server, "-m", "drain", "-a", str(count), "-c", str(waiting), "-W", "您前面还有")
    proc = subprocess.Popen(
        [*argv, "-b", "2001", "-w", PASSWORD, "-r", "200", "-d", "60"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        for step in ("AGENTS", "READY"):
            line = proc.stdout.readline()
            if not line.startswith(step):
                return Run(failed=f"{step.lower()}: {line.strip()[:60] or 'deskgen failed'}")
            time.sleep(1.5)  # the shared summary (once a second) and the agents' entries settle
            proc.stdin.write("go\n")
            proc.stdin.flush()
        out = proc.stdout.readline()
        m = re.search(
            r"served=(\d+) seconds=[\d.]+ errors=(\d+) rate=(\d+)/s p50=([\d.]+)ms p99=([\d.]+)ms", out
        )
        if m is None:
            return Run(failed=out.strip()[:80] or "deskgen failed")
        run = Run(float(m.group(3)), float(m.group(4)), float(m.group(5)), int(m.group(2)))
        if int(m.group(1)) < waiting:
            run.failed = f"served {m.group(1)} of {waiting}"
        return run
    finally:
        proc.stdin.close()
        proc.wait(60)
        proc.stdout.close()


def offers(args: argparse.Namespace, redis: Redis, config: Path) -> dict[str, list[Run]]:
    results: dict[str, list[Run]] = {"process": [], "one": [], "two": []}
    for _ in range(args.rounds):
        single = serve(config)
        try:
            results["process"].append(drain(single, single, args.agents, args.waiting))
        finally:
            single.proc.stop()
        redis.flush()
        one = serve(config, redis.url, "one")
        try:
            results["one"].append(drain(one, one, args.agents, args.waiting))
        finally:
            one.proc.stop()
        redis.flush()
        a, b = serve(config, redis.url, "a"), serve(config, redis.url, "b")
        try:
            results["two"].append(drain(a, b, args.agents, args.waiting))
        finally:
            a.proc.stop()
            b.proc.stop()
    return results


@dataclass
class Latency:
    lines: int = 0
    p50: float = 0.0
    p99: float = 0.0
    failed: str = ""


async def _relay(callers: Server, agents: Server, pairs: int, rate: float, seconds: float) -> Latency:
    """`pairs` callers on `callers` talk to agents on `agents`; lines carry their send time."""
    stamps: list[float] = []  # agent -> caller
    up: list[float] = []  # caller -> agent
    stop = asyncio.Event()
    connections: list[asyncio.StreamWriter] = []

    async def agent(number: int, ready: asyncio.Event) -> None:
        # from an address of its own (the agent port holds 10 not-logged-in connections per address)
        source = ("127.0.61." + str(number + 1), 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", agents.agent_port, local_addr=source)
        connections.append(writer)
        login = f"/login {2001 + number} {PASSWORD}\r\n/ready\r\n".encode()
        writer.write(login)
        while line := await reader.readline():
            text = line.decode()
            if text.startswith("ERR busy"):  # the password checks are busy: again soon
                await asyncio.sleep(0.05)
                writer.write(login)
            elif text.startswith("OK ready"):
                ready.set()
            elif text.startswith("OFFER "):
                writer.write(b"/accept\r\n")
            elif text.startswith("CALLER t"):
                up.append(time.perf_counter() - float(text[8:]))
                writer.write(f"t{time.perf_counter()}\r\n".encode())

    async def caller() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", callers.port)
        connections.append(writer)
        writer.write(b"9\r\n")
        while CONNECTED.encode() not in await reader.readline():
            pass

        async def speak() -> None:
            await asyncio.sleep(random.uniform(0, pairs / rate))  # callers out of step, as people are
            while not stop.is_set():
                writer.write(f"t{time.perf_counter()}\r\n".encode())
                await asyncio.sleep(pairs / rate)

        talking = asyncio.create_task(speak())
        while line := await reader.readline():
            text = line.decode(errors="replace")
            if SAYS + "t" in text:
                stamps.append(time.perf_counter() - float(text.split(SAYS + "t")[1]))
        talking.cancel()

    readies = [asyncio.Event() for _ in range(pairs)]
    tasks = [asyncio.create_task(agent(i, readies[i])) for i in range(pairs)]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 120)
    await asyncio.sleep(1.5)
    tasks += [asyncio.create_task(caller()) for _ in range(pairs)]
    await asyncio.sleep(3)  # all connected, talking
    stamps.clear()
    up.clear()
    await asyncio.sleep(seconds)
    measured = sorted(stamps + up)
    stop.set()
    for writer in connections:
        writer.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if not measured:
        return Latency(failed="no line relayed")
    return Latency(
        len(measured), measured[len(measured) // 2] * 1e3, measured[int(len(measured) * 0.99)] * 1e3
    )


def relay(args: argparse.Namespace, redis: Redis, config: Path) -> dict[str, Latency]:
    import uvloop

    out: dict[str, Latency] = {}
    redis.flush()
    one = serve(config, redis.url, "one")
    try:
        out["one"] = uvloop.run(_relay(one, one, 50, 500.0, args.seconds * 2))
    finally:
        one.proc.stop()
    redis.flush()
    a, b = serve(config, redis.url, "a"), serve(config, redis.url, "b")
    try:
        out["two"] = uvloop.run(_relay(a, b, 50, 500.0, args.seconds * 2))
    finally:
        a.proc.stop()
        b.proc.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--agents", type=int, default=500)
    parser.add_argument("--waiting", type=int, default=2000)
    args = parser.parse_args()
    raise_file_limit()
    with tempfile.TemporaryDirectory(prefix="hotline-bench-shared-") as tmp:
        folder = Path(tmp)
        config = write_config(folder, {"default": range(2001, 2001 + args.agents)})
        args.config = config
        redis = Redis(folder)
        try:
            menu = menu_rounds(args, redis)
            drained = offers(args, redis, config)
            relayed = relay(args, redis, config)
            redis.flush()
            balanced = balancer_rounds(args, folder, redis)
        finally:
            redis.stop()
    report(args, menu, drained, relayed)
    report_balancer(args, balanced)


def report_balancer(args: argparse.Namespace, balanced: dict[str, list[Measured]]) -> None:
    print(
        f"\n### One replica vs two behind the balancer, and the balancer's own cost (hotline, HAProxy and "
        f"Redis on CPU 0, loadgen on CPU 1; medians of {args.rounds} rounds)\n"
    )
    print("| menu keypresses | per second | p50 / p99 | hotline CPU per keypress |\n|---|---|---|---|")
    for key, label in (
        ("direct", "straight to hotline"),
        ("balanced", "through HAProxy, PROXY protocol v2, one replica"),
        ("two", "through HAProxy, round-robin to two replicas sharing Redis"),
    ):
        runs = [m for m in balanced[key] if not m.run.failed]
        if not runs:
            print(f"| {label} | — ({balanced[key][0].run.failed if balanced[key] else 'not run'}) | | |")
            continue
        rate, cpu = median([m.run.rate for m in runs]), median([m.cpu_us for m in runs])
        p50, p99 = median([m.run.p50 for m in runs]), median([m.run.p99 for m in runs])
        print(f"| {label} | {rate:,.0f} | {p50:.2f} / {p99:.2f} ms | {cpu:.1f} µs |")
    cost = [m.cpu_us for m in balanced["haproxy"] if not m.run.failed]
    ratio = [
        b.run.rate / d.run.rate
        for d, b in zip(balanced["direct"], balanced["balanced"], strict=True)
        if d.run.rate and not b.run.failed
    ]
    if cost and ratio:
        print(
            f"\nHAProxy's own CPU: {median(cost):.1f} µs a keypress; through it, "
            f"{median(ratio):.2f}× the keypresses a second of the direct path (rounds {min(ratio):.2f}–{max(ratio):.2f}×)."
        )
    pairs = [
        t.run.rate / o.run.rate
        for o, t in zip(balanced["balanced"], balanced["two"], strict=True)
        if o.run.rate and not t.run.failed
    ]
    if pairs:
        print(
            f"Two replicas behind it: {median(pairs):.2f}× the keypresses a second of one (rounds "
            f"{min(pairs):.2f}–{max(pairs):.2f}×): with every server on one core, a second replica adds "
            "no core, only a second process to share it; on machines with cores to spare each replica "
            "brings its own."
        )


def report(
    args: argparse.Namespace,
    menu: dict[str, list[Measured]],
    drained: dict[str, list[Run]],
    relayed: dict[str, Latency],
) -> None:
    print(f"\n### Replicas through Redis (medians of {args.rounds} rounds; servers and Redis on CPU 0)\n")
    print("| workload | per second | p50 / p99 | |\n|---|---|---|---|")
    for key, label in (("plain", "menu keypress, no Redis"), ("shared", "menu keypress, Redis set, idle")):
        runs = [m.run for m in menu[key] if not m.run.failed]
        rate = median([r.rate for r in runs])
        print(
            f"| {label} | {rate:,.0f} | {median([r.p50 for r in runs]):.2f} / {median([r.p99 for r in runs]):.2f} ms | |"
        )
    labels = {
        "process": "calls offered, answered, ended: one process",
        "one": "the same: one replica, desk in Redis",
        "two": "the same: callers on replica A, agents on replica B",
    }
    for key, label in labels.items():
        runs = [r for r in drained[key] if not r.failed]
        if not runs:
            print(f"| {label} | — ({drained[key][0].failed if drained[key] else 'not run'}) | | |")
            continue
        rate = median([r.rate for r in runs])
        print(
            f"| {label} | {rate:,.0f} | {median([r.p50 for r in runs]):.2f} / {median([r.p99 for r in runs]):.2f} ms | |"
        )
    for key, label in (
        ("one", "relayed lines, both ends on one replica"),
        ("two", "relayed lines, across replicas"),
    ):
        lat = relayed.get(key, Latency(failed="not run"))
        if lat.failed:
            print(f"| {label} | — ({lat.failed}) | | |")
        else:
            print(
                f"| {label} | {lat.lines / (args.seconds * 2):,.0f} | {lat.p50:.2f} / {lat.p99:.2f} ms | {lat.lines} lines |"
            )
    rows: list[tuple[str, str, bool]] = []
    moved = [
        s.run.rate / p.run.rate
        for p, s in zip(menu["plain"], menu["shared"], strict=True)
        if p.run.rate and not s.run.failed
    ]
    if moved:
        m = median(moved)
        rows.append(
            (
                "menu keypresses with Redis set and idle: unchanged (within noise)",
                f"{m:.2f}× the rate without Redis (rounds {min(moved):.2f}–{max(moved):.2f}×)",
                m >= 0.95,
            )
        )
    lat = relayed.get("two")
    if lat is not None and not lat.failed:
        rows.append(
            (
                "relay p99 per line across replicas ≤ 5 ms at 1,000 lines/s",
                f"{lat.p99:.2f} ms",
                lat.p99 <= 5.0,
            )
        )
    targets_table(rows)


if __name__ == "__main__":
    main()
