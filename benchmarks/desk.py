"""Agent desk benchmark: the relay and the queue, side by side with the menu keypress in one run.

    make bench-desk       (or: .venv/bin/python -m benchmarks.desk [--seconds S] [--rounds R])

The servers run pinned to CPU 0, the load on CPU 1: `loadgen.c` for menu keypresses (as the TCP
benchmark), `deskgen.c` (C, epoll) for agents and callers of the desk. Each server's config is
the two-screen bench menu plus a hidden option 9 to a transfer node, and a desk.yaml whose agents
share one (real, scrypt) password hash; logins pay the real scrypt check.

1. Keypress vs relay, alternating rounds: hotline without a desk (benchmarks/config), hotline with
   500 agents logged in, ready and idle in another queue (the desk configured but idle), and on that
   same server 100 callers each connected to an agent: the caller types a sentence in Chinese, the
   agent reads it as `CALLER …` and answers with one, the caller reads it through `agent_says`. A relay round trip is
   two lines in and two out; a keypress one in and one out.
2. A queue of 10,000 waiting callers with 500 agents logged in: RSS per waiting caller against an
   idle caller's (held at the greeting), then all 500 agents go /ready at once and take calls as fast
   as the desk offers them (OFFER -> /accept, CONNECTED -> /end, wrap_up 0): calls served per second.
3. The desk core in process (no I/O): join, position and leave with 1,000 and 10,000 waiting and
   500 agents, to show the cost does not grow with the queue.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
import time
import timeit
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
from benchmarks.tcp import GREETING, HOTLINE_ENV, Run, loadgen

PASSWORD = "bench"
CONNECTED = "已接通"
SAYS = "坐席说:"
POSITION = "您前面还有"
ASK = "你好,我这个月的话费怎么扣了这么多?"  # what callers and agents type: Chinese, a sentence each
ANSWER = "您好,我帮您查一下本月的账单,请稍等。"

TRANSFER = f"""
  agent:
    type: transfer
    queue: default
    position: {POSITION} {{queue.ahead}} 位
    connected: 坐席 {{agent.id}} {CONNECTED}
    agent_says: "{SAYS}{{text}}"
    next: main
"""


def write_config(folder: Path, queues: dict[str, range]) -> Path:
    """The bench menu with option 9 -> a transfer node, and a desk whose agents all use PASSWORD."""
    from app.desk.passwords import hash_password

    menu = (REPO / "benchmarks" / "config" / "menu.yaml").read_text(encoding="utf-8")
    menu = (
        menu.replace('options: {"1": sub}', 'options: {"1": sub, "9": agent}\n    check_prompt_keys: false')
        + TRANSFER
    )
    (folder / "menu.yaml").write_text(menu, encoding="utf-8")
    hashed = hash_password(PASSWORD)
    lines = ["version: 1", "queues:"]
    for name in queues:
        lines += [
            f"  {name}:",
            "    announce_every: 10m",
            "    max_wait: 1h",
            "    max_waiting: 20000",
            "    ring_timeout: 60s",
            "    wrap_up: 0s",
        ]
    lines.append("agents:")
    for name, ids in queues.items():
        for i in ids:
            lines.append(f'  - {{id: "{i}", name: a{i}, password_hash: "{hashed}", queues: [{name}]}}')
    (folder / "desk.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@dataclass
class Server:
    proc: Proc
    port: int
    agent_port: int
    admin_port: int


def serve(config: Path) -> Server:
    port, agent_port, admin_port = free_port(), free_port(), free_port()
    env = {
        **HOTLINE_ENV,
        "HOTLINE_CONFIG": str(config),
        "HOTLINE_AGENT_PORT": str(agent_port),
        "HOTLINE_ADMIN_PORT": str(admin_port),
    }
    proc = Proc([python(), "-m", "app", "serve", "--tcp-port", str(port)], env=env, tcp_port=port)
    return Server(proc, port, agent_port, admin_port)


def start_drain(server: Server, agents: int, waiting: int, base: int, seconds: int) -> subprocess.Popen[str]:
    """deskgen -m drain: `agents` log in (it prints AGENTS and waits for a line), then `waiting`
    callers join the queue (READY, and a line again), then the agents take them."""
    argv = deskgen(server, "-m", "drain", "-a", str(agents), "-c", str(waiting), "-W", POSITION)
    return subprocess.Popen(
        [*argv, "-b", str(base), "-w", PASSWORD, "-r", "200", "-d", str(seconds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def deskgen(server: Server, *args: str) -> list[str]:
    return pinned(
        CLIENT_CPU,
        [
            str(build_tool("deskgen")),
            "-p",
            str(server.port),
            "-P",
            str(server.agent_port),
            "-g",
            GREETING,
            *args,
        ],
    )


@dataclass
class Measured:
    """A run and the server CPU it cost per step, in microseconds."""

    run: Run
    cpu_us: float = 0.0


def keypresses(server: Server, sessions: int, seconds: float) -> Measured:
    before = server.proc.cpu_seconds()
    run = loadgen(server.port, sessions, seconds, 60)
    used = server.proc.cpu_seconds() - before
    return Measured(run, used / (run.rate * seconds) * 1e6 if run.rate and not run.failed else 0.0)


def relay(server: Server, pairs: int, seconds: float) -> Measured:
    """Round trips caller -> agent -> caller; CPU counted from when all pairs are connected (the
    agents' logins cost a scrypt each, and are not the relay)."""
    argv = deskgen(server, "-m", "relay", "-a", str(pairs), "-b", "3001", "-w", PASSWORD)
    argv += ["-q", ASK, "-A", ANSWER, "-C", CONNECTED, "-R", SAYS + ANSWER[:6], "-d", str(seconds)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()  # deskgen gives up by itself after 180 s of ramp
    if not first.startswith("PAIRED"):
        out, err = proc.communicate()
        return Measured(Run(failed=(err or first + out).strip()[:80] or "deskgen failed"))
    before = server.proc.cpu_seconds()
    try:
        out, err = proc.communicate(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return Measured(Run(failed="relay did not finish"))
    used = server.proc.cpu_seconds() - before
    m = re.search(r"pairs=(\d+) errors=(\d+) rounds=(\d+) rate=(\d+)/s p50=([\d.]+)ms p99=([\d.]+)ms", out)
    if m is None:
        return Measured(Run(failed=(err or out).strip()[:80] or f"deskgen exit {proc.returncode}"))
    run = Run(float(m.group(4)), float(m.group(5)), float(m.group(6)), int(m.group(2)))
    if int(m.group(1)) < pairs:
        run.failed = f"only {m.group(1)} of {pairs} connected"
    rounds = int(m.group(3))
    return Measured(run, used / rounds * 1e6 if rounds else 0.0)


class Held:
    """deskgen holding agents logged in, ready and idle until closed."""

    def __init__(self, server: Server, agents: int, base: int) -> None:
        argv = deskgen(server, "-m", "hold", "-a", str(agents), "-b", str(base), "-w", PASSWORD)
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("READY"):
            self.close()
            raise RuntimeError(f"agents did not log in: {line.strip()!r}")

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(30)
        self.proc.stdout.close()


def side_by_side(args: argparse.Namespace, folder: Path) -> dict[str, list[Measured]]:
    config = write_config(
        folder / "side", {"default": range(3001, 3001 + args.pairs), "idle": range(2001, 2501)}
    )
    results: dict[str, list[Measured]] = {"plain": [], "idle": [], "relay": []}
    plain = serve(REPO / "benchmarks" / "config")
    desk = serve(config)
    held = Held(desk, 500, 2001)
    try:
        for _ in range(args.rounds):
            results["plain"].append(keypresses(plain, args.pairs, args.seconds))
            results["idle"].append(keypresses(desk, args.pairs, args.seconds))
            results["relay"].append(relay(desk, args.pairs, args.seconds))
    finally:
        held.close()
        plain.proc.stop()
        desk.proc.stop()
    return results


@dataclass
class Drain:
    idle_kib: float = 0.0
    waiting_kib: float = 0.0
    served: int = 0
    run: Run = field(default_factory=Run)  # calls per second, next-offer latency


def idle_callers(server: Server, callers: int) -> float:
    """KiB of RSS per caller held at the greeting (loadgen -H)."""
    time.sleep(0.5)
    before = server.proc.rss_kib()
    argv = [str(build_tool("loadgen")), "-p", str(server.port), "-c", str(callers), "-g", GREETING]
    proc = subprocess.Popen(
        pinned(CLIENT_CPU, [*argv, "-H", "2", "-r", "200"]), stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    after = server.proc.rss_kib()
    proc.wait(60)
    proc.stdout.close()
    m = re.match(r"READY (\d+) of", line)
    return (after - before) / callers if m and int(m.group(1)) == callers else 0.0


def drain(args: argparse.Namespace, folder: Path) -> Drain:
    config = write_config(folder / "drain", {"default": range(2001, 2001 + args.agents)})
    result = Drain()
    server = serve(config)
    try:
        result.idle_kib = idle_callers(server, args.waiting)
    finally:
        server.proc.stop()
    server = serve(config)  # a fresh process, so the idle callers' freed memory does not count
    proc = start_drain(server, args.agents, args.waiting, 2001, 60)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        if not proc.stdout.readline().startswith("AGENTS"):
            result.run.failed = "agents did not log in"
            return result
        time.sleep(0.5)
        before = server.proc.rss_kib()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        if not line.startswith("READY"):
            result.run.failed = f"callers did not all wait: {line.strip()[:60]}"
            return result
        result.waiting_kib = (server.proc.rss_kib() - before) / args.waiting
        proc.stdin.write("go\n")
        proc.stdin.flush()
        out = proc.stdout.readline()
        m = re.search(
            r"served=(\d+) seconds=[\d.]+ errors=\d+ rate=(\d+)/s p50=([\d.]+)ms p99=([\d.]+)ms", out
        )
        if m is None:
            result.run.failed = out.strip()[:80] or "deskgen failed"
            return result
        result.served = int(m.group(1))
        result.run = Run(float(m.group(2)), float(m.group(3)), float(m.group(4)))
        return result
    finally:
        proc.stdin.close()
        proc.wait(60)
        proc.stdout.close()
        server.proc.stop()


class _Link:
    """A caller or agent that ignores what the desk tells it."""

    peer = "127.0.0.1:1"

    def handoff_context(self) -> tuple[tuple[str, str], ...]:
        return (("path", "main>agent"),)

    def desk_event(self, event: object) -> None:
        pass

    agent_event = desk_event


def _ignore(position: int) -> None:
    pass


def core_cost(agents: int, waiting: int, reps: int = 2000) -> dict[str, float]:
    """Microseconds per join + leave and per position on the sans-IO desk with `waiting` callers
    in the queue and `agents` logged in (on break: they count, and are never offered)."""
    from app.desk.desk import Desk
    from app.desk.loader import DeskConfig, QueueConfig
    from app.desk.schema import AgentModel, QueueModel

    ids = [str(i) for i in range(2001, 2001 + agents)]
    config = DeskConfig(
        {"default": QueueConfig("default", QueueModel(max_waiting=waiting + 10), None)},
        {i: AgentModel(id=i, name=i, password_hash="x", queues=["default"]) for i in ids},
    )
    desk, link, now = Desk(config), _Link(), 1_800_000_000.0
    for i in ids:
        desk.login(i, link, now)
    for k in range(waiting):
        desk.join("default", f"c{k}", link, now)
    middle = desk.calls[f"c{waiting // 2}"]
    counter = iter(range(10**9))

    def join_leave() -> None:
        call_id = f"x{next(counter)}"
        desk.join("default", call_id, link, now)
        desk.leave(call_id, now)

    return {
        "join + leave": timeit.timeit(join_leave, number=reps) / reps * 1e6,
        "position": timeit.timeit(lambda: desk.position(middle, _ignore), number=reps) / reps * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=100, help="callers talking to agents in the relay")
    parser.add_argument("--agents", type=int, default=500)
    parser.add_argument("--waiting", type=int, default=10000)
    args = parser.parse_args()
    raise_file_limit()
    with tempfile.TemporaryDirectory(prefix="hotline-bench-desk-") as tmp:
        folder = Path(tmp)
        (folder / "side").mkdir()
        (folder / "drain").mkdir()
        side = side_by_side(args, folder)
        queue = drain(args, folder)
    core = {n: core_cost(args.agents, n) for n in (1000, 10000)}
    report(args, side, queue, core)
    # the relay's Python alone, in instructions (benchmarks/steps.py): repeatable where the above is noisy
    subprocess.run([python(), "-m", "benchmarks.steps", "--relay"], cwd=REPO, check=True)


def report(
    args: argparse.Namespace,
    side: dict[str, list[Measured]],
    queue: Drain,
    core: dict[int, dict[str, float]],
) -> None:
    print(
        f"\n### Agent desk (medians of {args.rounds} alternating rounds of {args.seconds:g} s,"
        f" {args.pairs} sessions; server CPU per step from /proc)\n"
    )
    print("| workload | per second | p50 / p99 | server CPU per step | |\n|---|---|---|---|---|")
    labels = {
        "plain": "menu keypress, no desk",
        "idle": "menu keypress, desk configured, 500 agents ready and idle",
        "relay": "relay round trip: caller line → agent, agent line → caller",
    }
    for key, label in labels.items():
        runs = [m for m in side[key] if not m.run.failed]
        if not runs:
            failed = side[key][0].run.failed if side[key] else "not run"
            print(f"| {label} | — ({failed}) | | | |")
            continue
        rate = median([m.run.rate for m in runs])
        p50, p99 = median([m.run.p50 for m in runs]), median([m.run.p99 for m in runs])
        cpu = median([m.cpu_us for m in runs])
        errors = sum(m.run.errors for m in runs)
        print(f"| {label} | {rate:,.0f} | {p50:.2f} / {p99:.2f} ms | {cpu:.1f} µs | {errors} errors |")

    def per_round(a: str, b: str, value: Callable[[Measured], float]) -> list[float]:
        return [
            value(x) / value(y)
            for x, y in zip(side[a], side[b], strict=True)
            if not x.run.failed and not y.run.failed and value(y)
        ]

    rows: list[tuple[str, str, bool]] = []
    cost = per_round("relay", "idle", lambda m: m.cpu_us)  # CPU of a round trip / CPU of a keypress
    if cost:
        c = median(cost)
        rows.append(
            (
                "a line relayed (caller → agent or agent → caller) costs ≤ 1.5× a keypress",
                f"{c / 2:.2f}× (a round trip, two relayed lines, {c:.2f}×; rounds {min(cost):.2f}–{max(cost):.2f}×)",
                c / 2 <= 1.5,
            )
        )
    moved = per_round("idle", "plain", lambda m: m.run.rate)
    if moved:
        m = median(moved)
        rows.append(
            (
                "menu keypresses with the desk configured but idle: unchanged (within noise)",
                f"{m:.2f}× the rate without a desk (rounds {min(moved):.2f}–{max(moved):.2f}×)",
                m >= 0.95,
            )
        )
    if queue.run.failed:
        rows.append(("10,000 waiting, 500 agents", queue.run.failed, False))
    else:
        share = queue.waiting_kib / queue.idle_kib if queue.idle_kib else 0.0
        rows.append(
            (
                f"memory per waiting caller ≤ 1.5× an idle caller's ({args.waiting:,} each)",
                f"{queue.waiting_kib:.2f} vs {queue.idle_kib:.2f} KiB = {share:.2f}×",
                0 < share <= 1.5,
            )
        )
        rows.append(
            (
                f"offers with {args.agents} agents accepting at once",
                f"{queue.served:,} calls offered, accepted and ended at {queue.run.rate:,.0f}/s; "
                f"next offer p50 / p99 {queue.run.p50:.2f} / {queue.run.p99:.2f} ms",
                queue.served == args.waiting,
            )
        )
    small, big = core[1000], core[10000]
    for op in small:
        growth = big[op] / small[op]
        rows.append(
            (
                f"desk core {op}: no walk of the queue",
                f"{small[op]:.1f} µs at 1,000 waiting, {big[op]:.1f} µs at 10,000 ({growth:.2f}×)",
                growth < 2.0,
            )
        )
    targets_table(rows)


if __name__ == "__main__":
    main()
