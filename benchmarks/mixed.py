"""The mixed workload: callers walking real menus the way real calls do, side by side.

    make bench-mixed      (or: .venv/bin/python -m benchmarks.mixed [--seconds S] [--rounds R]
                           [--menus shipped,templated,patterns,deep,robot] [--no-steps])

Each simulated caller (loadgen.c, C/epoll, pinned to CPU 1) loops over a menu's script. The menus
(benchmarks/menus.py): the shipped 10086 menu (config/) and menus generated in code in other shapes
(templated prompts; word options and patterns with captures; deep submenus; robot nodes), each with
its own script: options into a submenu, `9` repeat, `*` back, `#` top, an invalid key, a phone
number with a table look-up and a templated answer, and what its shape is about. A benchmark on one
menu can be fitted to it; the table reports each menu and the worst.

hotline serves each menu with transcripts on (the default) and off. The baselines (a bare uvloop
Protocol, bare asyncio streams on uvloop) serve the same bytes for the same script from a reply
table recorded from hotline at the start of the run: they are the ceiling and the design card's
reference, not menu engines. Rounds alternate the servers (every menu and design once a round).

Then, per step kind and menu, the server's cost in instructions (valgrind's callgrind, repeatable on
this noisy machine): `benchmarks/steps.py` drives real CallerSessions in process with a stand-in
transport, many sessions in the same state taking the same step, counting only the steps.
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import time
from pathlib import Path

from benchmarks.common import Proc, free_port, median, python, raise_file_limit, targets_table
from benchmarks.menus import BY_KEY, SHAPES, Shape
from benchmarks.tcp import HOTLINE_ENV, Design, Run, measure

SCRIPT = BY_KEY["shipped"].script  # the shipped menu's loop (what steps.py measured before shapes)
TARGET_PROTOCOL = 0.8  # transcripts on, every menu, vs the bare Protocol (issue 28)
TARGET_ON_OFF = 0.9  # transcripts on vs off


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


def env_for(folder: Path, transcripts: bool = True) -> dict[str, str]:
    return {
        **HOTLINE_ENV,
        "HOTLINE_CONFIG": str(folder),
        "HOTLINE_TRANSCRIPTS": "true" if transcripts else "false",
    }


def record(script: list[tuple[str, str]], folder: Path, path: Path) -> dict[str, object]:
    """Walk `script` once on a real hotline process serving `folder`; keep what it said to each line."""
    port = free_port()
    argv = [python(), "-m", "app", "serve", "--tcp-port", str(port)]
    server = Proc(argv, env=env_for(folder), tcp_port=port)
    try:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            greeting = _read_quiet(sock).decode()
            steps = []
            for _, line in script:
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


NAMES = {
    "hotline": "hotline",
    "quiet": "hotline, transcripts off",
    "before": "hotline before (--before)",
    "before-quiet": "hotline before, transcripts off",
    "protocol": "bare uvloop Protocol",
    "streams": "asyncio streams, uvloop",
}


def designs(folder: Path, table_path: Path, before: Path | None = None) -> list[Design]:
    serve = lambda port: [python(), "-m", "app", "serve", "--tcp-port", str(port)]  # noqa: E731
    then = []
    if before is not None:  # another checkout's hotline (the code before a change), side by side
        then = [
            Design("before", NAMES["before"], serve, env_for(folder), before),
            Design("before-quiet", NAMES["before-quiet"], serve, env_for(folder, transcripts=False), before),
        ]
    return [
        Design("hotline", NAMES["hotline"], serve, env_for(folder)),
        Design("quiet", NAMES["quiet"], serve, env_for(folder, transcripts=False)),
        *then,
        Design(
            "protocol",
            NAMES["protocol"],
            lambda port: [python(), "-m", "benchmarks.baselines.protocol", str(port), str(table_path)],
        ),
        Design(
            "streams",
            NAMES["streams"],
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


Results = dict[tuple[str, str, int], list[Run]]  # (menu, design, sessions) -> one Run a round
CONNS = (100, 5000)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--menus", default=",".join(s.key for s in SHAPES), help="comma-separated shapes")
    parser.add_argument("--no-steps", action="store_true", help="skip the per-step-kind instruction counts")
    parser.add_argument(
        "--before",
        type=Path,
        help="a checkout of the code before a change (git archive): measured beside this one",
    )
    args = parser.parse_args(argv)
    raise_file_limit()
    shapes = [BY_KEY[k] for k in args.menus.split(",")]
    results: Results = {}
    with tempfile.TemporaryDirectory(prefix="hotline-bench-mixed-") as tmp:
        root = Path(tmp)
        plans: list[tuple[Shape, list[Design], str, list[str]]] = []
        for shape in shapes:
            folder = shape.folder(root / "menus")
            table_path = root / f"{shape.key}.json"
            greeting, steps = loadgen_steps(record(shape.script, folder, table_path))
            plans.append((shape, designs(folder, table_path, args.before), greeting, steps))
        for conns in CONNS:
            for _ in range(args.rounds):
                for shape, menu_designs, greeting, steps in plans:
                    for design in menu_designs:
                        run = measure(design, conns, args.seconds, 90.0, steps, greeting)
                        results.setdefault((shape.key, design.key, conns), []).append(run)
                        time.sleep(0.2)
    report(args, shapes, results)
    if not args.no_steps:
        from benchmarks import steps as step_costs

        step_costs.main(["--menus", args.menus])


def _med(results: Results, menu: str, key: str, conns: int) -> Run:
    runs = [r for r in results.get((menu, key, conns), []) if not r.failed]
    if not runs:
        return results.get((menu, key, conns), [Run(failed="not run")])[0]
    return Run(
        median([r.rate for r in runs]),
        median([r.p50 for r in runs]),
        median([r.p99 for r in runs]),
        cpu=median([r.cpu for r in runs]),
    )


def _rounds(results: Results, menu: str, a: str, b: str, conns: int, of: str = "rate") -> list[float]:
    """a / b for each round (each round measures both seconds apart): their rates, or `of` another
    figure of a Run ("cpu")."""
    pairs = zip(results.get((menu, a, conns), []), results.get((menu, b, conns), []), strict=True)
    return [
        getattr(x, of) / getattr(y, of) for x, y in pairs if not x.failed and not y.failed and getattr(y, of)
    ]


def report(args: argparse.Namespace, shapes: list[Shape], results: Results) -> None:
    print(f"\n### Mixed workload (medians of {args.rounds} alternating rounds of {args.seconds:g} s)\n")
    for shape in shapes:
        print(f"\n#### {shape.title}: {len(shape.script)} steps a loop\n")
        print("| design | 100 sessions | hotline is | p50 / p99 | 5,000 sessions | hotline is | p50 / p99 |")
        print("|---|---|---|---|---|---|---|")
        for key, name in NAMES.items():
            if (shape.key, key, CONNS[0]) not in results:
                continue
            cells = [name]
            for conns in CONNS:
                r, h = _med(results, shape.key, key, conns), _med(results, shape.key, "hotline", conns)
                if r.failed:
                    cells += [f"— ({r.failed})", "", ""]
                    continue
                cells += [
                    f"{r.rate:,.0f}",
                    f"{h.rate / r.rate:.2f}×" if r.rate else "—",
                    f"{r.p50:.2f} / {r.p99:.2f} ms",
                ]
            print("| " + " | ".join(cells) + " |")
    # the summary: per menu, the ratios the issue asks for (medians of the round-by-round ratios)
    print("\n#### Every menu: hotline's ratios (median of the rounds; the worst menu last)\n")
    pairs = [("hotline", "protocol"), ("quiet", "protocol"), ("hotline", "quiet")]
    labels = ["on ÷ Protocol", "off ÷ Protocol", "on ÷ off"]
    if args.before is not None:
        pairs += [("before", "protocol"), ("before-quiet", "protocol"), ("hotline", "before")]
        labels += ["before, on ÷ Protocol", "before, off ÷ Protocol", "on ÷ before (on)"]
    head = "| menu | " + " | ".join(f"{what} at {conns:,}" for conns in CONNS for what in labels)
    print(head + " |\n|---" + "|---" * (len(labels) * len(CONNS)) + "|")
    worst: dict[tuple[str, int], float] = {}
    rows: list[tuple[str, str, bool]] = []
    for shape in shapes:
        cells = [shape.title]
        for conns in CONNS:
            for a, b in pairs:
                rounds = _rounds(results, shape.key, a, b, conns)
                value = median(rounds) if rounds else 0.0
                cells.append(f"{value:.2f}×" if rounds else "—")
                if rounds:
                    worst[(a + b, conns)] = min(worst.get((a + b, conns), value), value)
        print("| " + " | ".join(cells) + " |")
        for conns in CONNS:
            on = _rounds(results, shape.key, "hotline", "protocol", conns)
            if on:
                value = median(on)
                rows.append(
                    (
                        f"{shape.key}, {conns:,} sessions: transcripts on ≥ {TARGET_PROTOCOL}× the bare Protocol",
                        f"{value:.2f}× (rounds {min(on):.2f}–{max(on):.2f}×)",
                        value >= TARGET_PROTOCOL,
                    )
                )
            onoff = _rounds(results, shape.key, "hotline", "quiet", conns)
            if onoff:
                value = median(onoff)
                rows.append(
                    (
                        f"{shape.key}, {conns:,} sessions: transcripts on ≥ {TARGET_ON_OFF}× off",
                        f"{value:.2f}× (rounds {min(onoff):.2f}–{max(onoff):.2f}×)",
                        value >= TARGET_ON_OFF,
                    )
                )
    cells = ["**the worst**"]
    for conns in CONNS:
        for a, b in pairs:
            value = worst.get((a + b, conns))
            cells.append(f"**{value:.2f}×**" if value is not None else "—")
    print("| " + " | ".join(cells) + " |")
    cpu_table(args, shapes, results)
    targets_table(rows)


def cpu_table(args: argparse.Namespace, shapes: list[Shape], results: Results) -> None:
    """The server's CPU a step (user + system of its process over each run, read from /proc: what
    the load took of the shared machine's time is not in it), medians of the rounds, and the
    round-by-round ratios of hotline on against off (and against --before)."""
    keys = ["hotline", "quiet", *(["before"] if args.before is not None else []), "protocol"]
    ratios = [("hotline", "quiet", "on ÷ off")]
    if args.before is not None:
        ratios.append(("hotline", "before", "on ÷ before"))
    print("\n#### Server CPU a step (µs; medians of the rounds; the callers' greeting included)\n")
    labels = [NAMES[k] for k in keys] + [what for _, _, what in ratios]
    print("| menu | " + " | ".join(f"{label} at {conns:,}" for conns in CONNS for label in labels) + " |")
    print("|---" + "|---" * (len(labels) * len(CONNS)) + "|")
    for shape in shapes:
        cells = [shape.title]
        for conns in CONNS:
            for key in keys:
                run = _med(results, shape.key, key, conns)
                cells.append(f"{run.cpu:.1f}" if run.cpu else "—")
            for a, b, _ in ratios:
                rounds = _rounds(results, shape.key, a, b, conns, "cpu")
                cells.append(f"{median(rounds):.2f}×" if rounds else "—")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
