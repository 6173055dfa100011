"""The SQLite database of tickets and call transcripts: opening, migrations, and every query.

One file, `hotline.db` in the data folder, in WAL mode: one writer (the server's recorder thread)
and any number of readers (`hotline tickets`, `hotline calls`) at once. The schema version is
SQLite's `user_version`; MIGRATIONS[i] takes a database from version i to i + 1, and all that are
due run at start in one transaction. A file that is not a hotline database, or of a newer version,
is refused with one line and left exactly as it is. Ticket commits are synchronous=FULL: a ticket
whose id a caller heard has reached the disk. (Transcript batches commit with synchronous=NORMAL:
in the WAL before the commit returns, so a killed process loses none; see recorder.py.)
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FILE = "hotline.db"
MIGRATIONS: tuple[str, ...] = (
    # 1: tickets, calls and their lines
    """
    CREATE TABLE tickets (
        id TEXT PRIMARY KEY,            -- what the caller heard: T20261130-0042
        day TEXT NOT NULL,              -- 20261130
        seq INTEGER NOT NULL,           -- 42: the day's running number
        created REAL NOT NULL,
        status TEXT NOT NULL DEFAULT 'open',
        session_id TEXT NOT NULL,
        caller TEXT NOT NULL,
        queue TEXT,
        message TEXT NOT NULL,
        vars TEXT NOT NULL,             -- JSON object
        closed REAL,
        note TEXT,
        UNIQUE (day, seq)
    );
    CREATE TABLE calls (
        session_id TEXT PRIMARY KEY,
        started REAL NOT NULL,
        ended REAL,
        caller TEXT NOT NULL,
        dropped INTEGER NOT NULL DEFAULT 0  -- lines not kept (the call's bound, a full disk)
    );
    CREATE TABLE chunks (               -- a call's transcript lines, in batches as they were written
        session_id TEXT NOT NULL,
        time REAL NOT NULL,             -- of the first line
        lines TEXT NOT NULL             -- JSON, flat: [ms, direction, node, agent, text, ms, ...]
    );
    CREATE INDEX chunks_by_call ON chunks (session_id);
    """,
    # 2: a call-back number on tickets; calls listed newest first without a scan; a prompt's text
    # kept once and referred to by number in the chunks
    """
    ALTER TABLE tickets ADD COLUMN callback TEXT;
    CREATE TABLE texts (                -- prompts said again and again, kept once
        id INTEGER PRIMARY KEY,
        node TEXT,                      -- the node whose screen it is (for a keypress entry)
        text TEXT NOT NULL
    );
    CREATE INDEX calls_by_start ON calls (started);
    CREATE INDEX tickets_by_created ON tickets (created);
    """,
)
VERSION = len(MIGRATIONS)
TABLES: tuple[frozenset[str], ...] = (  # the tables each migration makes
    frozenset({"tickets", "calls", "chunks"}),
    frozenset({"texts"}),
)
assert len(TABLES) == len(MIGRATIONS)


class DatabaseError(Exception):
    """The data folder or its database cannot be used; the message is one line naming the path."""


def prepare_folder(folder: Path) -> Path:
    """Create the data folder if needed and check it can be written; the database's path."""
    if folder.exists() and not folder.is_dir():
        raise DatabaseError(f"{folder}: the data folder is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseError(f"{folder}: cannot create the data folder ({exc.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DatabaseError(f"{folder}: the data folder is not writable")
    return folder / FILE


def connect(path: Path, *, create: bool, readonly: bool = False) -> sqlite3.Connection:
    """Open `path` (creating it only when `create`), check it is a hotline database this version
    can use, and set it up. `readonly` connections (the CLI's listings) never migrate or write."""
    if not path.exists() and not create:
        raise DatabaseError(f"{path}: no database here (the server creates it on its first start)")
    mode = "ro" if readonly else ("rwc" if create else "rw")
    try:
        db = sqlite3.connect(
            f"file:{path}?mode={mode}", uri=True, isolation_level=None, check_same_thread=False, timeout=10
        )
    except sqlite3.Error as exc:
        raise DatabaseError(f"{path}: cannot open the database ({exc})") from None
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version == 0 and db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise DatabaseError(f"{path}: not a hotline database (it has tables of its own); left as it is")
        if version > VERSION:
            raise DatabaseError(
                f"{path}: the database is of a newer hotline (schema {version}, this one knows {VERSION}); "
                "left as it is"
            )
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if missing := sorted(set().union(*TABLES[:version]) - tables):  # our schema number, not our tables
            raise DatabaseError(
                f"{path}: not a hotline database of schema {version} (no table {', '.join(missing)}); "
                "left as it is"
            )
        if not readonly:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA cache_size=-512")  # KiB: the writer appends, it needs little cache
            db.execute("PRAGMA synchronous=FULL")
            if version < VERSION:
                _migrate(db, version)
        elif version < VERSION:
            raise DatabaseError(
                f"{path}: the database is of an older schema; start the server once to migrate it"
            )
    except sqlite3.DatabaseError as exc:
        db.close()
        raise DatabaseError(f"{path}: not a usable database ({exc}); left as it is") from None
    except DatabaseError:
        db.close()
        raise
    return db


def _migrate(db: sqlite3.Connection, version: int) -> None:
    db.execute("BEGIN IMMEDIATE")
    try:
        for step in range(version, VERSION):
            for statement in MIGRATIONS[step].split(";"):
                if statement.strip():
                    db.execute(statement)
        db.execute(f"PRAGMA user_version={VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


# ---- writing (the recorder's thread) ------------------------------------------------------------


@dataclass(frozen=True)
class NewTicket:
    session_id: str
    caller: str
    queue: str | None
    message: str
    vars: dict[str, Any]
    callback: str | None
    created: float


def ticket_day(created: float) -> str:
    return time.strftime("%Y%m%d", time.localtime(created))


def insert_tickets(db: sqlite3.Connection, tickets: Sequence[NewTicket]) -> list[str]:
    """Number and insert `tickets` (inside the caller's transaction); their ids, in order. Ids are
    T<day>-<n>: n counts up from 1 each day, at least four digits."""
    ids = []
    last: dict[str, int] = {}
    for t in tickets:
        day = ticket_day(t.created)
        if day not in last:
            row = db.execute("SELECT max(seq) FROM tickets WHERE day = ?", (day,)).fetchone()
            last[day] = row[0] or 0
        seq = last[day] = last[day] + 1
        ticket_id = f"T{day}-{seq:04d}"
        db.execute(
            "INSERT INTO tickets (id, day, seq, created, session_id, caller, queue, message, vars, callback)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                ticket_id,
                day,
                seq,
                t.created,
                t.session_id,
                t.caller,
                t.queue,
                t.message,
                json.dumps(t.vars, ensure_ascii=False, default=str),
                t.callback,
            ),
        )
        ids.append(ticket_id)
    return ids


Line = tuple[str, float, str, str | None, str | None, str]  # session_id, time, direction, node, agent, text
Chunks = dict[str, list[Any]]  # session id -> [ms, direction, node, agent, text, ms, ...] (ms: epoch ms)


def insert_texts(db: sqlite3.Connection, texts: Sequence[tuple[int, str | None, str]]) -> None:
    db.executemany("INSERT OR REPLACE INTO texts (id, node, text) VALUES (?, ?, ?)", texts)


def shared_texts(db: sqlite3.Connection, limit: int) -> dict[str | None, dict[str, int]]:
    """The texts chunks refer to by number, by node, to go on using their numbers after a restart."""
    out: dict[str | None, dict[str, int]] = {}
    for tid, node, text in db.execute("SELECT id, node, text FROM texts ORDER BY id LIMIT ?", (limit,)):
        out.setdefault(node, {})[text] = tid
    return out


def insert_chunks(db: sqlite3.Connection, chunks: Chunks) -> None:
    """Each call's lines since the last batch as one row (a chunk): a batch of thousands of lines
    costs a row per call. A chunk is flat: ms, direction, node, agent, text, ms, ... (ms: the time
    in epoch milliseconds; text: the text, or the number of a row of `texts`). A keypress and the
    screen it brought are one entry: ms, "k", node, key, number of the screen's row in `texts`
    (which names the screen's node)."""
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    db.executemany(
        "INSERT INTO chunks (session_id, time, lines) VALUES (?, ?, ?)",
        ((sid, chunk[0] / 1000, dumps(chunk)) for sid, chunk in chunks.items() if chunk),  # one at a time
    )


def insert_lines(db: sqlite3.Connection, lines: Iterable[Line]) -> None:
    """Lines of any calls, in order (tests and tools; the server writes chunks it gathered)."""
    chunks: Chunks = {}
    for session_id, t, *rest in lines:
        chunks.setdefault(session_id, []).extend((int(t * 1000), *rest))
    insert_chunks(db, chunks)


def _split(db: sqlite3.Connection, chunk: str) -> list[list[Any]]:
    """[[time (seconds), direction, node, agent, text], ...] from a chunk, its shared texts filled in
    and each keypress entry made two lines (the key, then the screen)."""
    flat = json.loads(chunk)
    entries = [flat[i : i + 5] for i in range(0, len(flat), 5)]
    wanted = {e[4] for e in entries if type(e[4]) is int}
    texts: dict[int, tuple[str | None, str]] = {}
    if wanted:
        marks = ",".join("?" * len(wanted))
        query = f"SELECT id, node, text FROM texts WHERE id IN ({marks})"  # noqa: S608 - only ? marks
        texts = {tid: (node, text) for tid, node, text in db.execute(query, sorted(wanted))}
    lines: list[list[Any]] = []
    for ms, direction, node, third, fourth in entries:
        t = ms / 1000
        if direction == "k":  # node, key, screen
            screen_node, screen = texts.get(fourth, (None, "(text not kept)"))
            lines += [[t, "caller", node, None, third], [t, "system", screen_node, None, screen]]
        else:  # node, agent, text
            text = texts.get(fourth, (None, "(text not kept)"))[1] if type(fourth) is int else fourth
            lines.append([t, direction, node, third, text])
    return lines


def _lines_of(db: sqlite3.Connection, session_id: str) -> list[list[Any]]:
    out: list[list[Any]] = []
    for (chunk,) in db.execute("SELECT lines FROM chunks WHERE session_id = ? ORDER BY rowid", (session_id,)):
        out += _split(db, chunk)
    return out


def call_started(db: sqlite3.Connection, session_id: str, started: float, caller: str) -> None:
    db.execute(
        "INSERT OR IGNORE INTO calls (session_id, started, caller) VALUES (?, ?, ?)",
        (session_id, started, caller),
    )


def call_ended(db: sqlite3.Connection, session_id: str, ended: float, dropped: int) -> None:
    db.execute(
        "UPDATE calls SET ended = ?, dropped = dropped + ? WHERE session_id = ?", (ended, dropped, session_id)
    )


def purge_lines(db: sqlite3.Connection, before: float) -> int:
    """Delete the transcripts of calls that started before `before`; tickets stay. Chunks deleted."""
    deleted = db.execute(
        "DELETE FROM chunks WHERE session_id IN (SELECT session_id FROM calls WHERE started < ?)", (before,)
    ).rowcount
    db.execute("DELETE FROM calls WHERE started < ?", (before,))
    return int(deleted)


def backup(db: sqlite3.Connection, dest: Path) -> None:
    """A consistent copy of the database at `dest`, taken while the server writes (SQLite's online
    backup). `dest` must not exist yet."""
    if dest.exists():
        raise DatabaseError(f"{dest}: already exists; give a new file name")
    try:
        target = sqlite3.connect(dest)
    except sqlite3.Error as exc:
        raise DatabaseError(f"{dest}: cannot create the backup ({exc})") from None
    try:
        db.backup(target)
    finally:
        target.close()


# ---- reading (the CLI, /history) -----------------------------------------------------------------


def _iso(t: float | None) -> str | None:
    return None if t is None else dt.datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")


def _ticket(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "created": _iso(row["created"]),
        "status": row["status"],
        "session_id": row["session_id"],
        "caller": row["caller"],
        "queue": row["queue"],
        "message": row["message"],
        "vars": json.loads(row["vars"]),
        "callback": row["callback"],
        "closed": _iso(row["closed"]),
        "note": row["note"],
    }


def list_tickets(
    db: sqlite3.Connection,
    status: str | None = None,
    limit: int = 50,
    queues: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Newest first; with `queues`, only tickets of those queues and those of no queue."""
    where, args = [], []
    if status is not None:
        where.append("status = ?")
        args.append(status)
    if queues is not None:
        where.append(f"(queue IS NULL OR queue IN ({','.join('?' * len(queues))}))")
        args.extend(queues)
    # only fixed text and ? placeholders are joined: the values go as parameters
    sql = "SELECT * FROM tickets" + (" WHERE " + " AND ".join(where) if where else "")  # noqa: S608
    db.row_factory = sqlite3.Row
    try:
        rows = db.execute(sql + " ORDER BY created DESC, seq DESC LIMIT ?", (*args, limit)).fetchall()
    finally:
        db.row_factory = None
    return [_ticket(r) for r in rows]


def get_ticket(db: sqlite3.Connection, ticket_id: str) -> dict[str, Any] | None:
    db.row_factory = sqlite3.Row
    try:
        row = db.execute("SELECT * FROM tickets WHERE id = ?", (ticket_id,)).fetchone()
    finally:
        db.row_factory = None
    return _ticket(row) if row is not None else None


def close_ticket(db: sqlite3.Connection, ticket_id: str, note: str | None, now: float) -> bool:
    """Close a ticket (again: the note is replaced); False when there is no such ticket."""
    cur = db.execute(
        "UPDATE tickets SET status = 'closed', closed = ?, note = coalesce(?, note) WHERE id = ?",
        (now, note, ticket_id),
    )
    return cur.rowcount == 1


def _call(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "session_id": row["session_id"],
        "started": _iso(row["started"]),
        "ended": _iso(row["ended"]),
        "caller": row["caller"],
        "dropped": row["dropped"],
    }


def list_calls(db: sqlite3.Connection, limit: int = 50) -> list[dict[str, Any]]:
    db.row_factory = sqlite3.Row
    rows = db.execute("SELECT * FROM calls ORDER BY started DESC LIMIT ?", (limit,))
    return [_call(r) for r in rows]


def get_call(db: sqlite3.Connection, session_id: str) -> dict[str, Any] | None:
    db.row_factory = sqlite3.Row
    row = db.execute("SELECT * FROM calls WHERE session_id = ?", (session_id,)).fetchone()
    if row is None:
        return None
    call = _call(row)
    call["lines"] = [
        {"time": _iso(t), "direction": direction, "node": node, "text": text}
        | ({"agent": agent} if agent is not None else {})
        for t, direction, node, agent, text in _lines_of(db, session_id)
    ]
    return call


def last_lines(db: sqlite3.Connection, session_id: str, count: int) -> list[tuple[str, str | None, str]]:
    """The last `count` lines of a call, oldest first: (direction, agent, text)."""
    out: list[list[Any]] = []
    for (chunk,) in db.execute(
        "SELECT lines FROM chunks WHERE session_id = ? ORDER BY rowid DESC", (session_id,)
    ):
        out[:0] = _split(db, chunk)
        if len(out) >= count:
            break
    return [(line[1], line[3], line[4]) for line in out[-count:]]
