"""What each kind of step costs the server, in instructions (callgrind) or CPU time.

    .venv/bin/python -m benchmarks.steps            (run by `make bench-mixed` after the socket runs)
    .venv/bin/python -m benchmarks.steps --relay    (the agent desk's relay beside a keypress: `relay`)

In process, on uvloop: one menu of the mixed workload (benchmarks/menus.py: the shipped config/ or
a generated one) with the shipped robot and desk, a Hub as the server
builds it (transcripts on, gathered on the loop as in the server; the writer thread is not started,
so its work, done on another thread, is not in these counts), and SESSIONS real CallerSessions on a
stand-in transport (it keeps nothing). For each step of the menu's script, every session
is walked to the step (not counted), then each takes the step: `data_received(line + CRLF)`, the
whole path a read takes (line discipline, line rate, the coroutine, the engine, the transcript, the
write). Counted: only those calls, divided by SESSIONS.

Under valgrind (when it is installed) the counts are instructions, toggled on around the measured
calls with callgrind's client requests (a tiny C helper, built with gcc): repeatable on a noisy
machine. Without valgrind, the same walk reports CPU time per step (process_time, best of 5).
Also reported: the robot's own matching of the question (Matcher.match), against which the robot
question step is judged.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, targets_table

SESSIONS = 200
HELPER = r"""
#include <valgrind/callgrind.h>
void cg_on(void) { CALLGRIND_TOGGLE_COLLECT; }
void cg_off(void) { CALLGRIND_TOGGLE_COLLECT; }
void cg_dump(const char *what) { CALLGRIND_DUMP_STATS_AT(what); }
"""


class Transport:
    """Stands in for uvloop's TCP transport: takes the bytes, keeps nothing."""

    written = 0

    def __init__(self, port: int) -> None:
        self.port = port

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", self.port) if name == "peername" else default

    def write(self, data: bytes) -> None:
        Transport.written += len(data)

    def is_closing(self) -> bool:
        return False

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def _helper() -> Any:
    """The callgrind client requests, or None when not under valgrind."""
    if not os.environ.get("HOTLINE_STEPS_CALLGRIND"):
        return None
    src = Path(tempfile.gettempdir()) / "hotline-cg-helper.c"
    lib = src.with_suffix(".so")
    if not lib.exists():
        src.write_text(HELPER)
        subprocess.run(["gcc", "-O1", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    return ctypes.CDLL(str(lib))


Prepare = Callable[[], Callable[[], None]]


def _hub(config: Path, data: Path, transcripts: bool = True) -> Any:
    """A Hub as the server builds it, on `config`, its records in `data`; the limits a benchmark
    from one address past them needs (lines per second, sessions, agent connections) raised."""
    from app.configdir import load_config
    from app.records import Recorder
    from app.server import Hub, settle_collector
    from app.settings import Settings

    settings = Settings(
        config=config,
        data=data,
        max_lines_per_second=1e9,
        max_sessions=100_000,
        max_sessions_per_address=100_000,
        max_agent_connections=100_000,
    )
    loaded = load_config(settings.config)
    assert loaded.graph is not None and loaded.robot is not None
    records = Recorder(settings.data, 30) if transcripts else None
    hub = Hub(settings, loaded.graph, loaded.robot, loaded.desk, records)
    settle_collector()  # the collector as the server sets it (else its passes land in some steps)
    return hub


async def walk(counted: Callable[[str, Prepare], None]) -> None:
    """Every step of SCRIPT, each measured over SESSIONS sessions in the same state."""
    from app.net.tcp import CallerSession
    from benchmarks.menus import BY_KEY

    shape = BY_KEY[os.environ.get("HOTLINE_STEPS_MENU", "shipped")]
    script = shape.script
    data = tempfile.mkdtemp(prefix="hotline-steps-")
    hub = _hub(
        shape.folder(Path(data) / "menus"), Path(data), not os.environ.get("HOTLINE_STEPS_NO_TRANSCRIPTS")
    )
    gone: list[Any] = []
    try:
        for index, (kind, line) in enumerate(script):

            def prepare(index: int = index, line: str = line) -> Callable[[], None]:
                """SESSIONS new callers walked to just before the step; the step, to call once."""
                sessions = []
                for i in range(SESSIONS):
                    s = CallerSession(hub)
                    s.connection_made(Transport(40000 + i))  # type: ignore[arg-type]
                    sessions.append(s)
                for _, before in script[:index]:
                    for s in sessions:
                        s.data_received(before.encode() + b"\r\n")
                data_in = line.encode() + b"\r\n"

                def step() -> None:
                    for s in sessions:
                        s.data_received(data_in)

                gone.extend(sessions)
                return step

            counted(f"{index:02d} {kind}", prepare)
            for s in gone:
                s.connection_lost(None)
            gone.clear()
        question = next((line for kind, line in script if kind == "robot question"), None)
        robot = hub.robot
        if question is not None:

            def match() -> None:
                for _ in range(SESSIONS):
                    robot._answer(question)  # matching itself, not the kept answer

            counted("robot matching alone", lambda: match)
    finally:
        hub.timers.close()
        shutil.rmtree(data, ignore_errors=True)


async def relay(counted: Callable[[str, Prepare], None]) -> None:
    """The relay beside a keypress, on one Hub: the desk benchmark's config (benchmarks/desk.py: the
    bench menu, its hidden transfer option, a queue of SESSIONS agents), SESSIONS callers connected
    each to an agent (logged in directly: no password check), all on stand-in transports. Counted:
    an option keypress on the bench menu; a caller's line to the agent (`data_received` of the
    caller's session, down to the agent's write); an agent's line to the caller (`data_received` of
    the agent's connection, down to the caller's write). Transcripts on, as in the server."""
    from app.net.agents import AgentConnection
    from app.net.tcp import CallerSession
    from benchmarks.desk import ANSWER, ASK, write_config

    data = Path(tempfile.mkdtemp(prefix="hotline-steps-"))
    hub = _hub(write_config(data, {"default": range(3001, 3001 + SESSIONS)}), data / "data")
    try:

        def keypresses() -> Callable[[], None]:
            sessions = []
            for i in range(SESSIONS):
                s = CallerSession(hub)
                s.connection_made(Transport(30000 + i))  # type: ignore[arg-type]
                sessions.append(s)

            def step() -> None:
                for s in sessions:
                    s.data_received(b"1\r\n")

            return step

        counted("option keypress (bench menu)", keypresses)
        agents, callers = [], []
        for i in range(SESSIONS):
            a = AgentConnection(hub)
            a.connection_made(Transport(50000 + i))  # type: ignore[arg-type]
            a.agent = hub.desk.login(str(3001 + i), a, time.time())
            a._done_waiting()
            a.data_received(b"/ready\r\n")
            agents.append(a)
        for i in range(SESSIONS):
            s = CallerSession(hub)
            s.connection_made(Transport(40000 + i))  # type: ignore[arg-type]
            s.data_received(b"9\r\n")  # the hidden transfer option
            callers.append(s)
        for _ in range(500):  # offers go out on the desk's next turn
            if all(a.agent is not None and a.agent.offer is not None for a in agents):
                break
            await asyncio.sleep(0.01)
        for a in agents:
            a.data_received(b"/accept\r\n")
        for _ in range(500):
            if all(s.engine.desk is not None and s.engine.desk.connected for s in callers):
                break
            await asyncio.sleep(0.01)
        else:
            raise RuntimeError("the relay's callers were not all connected")
        asked, answered = (ASK + "\r\n").encode(), (ANSWER + "\r\n").encode()

        def caller_lines() -> Callable[[], None]:
            def step() -> None:
                for s in callers:
                    s.data_received(asked)

            return step

        def agent_lines() -> Callable[[], None]:
            def step() -> None:
                for a in agents:
                    a.data_received(answered)

            return step

        counted("caller's line to the agent", caller_lines)
        counted("agent's line to the caller", agent_lines)
    finally:
        hub.timers.close()
        shutil.rmtree(data, ignore_errors=True)


def inner() -> None:
    """The measuring process: prints `name cost` lines (instructions dumped to files under valgrind)."""
    import uvloop

    from app import logs

    logs.configure("warning", "json")  # sessions log at info: not part of what is counted
    cg = _helper()
    results: list[tuple[str, float]] = []

    def counted(name: str, prepare: Prepare) -> None:
        if cg is not None:
            prepare()()  # warm: caches and first-time paths are not the steady state
            step = prepare()
            cg.cg_on()
            step()
            cg.cg_off()
            cg.cg_dump(name.encode())
            return
        prepare()()
        best = min(_timed(prepare()) for _ in range(5))
        results.append((name, best / SESSIONS * 1e6))

    uvloop.run(relay(counted) if os.environ.get("HOTLINE_STEPS_MENU") == "relay" else walk(counted))
    for name, cost in results:
        print(f"{cost:.3f} {name}")


def _timed(fn: Callable[[], None]) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def instructions(menu: str) -> list[tuple[str, float]]:
    """Run the walk on `menu` under callgrind; instructions per step for each dump."""
    with tempfile.TemporaryDirectory(prefix="hotline-cg-") as tmp:
        out = Path(tmp) / "cg.out"
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--collect-atstart=no",
                f"--callgrind-out-file={out}",
                sys.executable,
                "-m",
                "benchmarks.steps",
                "--inner",
            ],
            check=True,
            cwd=REPO,
            env={**os.environ, "HOTLINE_STEPS_CALLGRIND": "1", "HOTLINE_STEPS_MENU": menu},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        found = []
        for path in Path(tmp).glob("cg.out.*"):
            text = path.read_text(errors="replace")
            name = re.search(r"^desc: Trigger: Client Request: (.+)$", text, re.M)
            total = re.search(r"^(?:totals|summary): (\d+)", text, re.M)
            if name and total:
                found.append((name.group(1), int(total.group(1)) / SESSIONS))
        return sorted(found)


def main(argv: list[str] | None = None) -> None:
    from benchmarks.menus import BY_KEY, SHAPES

    parser = argparse.ArgumentParser()
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--time", action="store_true", help="CPU time even where valgrind is installed")
    parser.add_argument("--no-transcripts", action="store_true", help="sessions keep no transcript")
    parser.add_argument("--menus", default=",".join(s.key for s in SHAPES), help="comma-separated shapes")
    parser.add_argument(
        "--relay", action="store_true", help="the agent desk's relay beside a keypress instead"
    )
    args = parser.parse_args(argv)
    if args.no_transcripts:
        os.environ["HOTLINE_STEPS_NO_TRANSCRIPTS"] = "1"
    if args.inner:
        inner()
        return
    use_valgrind = shutil.which("valgrind") is not None and shutil.which("gcc") is not None and not args.time
    unit = "instructions" if use_valgrind else "µs of CPU"
    if args.relay:
        relay_report(dict(costs_of("relay", use_valgrind)), unit)
        return
    every: dict[str, list[tuple[str, float]]] = {}
    for menu in args.menus.split(","):
        costs = costs_of(menu, use_valgrind)
        every[menu] = costs
        report(costs, unit, BY_KEY[menu].title)
    if len(every) > 1:
        by_kind(every, unit)


def costs_of(menu: str, use_valgrind: bool) -> list[tuple[str, float]]:
    """(step, cost) for `menu` (or "relay"), in instructions under valgrind, else µs of CPU."""
    if use_valgrind:
        return instructions(menu)
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.steps", "--inner"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "HOTLINE_STEPS_MENU": menu},
    ).stdout
    return [(line.split(" ", 1)[1], float(line.split(" ", 1)[0])) for line in out.splitlines()]


def relay_report(costs: dict[str, float], unit: str) -> None:
    key = costs["option keypress (bench menu)"]
    print(
        f"\n### The relay beside a keypress ({unit} per line, {SESSIONS} pairs; in process, transcripts on)\n"
    )
    print(f"| step | {unit} | × a keypress |\n|---|---|---|")
    for name, value in costs.items():
        shown = f"{value:,.0f}" if unit == "instructions" else f"{value:.2f}"
        print(f"| {name} | {shown} | {value / key:.2f}× |")
    line = (costs["caller's line to the agent"] + costs["agent's line to the caller"]) / 2
    targets_table(
        [
            (
                "a relayed line costs ≤ 1.5× a keypress (the server's Python only)",
                f"{line / key:.2f}×",
                line / key <= 1.5,
            )
        ]
    )


def by_kind(every: dict[str, list[tuple[str, float]]], unit: str) -> None:
    """One table: each kind of step (rows) on each menu (columns), the mean where a script takes
    it more than once."""
    from benchmarks.menus import BY_KEY

    kinds: dict[str, dict[str, list[float]]] = {}
    for menu, costs in every.items():
        for name, value in costs:
            kind = name[3:] if name[:2].isdigit() else name
            kinds.setdefault(kind, {}).setdefault(menu, []).append(value)
    menus = list(every)
    kept = "off" if os.environ.get("HOTLINE_STEPS_NO_TRANSCRIPTS") else "on"
    print(f"\n### Each kind of step on each menu ({unit} per step; in process, transcripts {kept})\n")
    print("| step kind | " + " | ".join(BY_KEY[m].key for m in menus) + " |")
    print("|---" * (len(menus) + 1) + "|")
    for kind, cells in kinds.items():
        shown = []
        for m in menus:
            values = cells.get(m)
            if not values:
                shown.append("")
            else:
                v = sum(values) / len(values)
                shown.append(f"{v:,.0f}" if unit == "instructions" else f"{v:.2f}")
        print(f"| {kind} | " + " | ".join(shown) + " |")


def report(costs: list[tuple[str, float]], unit: str, title: str = "") -> None:
    by_name = dict(costs)
    # the base: an option into a submenu (the shapes' cheapest keypress that moves)
    options = [v for k, v in costs if k[3:] == "option" or k[3:].endswith("option into a submenu")]
    base = min(options) if options else 0.0
    print(
        f"\n### {title}: what each step costs the server ({unit} per step, {SESSIONS} sessions each; in process"
        + (", transcripts off" if os.environ.get("HOTLINE_STEPS_NO_TRANSCRIPTS") else "")
        + ")\n"
    )
    print(f"| step of the mixed workload | {unit} | × an option keypress |\n|---|---|---|")
    for name, value in costs:
        ratio = f"{value / base:.2f}×" if base else "—"
        shown = f"{value:,.0f}" if unit == "instructions" else f"{value:.2f}"
        print(f"| {name[3:] if name[:2].isdigit() else name} | {shown} | {ratio} |")
    rows: list[tuple[str, str, bool]] = []
    worst = max(
        ((k, v) for k, v in costs if k[:2].isdigit() and "robot question" not in k),
        key=lambda kv: kv[1],
        default=None,
    )
    if worst and base:
        rows.append(
            (
                "no step kind costs more than 1.3× an option keypress (robot questions apart)",
                f"the dearest: {worst[0][3:]}, {worst[1] / base:.2f}×",
                worst[1] / base <= 1.3,
            )
        )
    robot = next((v for k, v in costs if "robot question" in k), 0.0)
    alone = by_name.get("robot matching alone", 0.0)
    targets_table(rows)
    if robot and alone and base:
        print(
            f"\nRobot questions, apart: a question asked before (its answer kept) costs {robot / base:.2f}× an "
            f"option keypress; a new one adds the robot's matching, {alone:,.0f} {unit} ({alone / base:.0f}×)."
        )


if __name__ == "__main__":
    main()
