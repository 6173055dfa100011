"""The mixed workload: callers walking the shipped 10086 menu the way real calls do, side by side.

    make bench-mixed      (or: .venv/bin/python -m benchmarks.mixed [--seconds S] [--rounds R])

Each simulated caller (loadgen.c, C/epoll, pinned to CPU 1) loops over SCRIPT on the shipped menu
(config/): options into submenus, `9` repeat, `*` back, a full-width digit, `#` top, the phone-number
input with an invalid number and its retry, then a valid one (a lookup and a templated balance), an
invalid key, the robot and a question to it. hotline serves config/ as shipped (transcripts on, the
default). The baselines (a bare uvloop Protocol, bare asyncio streams on uvloop) serve the same bytes
for the same script from a reply table recorded from hotline at the start of the run: they are the
ceiling and the design card's reference, not menu engines. Rounds alternate the servers.

Then, per step kind, the server's cost in instructions (valgrind's callgrind, repeatable on this
noisy machine): `benchmarks/steps.py` drives a real CallerSession in process with a stand-in
transport, many sessions in the same state taking the same step, counting only the steps.
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import time
from pathlib import Path

from benchmarks.common import REPO, Proc, free_port, median, python, raise_file_limit, targets_table
from benchmarks.tcp import HOTLINE_ENV, Design, Run, measure

# (kind, what the caller types); one loop of it starts and ends at the main menu
SCRIPT: list[tuple[str, str]] = [
    ("option", "3"),
    ("option", "1"),
    ("repeat (9)", "9"),
    ("back (*)", "*"),
    ("full-width digit", "２"),
    ("top (#)", "#"),
    ("option to an input", "1"),
    ("invalid input, retry", "1380013800"),
    ("input + lookup + template", "13800138000"),
    ("invalid key", "7"),
    ("option to the robot", "8"),
    ("robot question", "流量还剩多少"),
    ("top (#)", "#"),
]
CONFIG = REPO / "config"
MIXED_ENV = {**HOTLINE_ENV, "HOTLINE_CONFIG": str(CONFIG)}


def _read_quiet(sock: socket.socket, quiet: float = 0.3) -> bytes:
    """Everything the server says until it has been quiet for `quiet` seconds."""
    out = b""
    sock.settimeout(quiet)
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return out
        if not chunk:
            return out
        out += chunk


def record(path: Path) -> dict[str, object]:
    """Walk SCRIPT once on a real hotline process; keep what it said to each line."""
    port = free_port()
    server = Proc([python(), "-m", "app", "serve", "--tcp-port", str(port)], env=MIXED_ENV, tcp_port=port)
    try:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            greeting = _read_quiet(sock).decode()
            steps = []
            for _, line in SCRIPT:
                sock.sendall(line.encode() + b"\r\n")
                steps.append([line, _read_quiet(sock).decode()])
    finally:
        server.stop()
    table = {"greeting": greeting, "steps": steps}
    path.write_text(json.dumps(table, ensure_ascii=False), encoding="utf-8")
    return table


def loadgen_steps(table: dict[str, object]) -> tuple[str, list[str]]:
    """loadgen's greeting and SEND=>EXPECT steps: each expects the last line of its reply."""

    def last_line(text: str) -> str:
        return text.rstrip("\r\n").rsplit("\r\n", 1)[-1] + "\\r\\n"

    steps = table["steps"]
    assert isinstance(steps, list) and isinstance(table["greeting"], str)
    return last_line(table["greeting"]), [f"{line}\\r\\n=>{last_line(reply)}" for line, reply in steps]


def designs(table_path: Path) -> list[Design]:
    return [
        Design(
            "hotline",
            "hotline",
            lambda port: [python(), "-m", "app", "serve", "--tcp-port", str(port)],
            MIXED_ENV,
        ),
        Design(
            "quiet",
            "hotline, transcripts off",
            lambda port: [python(), "-m", "app", "serve", "--tcp-port", str(port)],
            {**MIXED_ENV, "HOTLINE_TRANSCRIPTS": "false"},
        ),
        Design(
            "protocol",
            "bare uvloop Protocol",
            lambda port: [python(), "-m", "benchmarks.baselines.protocol", str(port), str(table_path)],
        ),
        Design(
            "streams",
            "asyncio streams, uvloop",
            lambda port: [
                python(),
                "-m",
                "benchmarks.baselines.streams",
                str(port),
                "uvloop",
                str(table_path),
            ],
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-steps", action="store_true", help="skip the per-step-kind instruction counts")
    args = parser.parse_args()
    raise_file_limit()
    with tempfile.TemporaryDirectory(prefix="hotline-bench-mixed-") as tmp:
        table_path = Path(tmp) / "table.json"
        table = record(table_path)
        greeting, steps = loadgen_steps(table)
        results: dict[tuple[str, int], list[Run]] = {}
        for conns in (100, 5000):
            for _ in range(args.rounds):
                for design in designs(table_path):
                    run = measure(design, conns, args.seconds, 90.0, steps, greeting)
                    results.setdefault((design.key, conns), []).append(run)
                    time.sleep(0.2)
    report(args, results)
    if not args.no_steps:
        from benchmarks import steps as step_costs

        step_costs.main([])


def report(args: argparse.Namespace, results: dict[tuple[str, int], list[Run]]) -> None:
    names = {
        "hotline": "hotline",
        "quiet": "hotline, transcripts off",
        "protocol": "bare uvloop Protocol",
        "streams": "asyncio streams, uvloop",
    }

    def med(key: str, conns: int) -> Run:
        runs = [r for r in results.get((key, conns), []) if not r.failed]
        if not runs:
            return results.get((key, conns), [Run(failed="not run")])[0]
        return Run(
            median([r.rate for r in runs]), median([r.p50 for r in runs]), median([r.p99 for r in runs])
        )

    print(
        f"\n### Mixed workload on the shipped menu ({len(SCRIPT)} steps a loop; medians of {args.rounds} "
        f"alternating rounds of {args.seconds:g} s)\n"
    )
    print("| design | 100 sessions | hotline is | p50 / p99 | 5,000 sessions | hotline is | p50 / p99 |")
    print("|---|---|---|---|---|---|---|")
    for key, name in names.items():
        cells = [name]
        for conns in (100, 5000):
            r, h = med(key, conns), med("hotline", conns)
            if r.failed:
                cells += [f"— ({r.failed})", "", ""]
                continue
            cells += [
                f"{r.rate:,.0f}",
                f"{h.rate / r.rate:.2f}×" if r.rate else "—",
                f"{r.p50:.2f} / {r.p99:.2f} ms",
            ]
        print("| " + " | ".join(cells) + " |")
    rows: list[tuple[str, str, bool]] = []
    for conns in (100, 5000):
        pairs = zip(results.get(("hotline", conns), []), results.get(("protocol", conns), []), strict=True)
        rounds = [h.rate / p.rate for h, p in pairs if not h.failed and not p.failed and p.rate]
        if rounds:
            value = median(rounds)
            rows.append(
                (
                    f"{conns:,} sessions: the mixed workload ≥ 0.9× the bare Protocol",
                    f"{value:.2f}× (rounds {min(rounds):.2f}–{max(rounds):.2f}×)",
                    value >= 0.9,
                )
            )
    targets_table(rows)


if __name__ == "__main__":
    main()
