"""`hotline report`: service level, abandonment, waits, talk and satisfaction from the desk calls on
record, by queue (and day or hour) or by agent; and the list of abandoned callers to call back.
docs/reports.md shows a report and says what each key counts; the keys are a contract (programs
outside the repo parse the JSON and the CSV).

How it stays fast over millions of desk calls (on SQLite and PostgreSQL alike): nothing is grouped
or sorted by the database over the whole range. The report's days (or hours) are cut into buckets
here, each bucket's bounds computed in the server's zone with zoneinfo (so any HOTLINE_TIMEZONE is
right, with or without daylight saving: a 23-hour day is one bucket, an hour said twice two), and
for each bucket and queue one query sums over an index range (`desk_calls_by_queue`, migration 5,
holds every column it reads). The 90th percentile wait is the nearest-rank one, read with a second
query of the same range that keeps only the top tenth (ORDER BY waited DESC LIMIT 1 OFFSET n).
Agents and queues are found by skipping along their indexes (MIN(x) WHERE x > last), not by a scan.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TextIO, TypeVar

from app import zone
from app.records.columns import table
from app.records.dialects import AnyDb
from app.text import strip_unsafe

QUEUE_KEYS = (
    "offered",
    "answered",
    "abandoned",
    "short_abandoned",
    "timeout",
    "busy",
    "closed",
    "callbacks",
    "service_level",
    "avg_wait",
    "p90_wait",
    "avg_talk",
    "csat_avg",
    "csat_count",
)
AGENT_KEYS = (
    "agent",
    "name",
    "answered",
    "callbacks",
    "talked",
    "avg_talk",
    "missed",
    "csat_avg",
    "csat_count",
)
ABANDONED_KEYS = ("call_id", "queue", "joined", "waited", "phone")
READERS = 2  # connections a report reads with at once
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Levels:
    """A queue's thresholds from desk.yaml (defaults as app/desk/schema.py's QueueModel)."""

    service_seconds: float = 20.0  # answered within this counts towards the service level
    short_abandon: float = 5.0  # abandoned sooner: counted apart, out of the service level


@dataclass(frozen=True)
class Bucket:
    label: str  # the day (2026-12-03) or the hour's start (2026-12-03T09:00:00+08:00)
    start: float
    end: float


def day_start(day: dt.date) -> float:
    """When `day` begins in the server's zone (a timestamp)."""
    return dt.datetime.combine(day, dt.time(), zone.server_zone()).timestamp()


def buckets(first: dt.date, last: dt.date, by: str | None) -> list[Bucket]:
    """The report's spans, from the start of `first` to the end of `last` (server's zone): one, or
    one per day, or one per hour the clock showed (a daylight-saving change makes an hour vanish or
    repeat; each repeated hour is its own bucket, told apart by the offset in its label)."""
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    end = day_start(last + dt.timedelta(days=1))
    if by == "day":
        starts = [(day.isoformat(), day_start(day)) for day in days]
    elif by == "hour":
        tz = zone.server_zone()
        stamps = {
            dt.datetime.combine(day, dt.time(hour, fold=fold), tz).timestamp()
            for day in days
            for hour in range(24)
            for fold in (0, 1)
        }
        starts = [(zone.iso(t), t) for t in sorted(stamps) if t < end]
    else:
        starts = [("", day_start(first))]
    ends = [t for _, t in starts[1:]] + [end]
    return [Bucket(label, start, stop) for (label, start), stop in zip(starts, ends, strict=True)]


def _distinct(db: AnyDb, table: str, column: str) -> Iterator[str]:
    """Every value of an indexed column, skipping along the index (a few steps per value)."""
    last = ""
    while True:
        # only our own table and column names are joined in; the value goes as a parameter
        row = db.execute(f"SELECT MIN({column}) FROM {table} WHERE {column} > ?", (last,)).fetchone()  # noqa: S608
        if row is None or row[0] is None:
            return
        last = row[0]
        yield last


def _ratio(part: float, whole: float, digits: int) -> float | None:
    return round(part / whole, digits) if whole else None


# avg_wait and p90_wait are of the callers who waited in the queue, live: answered, abandoned, timeout
_QUEUE_SQL = """
    SELECT COUNT(*),
        COUNT(CASE WHEN outcome = 'answered' THEN 1 END),
        COUNT(CASE WHEN outcome = 'abandoned' THEN 1 END),
        COUNT(CASE WHEN outcome = 'abandoned' AND waited < ? THEN 1 END),
        COUNT(CASE WHEN outcome = 'timeout' THEN 1 END),
        COUNT(CASE WHEN outcome = 'busy' THEN 1 END),
        COUNT(CASE WHEN outcome = 'closed' THEN 1 END),
        COUNT(CASE WHEN outcome = 'callback' THEN 1 END),
        COUNT(CASE WHEN outcome = 'answered' AND waited <= ? THEN 1 END),
        SUM(CASE WHEN outcome IN ('answered', 'abandoned', 'timeout') THEN waited END),
        COUNT(CASE WHEN outcome IN ('answered', 'abandoned', 'timeout') THEN 1 END),
        SUM(talked), COUNT(talked), SUM(csat), COUNT(csat)
    FROM desk_calls WHERE queue = ? AND joined >= ? AND joined < ?
"""
_P90_SQL = (
    "SELECT waited FROM desk_calls WHERE queue = ? AND joined >= ? AND joined < ?"
    " AND outcome IN ('answered', 'abandoned', 'timeout') ORDER BY waited DESC LIMIT 1 OFFSET ?"
)
_AGENT_SQL = (
    "SELECT COUNT(CASE WHEN outcome = 'answered' THEN 1 END),"
    " COUNT(CASE WHEN outcome = 'callback' THEN 1 END), SUM(talked), COUNT(talked), SUM(csat), COUNT(csat)"
    " FROM desk_calls"
    " WHERE agent = ? AND joined >= ? AND joined < ? AND (CAST(? AS TEXT) IS NULL OR queue = ?)"
)
_MISSED_SQL = (
    "SELECT COUNT(*) FROM desk_misses WHERE agent = ? AND time >= ? AND time < ?"
    " AND (CAST(? AS TEXT) IS NULL OR queue = ?)"
)
_ABANDONED_SQL = (
    "SELECT call_id, queue, joined, waited, phone FROM desk_calls WHERE joined >= ? AND joined < ?"
    " AND outcome IN ('abandoned', 'timeout') AND (CAST(? AS TEXT) IS NULL OR queue = ?) ORDER BY joined DESC"
)


class Readers:
    """Connections to one database, one per thread, for queries that do not depend on each other
    (each bucket and queue, each agent): READERS threads read at once, on SQLite (WAL readers; its
    library lets go of the interpreter while it works) and on PostgreSQL (a backend each). Without
    `open_db`, everything runs in this thread on `db`."""

    def __init__(self, db: AnyDb, open_db: Callable[[], AnyDb] | None = None) -> None:
        self.first, self.open_db = db, open_db
        self.local = threading.local()
        self.opened: list[AnyDb] = []
        self.lock = threading.Lock()

    def db(self) -> AnyDb:
        if self.open_db is None:
            return self.first
        db: AnyDb | None = getattr(self.local, "db", None)
        if db is None:
            db = self.local.db = self.open_db()
            with self.lock:
                self.opened.append(db)
        return db

    def map(self, fn: Callable[[AnyDb, T], R], items: Sequence[T]) -> list[R]:
        """fn(db, item) for each item, in order, with up to READERS connections at once."""
        if self.open_db is None or len(items) < 2:
            return [fn(self.first, item) for item in items]
        try:
            with ThreadPoolExecutor(READERS) as pool:
                return list(pool.map(lambda item: fn(self.db(), item), items))
        finally:
            for db in self.opened:
                db.close()
            self.opened.clear()


def queue_rows(
    db: AnyDb,
    first: dt.date,
    last: dt.date,
    by: str | None = None,
    queue: str | None = None,
    levels: Mapping[str, Levels] | None = None,
    open_db: Callable[[], AnyDb] | None = None,
) -> list[dict[str, Any]]:
    """The report by queue (`by` None), or by queue and "day" or "hour": one row per bucket and queue
    that had a desk call, in time order, then by queue name. `open_db`: another connection to the
    same database (the queries run on READERS at once)."""
    queues = [queue] if queue is not None else list(_distinct(db, "desk_calls", "queue"))
    tasks = [
        (b, name, (levels or {}).get(name, Levels())) for b in buckets(first, last, by) for name in queues
    ]
    rows = Readers(db, open_db).map(_queue_row, tasks)
    return [
        {"queue": name} | ({by: b.label} if by else {}) | row
        for (b, name, _), row in zip(tasks, rows, strict=True)
        if row
    ]


def _queue_row(db: AnyDb, task: tuple[Bucket, str, Levels]) -> dict[str, Any] | None:
    """One bucket of one queue (None when no desk call joined it then)."""
    b, name, lv = task
    row = db.execute(_QUEUE_SQL, (lv.short_abandon, lv.service_seconds, name, b.start, b.end)).fetchone()
    offered, answered, abandoned, short, timeout, busy, closed, callbacks, within = row[:9]
    wait_sum, waits, talk_sum, talks, csat_sum, csats = row[9:]
    if not offered:
        return None
    p90 = None
    if waits:
        rank = math.ceil(0.9 * waits)  # nearest rank: the rank-th shortest wait
        p90 = db.execute(_P90_SQL, (name, b.start, b.end, waits - rank)).fetchone()[0]
    counted = answered + abandoned - short + timeout
    return {
        "offered": offered,
        "answered": answered,
        "abandoned": abandoned,
        "short_abandoned": short,
        "timeout": timeout,
        "busy": busy,
        "closed": closed,
        "callbacks": callbacks,
        "service_level": _ratio(within, counted, 3),
        "avg_wait": _ratio(wait_sum or 0.0, waits, 1),
        "p90_wait": None if p90 is None else round(float(p90), 1),
        "avg_talk": _ratio(talk_sum or 0.0, talks, 1),
        "csat_avg": _ratio(csat_sum or 0, csats, 2),
        "csat_count": csats,
    }


def agent_rows(
    db: AnyDb,
    first: dt.date,
    last: dt.date,
    queue: str | None = None,
    names: Mapping[str, str] | None = None,
    open_db: Callable[[], AnyDb] | None = None,
) -> list[dict[str, Any]]:
    """The report by agent: the desk calls that joined in the range which each agent served (answered
    or a callback), and the offers each let ring out in it; agents by id."""
    start, end = day_start(first), day_start(last + dt.timedelta(days=1))
    agents = sorted(set(_distinct(db, "desk_calls", "agent")) | set(_distinct(db, "desk_misses", "agent")))
    tasks = [(agent, start, end, queue, queue) for agent in agents]
    rows = Readers(db, open_db).map(_agent_row, tasks)
    return [
        {"agent": a, "name": (names or {}).get(a)} | row for a, row in zip(agents, rows, strict=True) if row
    ]


def _agent_row(db: AnyDb, args: tuple[str, float, float, str | None, str | None]) -> dict[str, Any] | None:
    answered, callbacks, talk_sum, talks, csat_sum, csats = db.execute(_AGENT_SQL, args).fetchone()
    (missed,) = db.execute(_MISSED_SQL, args).fetchone()
    if not (answered or callbacks or talks or missed):
        return None
    return {
        "answered": answered,
        "callbacks": callbacks,
        "talked": round(float(talk_sum or 0.0), 1),
        "avg_talk": _ratio(talk_sum or 0.0, talks, 1),
        "missed": missed,
        "csat_avg": _ratio(csat_sum or 0, csats, 2),
        "csat_count": csats,
    }


def abandoned(db: AnyDb, first: dt.date, last: dt.date, queue: str | None = None) -> list[dict[str, Any]]:
    """Abandoned and timed-out desk calls that joined in the range, newest first, with the caller's
    phone variable in full (the list a team calls back from)."""
    start, end = day_start(first), day_start(last + dt.timedelta(days=1))
    rows = db.execute(_ABANDONED_SQL, (start, end, queue, queue))
    return [
        {
            "call_id": call_id,
            "queue": name,
            "joined": zone.iso(joined),
            "waited": None if waited is None else round(float(waited), 1),
            "phone": None if phone is None else strip_unsafe(phone),
        }
        for call_id, name, joined, waited, phone in rows
    ]


# ---- output ---------------------------------------------------------------------------------------


def write_json(rows: Sequence[Mapping[str, Any]], out: TextIO) -> None:
    out.write(json.dumps(list(rows), ensure_ascii=False, indent=2) + "\n")


def write_csv(rows: Sequence[Mapping[str, Any]], keys: Sequence[str], out: TextIO) -> None:
    """A header row of the keys, then a row each (an absent value: an empty field)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(keys)
    for row in rows:
        writer.writerow(["" if row[k] is None else row[k] for k in keys])


def cell(key: str, value: Any) -> str:
    """A value as the readable table shows it: a level in percent, seconds with an s, '-' for none."""
    if value is None:
        return "-"
    if key == "service_level":
        return f"{value:.0%}"
    if key in ("avg_wait", "p90_wait", "avg_talk", "talked", "waited"):
        text = f"{value:.1f}"
        return (text[:-2] if text.endswith(".0") else text) + "s"
    return str(value)


TITLES = {"short_abandoned": "short", "service_level": "level", "csat_count": "scores"}


def write_table(rows: Sequence[Mapping[str, Any]], keys: Sequence[str], out: TextIO) -> None:
    headers = [TITLES.get(k, k).upper() for k in keys]
    table(headers, [[cell(k, row[k]) for k in keys] for row in rows], out)


def run(
    db: AnyDb,
    args: Any,
    levels: Mapping[str, Levels],
    names: Mapping[str, str],
    out: TextIO,
    open_db: Callable[[], AnyDb] | None = None,
) -> int:
    """`hotline report [abandoned]` on an open database; args: first, last (dates), what, by, queue,
    json, csv."""
    first, last = args.first, args.last
    keys: Sequence[str]
    if args.what == "abandoned":
        rows, keys = abandoned(db, first, last, args.queue), ABANDONED_KEYS
    elif args.by == "agent":
        rows, keys = agent_rows(db, first, last, args.queue, names, open_db), AGENT_KEYS
    else:
        rows = queue_rows(db, first, last, args.by, args.queue, levels, open_db)
        keys = ("queue", *((args.by,) if args.by else ()), *QUEUE_KEYS)
    if args.json:
        write_json(rows, out)
    elif args.csv:
        write_csv(rows, keys, out)
    else:
        span = first.isoformat() + ("" if last == first else f" to {last.isoformat()}")
        what = "abandoned and timed-out calls" if args.what == "abandoned" else f"by {args.by or 'queue'}"
        queue = f", queue {args.queue}" if args.queue else ""
        out.write(f"{span} ({zone.server_zone().key}), {what}{queue}\n")
        if rows:
            write_table(rows, keys, out)
        else:
            out.write("no desk calls\n")
    return 0
