"""TCP benchmark: hotline side by side with the designs users would pick instead.

    make bench-tcp        (or: .venv/bin/python -m benchmarks.tcp [--seconds S] [--rounds R])

Every server serves the same two-screen menu (benchmarks/config/menu.yaml; the baselines say the same
bytes, see baselines/menu2.py), pinned to CPU 0. The load is ../shared/tools/loadgen.c (C, epoll),
pinned to CPU 1: each connection waits for the greeting, then sends "1" and "0" in turn, waiting for
each screen. Rounds alternate the servers (A B C ... A B C ...) so the machine's noise hits all alike;
the table shows medians. Idle memory: RSS of the server process before and after 10,000 connections
are greeted and held, divided by 10,000.

hotline runs with its real engine and config at its default log level; only its per-caller limits
are raised (HOTLINE_MAX_LINES_PER_SECOND, HOTLINE_MAX_SESSIONS_PER_ADDRESS, HOTLINE_MAX_SESSIONS),
since every benchmark connection comes from 127.0.0.1 and types far faster than a person.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import (
    CLIENT_CPU,
    REPO,
    Proc,
    build_tool,
    free_port,
    median,
    pinned,
    python,
    raise_file_limit,
    targets_table,
)

GREETING = "主菜单:查询请按 1"
STEPS = ["1\\r\\n=>子菜单:返回请按 0\\r\\n", "0\\r\\n=>主菜单:查询请按 1\\r\\n"]
HOTLINE_ENV = {
    "HOTLINE_CONFIG": str(REPO / "benchmarks" / "config"),
    "HOTLINE_UDP_PORT": "0",
    "HOTLINE_ADMIN_PORT": "0",
    "HOTLINE_AGENT_PORT": "0",
    "HOTLINE_LOG_FORMAT": "json",
    "HOTLINE_MAX_LINES_PER_SECOND": "1e9",
    "HOTLINE_MAX_SESSIONS_PER_ADDRESS": "100000",
    "HOTLINE_MAX_SESSIONS": "100000",
    "HOTLINE_DATA": tempfile.mkdtemp(prefix="hotline-bench-data-"),
}


@dataclass(frozen=True)
class Design:
    key: str
    name: str
    argv: Callable[[int], list[str]]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None  # the checkout whose app/ it runs (default: this one)


def baseline(module: str, *extra: str) -> Callable[[int], list[str]]:
    return lambda port: [python(), "-m", f"benchmarks.baselines.{module}", str(port), *extra]


DESIGNS = [
    Design(
        "hotline",
        "hotline",
        lambda port: [python(), "-m", "app", "serve", "--tcp-port", str(port)],
        HOTLINE_ENV,
    ),
    Design("protocol", "bare uvloop Protocol", baseline("protocol")),
    Design(
        "c", "C, one epoll thread (the machine's limit)", lambda port: [str(build_tool("c_epoll")), str(port)]
    ),
    Design("streams", "asyncio streams, uvloop", baseline("streams", "uvloop")),
    Design("streams-std", "asyncio streams, standard loop", baseline("streams", "asyncio")),
    Design("twisted", "Twisted LineReceiver, epoll", baseline("twisted_lines")),
    Design("seed", "seed: ThreadingTCPServer", baseline("seed_threaded")),
]


@dataclass
class Run:
    rate: float = 0.0
    p50: float = 0.0
    p99: float = 0.0
    errors: int = 0
    failed: str = ""
    cpu: float = 0.0  # µs of the server process's CPU (user + system) a step, its callers' greeting included


def loadgen(
    port: int, conns: int, seconds: float, timeout: float, steps: list[str] = STEPS, greeting: str = GREETING
) -> Run:
    tool = build_tool("loadgen")
    argv = [str(tool), "-p", str(port), "-c", str(conns), "-d", str(seconds), "-g", greeting, "-r", "100"]
    for step in steps:
        argv += ["-s", step]
    try:
        out = subprocess.run(pinned(CLIENT_CPU, argv), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Run(failed=f"did not greet {conns} callers within {timeout:.0f} s")
    m = re.search(
        r"ready=(\d+) errors=(\d+) steps=\d+ rate=(\d+)/s p50=([\d.]+)ms p99=([\d.]+)ms", out.stdout
    )
    if m is None:
        return Run(failed=(out.stderr or out.stdout).strip()[:80] or f"loadgen exit {out.returncode}")
    ready, errors = int(m.group(1)), int(m.group(2))
    run = Run(float(m.group(3)), float(m.group(4)), float(m.group(5)), errors)
    if ready < conns:
        run.failed = f"only {ready} of {conns} greeted"
    return run


def measure(
    design: Design,
    conns: int,
    seconds: float,
    timeout: float,
    steps: list[str] = STEPS,
    greeting: str = GREETING,
) -> Run:
    """Start the design's server, run loadgen's steps against it, stop it."""
    port = free_port()
    try:
        server = Proc(design.argv(port), env=design.env, tcp_port=port, cwd=design.cwd)
    except RuntimeError as exc:
        return Run(failed=str(exc)[:80])
    try:
        before = server.cpu_seconds()
        run = loadgen(port, conns, seconds, timeout, steps, greeting)
        if run.rate and not run.failed:
            run.cpu = (server.cpu_seconds() - before) / (run.rate * seconds) * 1e6
        return run
    finally:
        server.stop()


def idle_kib_per_session(design: Design, conns: int, timeout: float) -> tuple[float, str]:
    """(KiB of RSS per held idle connection, error text)."""
    port = free_port()
    server = Proc(design.argv(port), env=design.env, tcp_port=port)
    try:
        time.sleep(0.5)  # let start-up allocation settle before the baseline reading
        before = server.rss_kib()
        tool = build_tool("loadgen")
        proc = subprocess.Popen(
            pinned(
                CLIENT_CPU,
                [str(tool), "-p", str(port), "-c", str(conns), "-g", GREETING, "-H", "2", "-r", "200"],
            ),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        line = ""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith("READY") or not line:
                break
        m = re.match(r"READY (\d+) of (\d+) connections greeted in ([\d.]+)s \(errors (\d+)\)", line)
        after = server.rss_kib()
        proc.wait(timeout=30)
        if m is None:
            return 0.0, f"hold failed: {line.strip()[:60]}"
        held, errors = int(m.group(1)), int(m.group(4))
        note = "" if held == conns and errors == 0 else f"{held} held, {errors} errors"
        return (after - before) / max(held, 1), note
    finally:
        server.stop()


def fmt_rate(run: Run) -> str:
    return f"{run.rate:,.0f}" if not run.failed else f"— ({run.failed})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--idle", type=int, default=10000)
    parser.add_argument("--hold", type=int, default=19000)
    parser.add_argument(
        "--only", help="comma-separated keys: hotline,protocol,c,streams,streams-std,twisted,seed"
    )
    args = parser.parse_args()
    raise_file_limit()
    designs = [d for d in DESIGNS if not args.only or d.key in args.only.split(",")]
    results: dict[tuple[str, int], list[Run]] = {}
    for conns, timeout in ((100, 60.0), (5000, 90.0)):
        for _ in range(args.rounds):
            for design in designs:
                if design.name.startswith("seed") and conns > 100 and results.get((design.name, conns)):
                    continue  # one attempt is enough to show it; each costs a long ramp
                results.setdefault((design.name, conns), []).append(
                    measure(design, conns, args.seconds, timeout)
                )
    idle = {d.name: idle_kib_per_session(d, args.idle, 120) for d in designs if not d.name.startswith("seed")}
    hold_note = ""
    if any(d.name == "hotline" for d in designs):
        kib, note = idle_kib_per_session(DESIGNS[0], args.hold, 180)
        hold_note = (
            note or f"{args.hold:,} sessions held by one hotline process, no errors ({kib:.2f} KiB each)"
        )

    def best(name: str, conns: int) -> Run:
        runs = [r for r in results.get((name, conns), []) if not r.failed]
        if not runs:
            failed = results.get((name, conns), [Run(failed="not run")])
            return failed[0]
        return Run(
            median([r.rate for r in runs]),
            median([r.p50 for r in runs]),
            median([r.p99 for r in runs]),
            max(r.errors for r in runs),
        )

    hot100, hot5k = best("hotline", 100), best("hotline", 5000)
    print(
        f"\n### TCP menu steps per second (medians of {args.rounds} alternating rounds of {args.seconds:g} s)\n"
    )
    print(
        "| design | 100 sessions | hotline is | p50 / p99 | 5,000 sessions | hotline is | p50 / p99 | RSS per idle session |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for d in designs:
        r1, r5 = best(d.name, 100), best(d.name, 5000)
        ratio1 = f"{hot100.rate / r1.rate:.2f}×" if r1.rate and hot100.rate else "—"
        ratio5 = f"{hot5k.rate / r5.rate:.2f}×" if r5.rate and hot5k.rate else "—"
        kib, note = idle.get(d.name, (0.0, "not measured (a thread per caller)"))
        mem = f"{kib:.2f} KiB" + (f" ({note})" if note else "") if kib else note
        lat1 = f"{r1.p50:.2f} / {r1.p99:.2f} ms" if not r1.failed else "—"
        lat5 = f"{r5.p50:.1f} / {r5.p99:.1f} ms" if not r5.failed else "—"
        print(
            f"| {d.name} | {fmt_rate(r1)} | {ratio1} | {lat1} | {fmt_rate(r5)} | {ratio5} | {lat5} | {mem} |"
        )
    if hold_note:
        print(f"\n{hold_note}.")
    print_targets(results, best, idle.get("hotline", (0.0, ""))[0], hold_note)


def print_targets(
    results: dict[tuple[str, int], list[Run]], best: Callable[[str, int], Run], kib: float, hold_note: str
) -> None:
    """The targets of the performance issue, checked against this run's medians; each ratio also
    shows its range over the rounds (each round measures the two designs seconds apart)."""
    names = {d.key: d.name for d in DESIGNS}

    def ratio(other: str, conns: int) -> tuple[float, str]:
        a, b = best("hotline", conns), best(names[other], conns)
        if a.failed or b.failed or not b.rate:
            return 0.0, "not measured"
        pairs = zip(results.get(("hotline", conns), []), results.get((names[other], conns), []), strict=True)
        rounds = [x.rate / y.rate for x, y in pairs if not x.failed and not y.failed and y.rate]
        return a.rate / b.rate, f"{a.rate / b.rate:.2f}× (rounds {min(rounds):.2f}–{max(rounds):.2f}×)"

    rows: list[tuple[str, str, bool]] = []
    for label, other, conns, goal in (
        ("100 sessions: ≥ 1.3× asyncio streams on uvloop", "streams", 100, 1.3),
        ("100 sessions: ≥ 0.8× the bare uvloop Protocol", "protocol", 100, 0.8),
        ("100 sessions: ≥ 2× Twisted", "twisted", 100, 2.0),
        ("5,000 sessions: ≥ 2× asyncio streams on uvloop", "streams", 5000, 2.0),
    ):
        value, text = ratio(other, conns)
        if value:
            rows.append((label, text, value >= goal))
    hot, streams = best("hotline", 5000), best(names["streams"], 5000)
    if hot.p99 and streams.p99:
        share = hot.p99 / streams.p99
        text = f"{hot.p99:.1f} / {streams.p99:.1f} ms = {share:.2f}"
        rows.append(("5,000 sessions: p99 ≤ half of streams'", text, share <= 0.5))
    if kib:
        rows.append(("≤ 2.5 KiB RSS per idle session", f"{kib:.2f} KiB", kib <= 2.5))
    if hold_note:
        rows.append(
            ("19,000 sessions held by one process, no errors", hold_note, hold_note.startswith("19,000"))
        )
    targets_table(rows)
    ceiling = [
        f"{names[k]}: {best(names[k], 100).rate / best(names['streams'], 100).rate:.2f}× / "
        f"{best(names[k], 5000).rate / best(names['streams'], 5000).rate:.2f}×"
        for k in ("c", "protocol")
        if all(best(names[k], n).rate and best(names["streams"], n).rate for n in (100, 5000))
    ]
    if ceiling:
        print(
            "\nFor scale, the same run's ratios to streams at 100 / 5,000 sessions: "
            + "; ".join(ceiling)
            + "."
        )


if __name__ == "__main__":
    main()
