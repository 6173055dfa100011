"""Records benchmark: what transcripts cost the menu, and how many tickets a second callers get.

    make bench-records      (or: .venv/bin/python -m benchmarks.records [--seconds S] [--rounds R])

Same machine set-up as the TCP benchmark (server on CPU 0, loadgen.c on CPU 1). The menu is the
two-screen bench menu plus a hidden option 7 to a ticket node.

1. Transcripts on (the default) and off, alternating rounds, 100 sessions walking the two screens:
   steps per second and server CPU per step. Every step writes two transcript lines (the key and
   the screen) when they are on.
2. Tickets: 100 callers at once, each pressing 7, typing a message (a Chinese sentence) and waiting
   for its ticket number, again and again: tickets per second, latency, and tickets per commit
   (group commit: every caller hears its number only after the commit that holds it).
"""

from __future__ import annotations

import argparse
import re
import resource
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import REPO, Proc, free_port, median, python, targets_table
from benchmarks.tcp import HOTLINE_ENV, Run, loadgen

TICKET = """
  ticket:
    type: ticket
    prompt: 请留言。
    saved: 工单号是 {ticket.id}。
    next: main
"""
MESSAGE = "话费扣错了,请下午三点以后回电,谢谢。"


def write_config(folder: Path) -> Path:
    menu = (REPO / "benchmarks" / "config" / "menu.yaml").read_text(encoding="utf-8")
    menu = menu.replace(
        'options: {"1": sub}', 'options: {"1": sub, "7": ticket}\n    check_prompt_keys: false'
    )
    (folder / "menu.yaml").write_text(menu + TICKET, encoding="utf-8")
    return folder


@dataclass
class Server:
    proc: Proc
    port: int
    admin_port: int


def serve(config: Path, data: Path, transcripts: bool) -> Server:
    port, admin = free_port(), free_port()
    env = {
        **HOTLINE_ENV,
        "HOTLINE_CONFIG": str(config),
        "HOTLINE_DATA": str(data),
        "HOTLINE_TRANSCRIPTS": "true" if transcripts else "false",
        "HOTLINE_ADMIN_PORT": str(admin),
    }
    proc = Proc([python(), "-m", "app", "serve", "--tcp-port", str(port)], env=env, tcp_port=port)
    return Server(proc, port, admin)


def metric(server: Server, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.admin_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    m = re.search(rf"^{name} ([\d.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def measured(server: Server, steps: list[str], sessions: int, seconds: float) -> tuple[Run, float]:
    """A loadgen run and the server CPU per step in microseconds."""
    before = server.proc.cpu_seconds()
    run = loadgen(server.port, sessions, seconds, 60, steps)
    used = server.proc.cpu_seconds() - before
    return run, (used / (run.rate * seconds) * 1e6 if run.rate and not run.failed else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=100)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    menu_steps = ["1\\r\\n=>子菜单:返回请按 0\\r\\n", "0\\r\\n=>主菜单:查询请按 1\\r\\n"]
    ticket_steps = ["7\\r\\n=>请留言。\\r\\n", f"{MESSAGE}\\r\\n=>主菜单:查询请按 1\\r\\n"]
    with tempfile.TemporaryDirectory(prefix="hotline-bench-records-") as tmp:
        folder = Path(tmp)
        config = write_config(folder)
        on = serve(config, folder / "on", transcripts=True)
        off = serve(config, folder / "off", transcripts=False)
        results: dict[str, list[tuple[Run, float]]] = {"on": [], "off": [], "tickets": []}
        try:
            for _ in range(args.rounds):
                results["on"].append(measured(on, menu_steps, args.sessions, args.seconds))
                results["off"].append(measured(off, menu_steps, args.sessions, args.seconds))
            dropped = metric(on, "hotline_transcript_dropped_total")
            written = metric(on, "hotline_transcript_lines_total")
            commits0, tickets0 = (
                metric(off, "hotline_records_commits_total"),
                metric(off, "hotline_tickets_total"),
            )
            for _ in range(args.rounds):
                results["tickets"].append(measured(off, ticket_steps, args.sessions, args.seconds))
            commits = metric(off, "hotline_records_commits_total") - commits0
            tickets = metric(off, "hotline_tickets_total") - tickets0
        finally:
            on.proc.stop()
            off.proc.stop()
    report(args, results, dropped, written, tickets, commits)


def report(
    args: argparse.Namespace,
    results: dict[str, list[tuple[Run, float]]],
    dropped: float,
    written: float,
    tickets: float,
    commits: float,
) -> None:
    def med(key: str) -> tuple[float, float, float, float]:
        ok = [(r, c) for r, c in results[key] if not r.failed]
        if not ok:
            return 0.0, 0.0, 0.0, 0.0
        return (
            median([r.rate for r, _ in ok]),
            median([r.p50 for r, _ in ok]),
            median([r.p99 for r, _ in ok]),
            median([c for _, c in ok]),
        )

    print(
        f"\n### Records (medians of {args.rounds} alternating rounds of {args.seconds:g} s, "
        f"{args.sessions} sessions; server CPU per step from /proc)\n"
    )
    print("| workload | per second | p50 / p99 | server CPU per step |\n|---|---|---|---|")
    labels = {
        "off": "menu keypress, transcripts off",
        "on": "menu keypress, transcripts on (default)",
        "tickets": "leave a message and hear the ticket number (2 steps)",
    }
    for key, label in labels.items():
        rate, p50, p99, cpu = med(key)
        if key == "tickets":
            rate /= 2  # two steps a ticket: 7, then the message
        print(f"| {label} | {rate:,.0f} | {p50:.2f} / {p99:.2f} ms | {cpu:.1f} µs |")
    pairs = [
        a.rate / b.rate
        for (a, _), (b, _) in zip(results["on"], results["off"], strict=True)
        if not a.failed and not b.failed and b.rate
    ]
    rows: list[tuple[str, str, bool]] = []
    if pairs:
        m = median(pairs)
        rows.append(
            (
                "menu at 100 sessions with transcripts on ≥ 0.8× off",
                f"{m:.2f}× (rounds {min(pairs):.2f}–{max(pairs):.2f}×); {written:,.0f} lines written, "
                f"{dropped:,.0f} dropped",
                m >= 0.8,
            )
        )
    rate = med("tickets")[0] / 2
    if rate and commits:
        rows.append(
            (
                f"tickets per second from {args.sessions} callers at once (group commit)",
                f"{rate:,.0f}/s; {tickets / commits:.1f} tickets per commit (synchronous=FULL)",
                tickets / commits > 1.0,
            )
        )
    targets_table(rows)


if __name__ == "__main__":
    main()
