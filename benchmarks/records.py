"""Records benchmark: what transcripts cost the menu, and how many tickets a second callers get,
with the records in SQLite (the default) and in PostgreSQL (`HOTLINE_DATABASE_URL`).

    make bench-records      (or: .venv/bin/python -m benchmarks.records [--seconds S] [--rounds R])

Same machine set-up as the TCP benchmark (server on CPU 0, loadgen.c on CPU 1). The menu is the
two-screen bench menu plus a hidden option 7 to a ticket node.

1. Transcripts on (the default) and off, alternating rounds, 100 sessions walking the two screens:
   steps per second and server CPU per step. Every step writes two transcript lines (the key and
   the screen) when they are on.
2. Tickets: 100 callers at once, each pressing 7, typing a message (a Chinese sentence) and waiting
   for its ticket number, again and again: tickets per second, latency, and tickets per commit
   (group commit: every caller hears its number only after the commit that holds it).
3. Both again with a third server keeping its records in a throwaway PostgreSQL (Debian's, fsync on,
   pinned to the servers' CPU, so its work shows as the server's throughput).
"""

from __future__ import annotations

import argparse
import re
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import (
    REPO,
    SERVER_CPU,
    Proc,
    free_port,
    median,
    pinned,
    python,
    raise_file_limit,
    targets_table,
)
from benchmarks.tcp import HOTLINE_ENV, Run, loadgen
from tests.servers import PostgresServer  # the tests' throwaway PostgreSQL, with fsync on here

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


def serve(config: Path, data: Path, transcripts: bool, database_url: str = "") -> Server:
    port, admin = free_port(), free_port()
    env = {
        **HOTLINE_ENV,
        "HOTLINE_CONFIG": str(config),
        "HOTLINE_DATA": str(data),
        "HOTLINE_TRANSCRIPTS": "true" if transcripts else "false",
        "HOTLINE_ADMIN_PORT": str(admin),
    } | ({"HOTLINE_DATABASE_URL": database_url} if database_url else {})
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
    raise_file_limit()
    menu_steps = ["1\\r\\n=>子菜单:返回请按 0\\r\\n", "0\\r\\n=>主菜单:查询请按 1\\r\\n"]
    ticket_steps = ["7\\r\\n=>请留言。\\r\\n", f"{MESSAGE}\\r\\n=>主菜单:查询请按 1\\r\\n"]
    with tempfile.TemporaryDirectory(prefix="hotline-bench-records-") as tmp:
        folder = Path(tmp)
        config = write_config(folder)
        postgres = PostgresServer(fsync=True, prefix=tuple(pinned(SERVER_CPU, [])))
        on = serve(config, folder / "on", transcripts=True)
        off = serve(config, folder / "off", transcripts=False)
        pg = serve(config, folder / "pg", transcripts=True, database_url=postgres.database())
        pg_off = serve(config, folder / "pg-off", transcripts=False, database_url=postgres.database())
        results: dict[str, list[tuple[Run, float]]] = {
            k: [] for k in ("on", "off", "pg", "tickets", "pg tickets")
        }
        try:
            for _ in range(args.rounds):
                results["on"].append(measured(on, menu_steps, args.sessions, args.seconds))
                results["off"].append(measured(off, menu_steps, args.sessions, args.seconds))
                results["pg"].append(measured(pg, menu_steps, args.sessions, args.seconds))
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
            pg_commits0 = metric(pg_off, "hotline_records_commits_total")
            for _ in range(args.rounds):
                results["pg tickets"].append(measured(pg_off, ticket_steps, args.sessions, args.seconds))
            pg_per_commit = metric(pg_off, "hotline_tickets_total") / (
                metric(pg_off, "hotline_records_commits_total") - pg_commits0 or 1
            )
            dropped += metric(pg, "hotline_transcript_dropped_total")
            written += metric(pg, "hotline_transcript_lines_total")
        finally:
            on.proc.stop()
            off.proc.stop()
            pg.proc.stop()
            pg_off.proc.stop()
            postgres.close()
    report(args, results, dropped, written, tickets, commits, pg_per_commit)


def report(
    args: argparse.Namespace,
    results: dict[str, list[tuple[Run, float]]],
    dropped: float,
    written: float,
    tickets: float,
    commits: float,
    pg_per_commit: float,
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
        "pg": "menu keypress, transcripts on, in PostgreSQL",
        "tickets": "leave a message and hear the ticket number (2 steps)",
        "pg tickets": "the same, tickets in PostgreSQL (transcripts off for both)",
    }
    for key, label in labels.items():
        rate, p50, p99, cpu = med(key)
        if key.endswith("tickets"):
            rate /= 2  # two steps a ticket: 7, then the message
        print(f"| {label} | {rate:,.0f} | {p50:.2f} / {p99:.2f} ms | {cpu:.1f} µs |")
    rows: list[tuple[str, str, bool]] = []
    for key, where in (("on", "SQLite"), ("pg", "PostgreSQL")):
        pairs = [
            a.rate / b.rate
            for (a, _), (b, _) in zip(results[key], results["off"], strict=True)
            if not a.failed and not b.failed and b.rate
        ]
        if pairs:
            m = median(pairs)
            rows.append(
                (
                    f"menu at 100 sessions with transcripts on in {where} ≥ 0.8× off",
                    f"{m:.2f}× (rounds {min(pairs):.2f}–{max(pairs):.2f}×)"
                    + (
                        f"; {written:,.0f} lines written, {dropped:,.0f} dropped (both)"
                        if key == "pg"
                        else ""
                    ),
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
    pg_rate = med("pg tickets")[0] / 2
    if pg_rate:
        rows.append(
            (
                "tickets per second in PostgreSQL, same callers (group commit)",
                f"{pg_rate:,.0f}/s ({pg_rate / rate:.2f}× SQLite); {pg_per_commit:.1f} tickets per commit "
                "(synchronous_commit=on)",
                pg_per_commit > 1.0,
            )
        )
    targets_table(rows)


if __name__ == "__main__":
    main()
