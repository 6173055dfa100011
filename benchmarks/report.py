"""Report benchmark: `hotline report` over 1,000,000 desk calls, on SQLite and on PostgreSQL.

    make bench-report      (or: .venv/bin/python -m benchmarks.report [--rows N] [--days D] [--rounds R])

The desk calls (3 queues, 20 agents, spread over D days: answered, abandoned with a short share,
timed out, busy, closed, callbacks; waits and talk times drawn from exponentials; scores on a third
of the answered; a miss for one call in twenty; a phone on half the abandoned) are written once
into a fresh SQLite data folder and a throwaway PostgreSQL (the tests', fsync on), through the
migrations the server runs (so with migration 5's indexes), then VACUUM ANALYZE on PostgreSQL (what
its autovacuum does after a bulk load). SQLite is not analyzed: the server never runs ANALYZE.

Each figure is the wall time of the real command, `hotline report ... --json > /dev/null` (Python's
start, the desk.yaml it reads, the queries, the output), the median of R rounds: every call in
the range (all N desk calls) by queue, by day and by agent, one day by hour, and the abandoned list
of one day. The target: under 2 s for N = 1,000,000.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import resource
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from app.records import database as dbm
from benchmarks.common import REPO, median, python, targets_table
from tests.servers import PostgresServer

TARGET = 2.0  # seconds
ZONE = ZoneInfo("Asia/Shanghai")
FIRST = dt.date(2026, 11, 1)
COLUMNS = ("call_id", "queue", "joined", "answered", "agent", "ended", "ended_by", "outcome", "waited",
           "talked", "offers", "missed", "disposition", "csat", "phone")  # fmt: skip
OUTCOMES = (("answered", 70), ("abandoned", 14), ("timeout", 4), ("busy", 4), ("closed", 5), ("callback", 3))


def desk_calls(n: int, days: int, seed: int = 25) -> Iterator[tuple[Any, ...]]:
    """n desk calls, in join order, over `days` days from FIRST (the server's zone)."""
    rnd = random.Random(seed)
    start = dt.datetime.combine(FIRST, dt.time(), ZONE).timestamp()
    step = days * 86400 / n
    names, weights = zip(*OUTCOMES, strict=True)
    for i in range(n):
        joined = start + i * step
        outcome = rnd.choices(names, weights)[0]
        queue = rnd.choices(("default", "vip", "business"), (6, 1, 3))[0]
        agent = answered = talked = csat = phone = None
        waited = 0.0
        if outcome in ("answered", "callback"):
            waited = round(rnd.expovariate(1 / 25), 3)
            answered, agent = joined + waited, f"{1001 + rnd.randrange(20)}"
            talked = round(rnd.expovariate(1 / 180), 3)
            csat = rnd.choice((5, 5, 4, 3, 1)) if rnd.random() < 0.33 else None
        elif outcome == "abandoned":
            waited = round(rnd.expovariate(1 / 40), 3)
            phone = f"1{rnd.randrange(3, 10)}{rnd.randrange(10**9):09d}" if rnd.random() < 0.5 else None
        elif outcome == "timeout":
            waited = 600.0
        ended = joined + waited + (talked or 0.0)
        by = "agent" if agent else ("caller" if outcome == "abandoned" else "server")
        yield (f"{i:08x}", queue, joined, answered, agent, ended, by, outcome, waited, talked, 1, 0,
               "已解决" if agent else None, csat, phone)  # fmt: skip


def misses(n: int, days: int, seed: int = 26) -> Iterator[tuple[Any, ...]]:
    rnd = random.Random(seed)
    start = dt.datetime.combine(FIRST, dt.time(), ZONE).timestamp()
    for i in range(n // 20):
        yield (f"{i * 20:08x}", "default", f"{1001 + rnd.randrange(20)}", start + rnd.random() * days * 86400)


def fill_sqlite(folder: Path, n: int, days: int) -> None:
    db = dbm.connect(dbm.prepare_folder(folder), create=True)
    try:
        db.begin()
        marks = ",".join("?" * len(COLUMNS))
        db.executemany(f"INSERT INTO desk_calls ({','.join(COLUMNS)}) VALUES ({marks})", desk_calls(n, days))
        db.executemany(
            "INSERT INTO desk_misses (call_id, queue, agent, time) VALUES (?, ?, ?, ?)", misses(n, days)
        )
        db.commit()
    finally:
        db.close()


def fill_postgres(url: str, n: int, days: int) -> None:
    db = dbm.connect(url, create=True)
    try:
        conn: Any = db.conn
        conn.execute("SET statement_timeout = 0")  # the server's 15 s per statement is not for a bulk load
        with conn.cursor() as cur:
            with cur.copy(f"COPY desk_calls ({','.join(COLUMNS)}) FROM STDIN") as copy:
                for row in desk_calls(n, days):
                    copy.write_row(row)
            with cur.copy("COPY desk_misses (call_id, queue, agent, time) FROM STDIN") as copy:
                for row in misses(n, days):
                    copy.write_row(row)
        conn.execute("VACUUM ANALYZE desk_calls")
        conn.execute("VACUUM ANALYZE desk_misses")
    finally:
        db.close()


def timed(args: list[str], rounds: int) -> tuple[float, float]:
    """The median wall time of `hotline report ARGS --json`, its output thrown away, and the median
    CPU time of the command's process (user + system: what a busy machine does not inflate; on
    PostgreSQL the database server's work is not in it)."""
    times, cpu = [], []
    env = {**os.environ, "HOTLINE_TIMEZONE": "Asia/Shanghai"}
    for _ in range(rounds):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        done = subprocess.run(
            [python(), "-m", "app", "report", *args, "--json", "--config", str(REPO / "config")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=env,
            check=False,
        )
        times.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        assert done.returncode == 0, done.stderr
    return median(times), median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    last = FIRST + dt.timedelta(days=args.days - 1)
    busy = (FIRST + dt.timedelta(days=args.days // 2)).isoformat()
    span = ["--from", FIRST.isoformat(), "--to", last.isoformat()]
    cases = [
        (f"all {args.rows:,} by queue", span),
        ("all, by day", [*span, "--by", "day"]),
        ("all, by agent", [*span, "--by", "agent"]),
        ("one day by hour", ["--from", busy, "--by", "hour"]),
        ("one day's abandoned list", ["abandoned", "--from", busy]),
    ]
    rows: list[tuple[str, str, bool]] = []
    with tempfile.TemporaryDirectory(prefix="hotline-bench-report-") as tmp:
        postgres = PostgresServer(fsync=True)
        try:
            url = postgres.database()
            t0 = time.perf_counter()
            fill_sqlite(Path(tmp) / "data", args.rows, args.days)
            print(f"SQLite: {args.rows:,} desk calls written in {time.perf_counter() - t0:.1f} s")
            t0 = time.perf_counter()
            fill_postgres(url, args.rows, args.days)
            print(
                f"PostgreSQL: {args.rows:,} desk calls copied and analyzed in {time.perf_counter() - t0:.1f} s"
            )
            for name, where in (
                ("SQLite", ["--data", str(Path(tmp) / "data")]),
                ("PostgreSQL", ["--database-url", url]),
            ):
                for label, case in cases:
                    seconds, cpu = timed([*case, *where], args.rounds)
                    print(f"{name:10} {label:28} {seconds:6.2f} s  (the command's CPU {cpu:.2f} s)")
                    rows.append(
                        (f"{name}: {label}", f"{seconds:.2f} s (under {TARGET:g} s)", seconds < TARGET)
                    )
        finally:
            postgres.close()
    targets_table(rows)


if __name__ == "__main__":
    main()
