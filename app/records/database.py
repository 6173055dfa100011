"""The database of tickets and call transcripts: opening, migrations, and every query, for SQLite
(the default: one file in the data folder) and PostgreSQL (`HOTLINE_DATABASE_URL`: replicas share it).

The queries are written once, with `?` marks, and run on either through `Db` (dialects.py), a thin
connection (psycopg 3, synchronous: the recorder's writer thread and the CLI are synchronous code)
that holds the database's `Dialect`: every difference between the two lives there, listed in that
module's docstring. This module chooses the dialect once, from the target (`connect`).

SQLite: `hotline.db` in the data folder, in WAL mode: one writer (the server's recorder thread) and
any number of readers (`hotline tickets`, `hotline calls`) at once. PostgreSQL: the tables in the
URL's database; replicas take advisory locks to migrate, to number tickets and to reserve numbers for
shared prompt texts, so ticket numbers are unique and count up across replicas.

MIGRATIONS[i] takes a database from version i to i + 1, and all that are due run at start in one
transaction. A database that is not hotline's, or of a newer version, is refused with one line and
left exactly as it is. Ticket commits are durable (SQLite synchronous=FULL, PostgreSQL
synchronous_commit=on): a ticket whose id a caller heard has reached the disk. Transcript batches
commit with SQLite synchronous=NORMAL / PostgreSQL synchronous_commit=off: a killed hotline loses
none; only a crash of the machine (of the database server) can take the last batches.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import structlog

from app import zone
from app.records.dialects import (
    FILE_MODE,
    POSTGRESQL,
    SQLITE,
    AnyDb,
    C,
    DatabaseError,
    DatabaseErrors,
    Db,
    is_postgres,
    one_line,
)
from app.text import strip_unsafe, strip_unsafe_lines

log = structlog.get_logger("hotline.records")

FILE = "hotline.db"
# The data folder and every file hotline keeps in it are private to the server's user (README.md,
# "The doors"): the database with its SQLite companions, and the console's secret (app/web/auth.py).
FOLDER_MODE = 0o700  # and FILE_MODE (0600) for the files: dialects.py creates SQLite's
PRIVATE_FILES = (FILE, f"{FILE}-wal", f"{FILE}-shm", f"{FILE}-journal", "web-secret")
MIGRATIONS: tuple[str, ...] = (
    # 1: tickets, calls and their lines
    """
    CREATE TABLE tickets (
        id TEXT PRIMARY KEY,            -- what the caller heard: T20261130-0042
        day TEXT NOT NULL,              -- 20261130
        seq INTEGER NOT NULL,           -- 42: the day's running number
        created {real} NOT NULL,
        status TEXT NOT NULL DEFAULT 'open',
        session_id TEXT NOT NULL,
        caller TEXT NOT NULL,
        queue TEXT,
        message TEXT NOT NULL,
        vars TEXT NOT NULL,             -- JSON object
        closed {real},
        note TEXT,
        UNIQUE (day, seq)
    );
    CREATE TABLE calls (
        session_id TEXT PRIMARY KEY,
        started {real} NOT NULL,
        ended {real},
        caller TEXT NOT NULL,
        dropped INTEGER NOT NULL DEFAULT 0  -- lines not kept (the call's bound, a full disk)
    );
    CREATE TABLE chunks (               -- a call's transcript lines, in batches as they were written
        {rowid}                         -- the order they were written in (SQLite's own rowid)
        session_id TEXT NOT NULL,
        time {real} NOT NULL,           -- of the first line
        lines TEXT NOT NULL             -- JSON, flat: [ms, direction, node, agent, text, ms, ...]
    );
    CREATE INDEX chunks_by_call ON chunks (session_id);
    """,
    # 2: a call-back number on tickets; calls listed newest first without a scan; a prompt's text
    # kept once and referred to by number in the chunks
    """
    ALTER TABLE tickets ADD COLUMN callback TEXT;
    CREATE TABLE texts (                -- prompts said again and again, kept once
        id {int64} PRIMARY KEY,
        node TEXT,                      -- the node whose screen it is (for a keypress entry)
        text TEXT NOT NULL
    );
    CREATE INDEX calls_by_start ON calls (started);
    CREATE INDEX tickets_by_created ON tickets (created);
    {text_blocks}
    """,
    # 3: every desk call on record (docs/agent-desk.md, "Every call on record"): a row when a caller
    # enters a queue, its end, and what the agent or the caller adds (disposition, satisfaction)
    """
    CREATE TABLE desk_calls (
        {rowid}                         -- the order they were made in (SQLite's own rowid)
        call_id TEXT NOT NULL,          -- the CALL_ID agents see (the caller's session id)
        queue TEXT NOT NULL,
        joined {real} NOT NULL,
        answered {real},
        agent TEXT,
        ended {real},                   -- NULL while waiting or talking
        ended_by TEXT,                  -- caller | agent | server
        outcome TEXT,                   -- answered | abandoned | timeout | busy | closed | callback
        waited {real},                  -- seconds, joined to answered (or to ended)
        talked {real},                  -- seconds, answered to ended
        offers INTEGER NOT NULL DEFAULT 0,
        missed INTEGER NOT NULL DEFAULT 0,
        disposition TEXT,
        csat INTEGER                    -- 1..5, from the survey
    );
    CREATE INDEX desk_calls_by_call ON desk_calls (call_id);
    CREATE INDEX desk_calls_by_joined ON desk_calls (joined, queue);
    """,
    # 4: queued callbacks: the number (in full, as on a ticket), what the agent sees, its life
    """
    ALTER TABLE desk_calls ADD COLUMN callback TEXT;
    ALTER TABLE desk_calls ADD COLUMN context TEXT;
    ALTER TABLE desk_calls ADD COLUMN expires {real};
    """,
    # 5: reports (app/records/report.py): the caller's phone variable for the abandoned list; offers
    # an agent let ring out, by agent; covering indexes so a report reads index ranges, never the table
    """
    ALTER TABLE desk_calls ADD COLUMN phone TEXT;  -- the session's `phone` variable, in full
    CREATE TABLE desk_misses (
        call_id TEXT NOT NULL,
        queue TEXT NOT NULL,
        agent TEXT NOT NULL,
        time {real} NOT NULL
    );
    CREATE INDEX desk_misses_by_agent ON desk_misses (agent, time, queue);
    CREATE INDEX desk_calls_by_queue ON desk_calls (queue, joined, outcome, waited, talked, csat);
    CREATE INDEX desk_calls_by_agent ON desk_calls (agent, joined, queue, outcome, talked, csat)
        WHERE agent IS NOT NULL;
    """,
    # 6: webhooks' outbox (docs/integrations.md, "Webhooks"; app/records/outbox.py): one row per event and
    # webhook, written in the transaction of the record it reports, kept once delivered or failed
    """
    CREATE TABLE webhook_deliveries (
        id {serial},                    -- what `hotline hooks list` shows and `retry` takes
        event_id TEXT NOT NULL,         -- the webhook-id header: the same on every attempt
        webhook TEXT NOT NULL,          -- its name in hooks.yaml
        type TEXT NOT NULL,             -- ticket.created | call.completed | survey.answered | ...
        call_id TEXT NOT NULL,          -- a call's events go out in order, one at a time
        created {real} NOT NULL,
        body TEXT NOT NULL,             -- the JSON sent, as signed
        status TEXT NOT NULL DEFAULT 'pending',  -- pending | delivered | failed
        attempts INTEGER NOT NULL DEFAULT 0,
        since {real} NOT NULL,          -- retried until since + 24 h (a manual retry starts again)
        next_at {real} NOT NULL,        -- the next attempt, not before
        lease_until {real},             -- a replica is sending it until then
        last_status INTEGER,            -- the last answer's HTTP status (NULL: none came)
        last_error TEXT,
        done_at {real}                  -- delivered or failed then
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (webhook, status, id);
    CREATE INDEX webhook_deliveries_next ON webhook_deliveries (webhook, status, next_at);
    CREATE INDEX webhook_deliveries_by_call ON webhook_deliveries (webhook, call_id, id);
    """,
)
VERSION = len(MIGRATIONS)
TABLES: tuple[frozenset[str], ...] = (  # the tables each migration makes
    frozenset({"tickets", "calls", "chunks"}),
    frozenset({"texts"}),
    frozenset({"desk_calls"}),
    frozenset(),
    frozenset({"desk_misses"}),
    frozenset({"webhook_deliveries"}),
)
assert len(TABLES) == len(MIGRATIONS)
DDL = {d.name: d.ddl for d in (SQLITE, POSTGRESQL)}  # what MIGRATIONS' blanks are on each database
# PostgreSQL advisory locks (any two numbers of our own): one migration at a time, one ticket batch;
# on SQLite any lock is BEGIN IMMEDIATE, the one writer's
MIGRATION_LOCK, TICKET_LOCK = 0x686F746C696E6501, 0x686F746C696E6502
TEXT_BLOCK = 1 << 20  # numbers for shared texts a PostgreSQL replica reserves at start


def migration(step: int, kind: str) -> str:
    """The DDL of MIGRATIONS[step] for a database of `kind` ("sqlite" or "postgresql")."""
    return MIGRATIONS[step].format_map(DDL[kind])


def prepare_folder(folder: Path) -> Path:
    """Create the data folder if needed (mode 0700), check it can be written and make it private
    (`tighten`); the database's path."""
    if folder.exists() and not folder.is_dir():
        raise DatabaseError(f"{folder}: the data folder is not a folder")
    try:
        folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)  # (parents get the usual mode)
    except OSError as exc:
        raise DatabaseError(f"{folder}: cannot create the data folder ({exc.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DatabaseError(f"{folder}: the data folder is not writable")
    tighten(folder)
    return folder / FILE


def tighten(folder: Path) -> list[str]:
    """Take group and other permissions away from the data folder and from the files hotline keeps
    there (PRIVATE_FILES), as an older hotline left them (0755, 0644): tickets hold full call-back
    numbers. Logged once, when something changed (`data_permissions_tightened`, the paths), or could
    not be changed (`data_permissions_loose`: a folder of another user; the server goes on). Only
    hotline's own files: a data folder given as `.` keeps its other files as they are. Returns the
    paths tightened."""
    done: list[str] = []
    for path, private in [(folder, FOLDER_MODE), *((folder / name, FILE_MODE) for name in PRIVATE_FILES)]:
        try:
            st = path.lstat()
        except OSError:
            continue  # not there (yet)
        mode = stat.S_IMODE(st.st_mode)
        if not mode & ~private or (path is not folder and not stat.S_ISREG(st.st_mode)):
            continue  # private already; or a link, never followed out of the folder
        try:
            os.chmod(path, mode & private)
        except OSError as exc:
            log.warning("data_permissions_loose", path=str(path), mode=f"{mode:04o}", error=exc.strerror)
        else:
            done.append(str(path))
    if done:
        log.warning("data_permissions_tightened", paths=done)
    return done


def connect(target: Path | str, *, create: bool, readonly: bool = False) -> AnyDb:
    """Open the database at `target` (a SQLite file's path, or a PostgreSQL URL), creating its tables
    only when `create`, check it is a hotline database this version can use, and set it up.
    `readonly` connections (the CLI's listings) never migrate or write."""
    if is_postgres(target):
        return _set_up(POSTGRESQL.open(str(target)), create=create, readonly=readonly)
    return _set_up(
        SQLITE.open(Path(target), create=create, readonly=readonly), create=create, readonly=readonly
    )


def _set_up(db: Db[C], *, create: bool, readonly: bool) -> Db[C]:
    try:
        version, tables = db.dialect.inspect(db, create=create)
        _check(db, version, tables, readonly)
        db.dialect.set_up_session(db, readonly=readonly)
        if not readonly and version < VERSION:
            _migrate(db)
    except DatabaseErrors as exc:  # the file or the server speaks, but not as a hotline database
        db.close()
        raise DatabaseError(f"{db.where}: not a usable database ({one_line(exc)}); left as it is") from None
    except DatabaseError:
        db.close()
        raise
    return db


def _check(db: AnyDb, version: int, tables: set[str], readonly: bool) -> None:
    """Refuse a database of a newer hotline, one that claims our schema without our tables, and (to a
    reader) one not migrated yet."""
    if version > VERSION:
        raise DatabaseError(
            f"{db.where}: the database is of a newer hotline (schema {version}, this one knows {VERSION}); "
            "left as it is"
        )
    if missing := sorted(set().union(*TABLES[:version]) - tables):  # our schema number, not our tables
        raise DatabaseError(
            f"{db.where}: not a hotline database of schema {version} (no table {', '.join(missing)}); "
            "left as it is"
        )
    if readonly and version < VERSION:
        raise DatabaseError(
            f"{db.where}: the database is of an older schema; start the server once to migrate it"
        )


def _migrate(db: Db[C]) -> None:
    with db.dialect.migrating(db, MIGRATION_LOCK):
        version = db.dialect.version(db)  # another replica may have migrated while we waited
        for step in range(version, VERSION):
            for statement in migration(step, db.kind).split(";"):
                if statement.strip():
                    db.execute(statement)
        if version < VERSION:
            db.dialect.set_version(db, VERSION)


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
    """The day part of a ticket id, in the server's zone (HOTLINE_TIMEZONE)."""
    return zone.day(created).strftime("%Y%m%d")


def insert_tickets(db: AnyDb, tickets: Sequence[NewTicket]) -> list[str]:
    """Number and insert `tickets` (inside the caller's transaction, begun with TICKET_LOCK); their
    ids, in order. Ids are T<day>-<n>: n counts up from 1 each day, at least four digits."""
    ids, rows = [], []
    last: dict[str, int] = {}
    for t in tickets:
        day = ticket_day(t.created)
        if day not in last:
            row = db.execute("SELECT max(seq) FROM tickets WHERE day = ?", (day,)).fetchone()
            last[day] = row[0] or 0
        seq = last[day] = last[day] + 1
        ticket_id = f"T{day}-{seq:04d}"
        vars_json = json.dumps(t.vars, ensure_ascii=False, default=str)
        rows.append(
            (
                ticket_id,
                day,
                seq,
                t.created,
                t.session_id,
                t.caller,
                t.queue,
                t.message,
                vars_json,
                t.callback,
            )
        )
        ids.append(ticket_id)
    db.executemany(
        "INSERT INTO tickets (id, day, seq, created, session_id, caller, queue, message, vars, callback)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    return ids


Line = tuple[str, float, str, str | None, str | None, str]  # session_id, time, direction, node, agent, text
Chunks = dict[str, list[Any]]  # session id -> [ms, direction, node, agent, text, ms, ...] (ms: epoch ms)


def insert_texts(db: AnyDb, texts: Sequence[tuple[int, str | None, str]]) -> None:
    db.executemany(
        "INSERT INTO texts (id, node, text) VALUES (?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET node = excluded.node, text = excluded.text",
        texts,
    )


def shared_texts(db: AnyDb, limit: int) -> dict[str | None, dict[str, int]]:
    """The texts chunks refer to by number, by node, to go on using their numbers after a restart."""
    out: dict[str | None, dict[str, int]] = {}
    for tid, node, text in db.execute("SELECT id, node, text FROM texts ORDER BY id LIMIT ?", (limit,)):
        out.setdefault(node, {})[text] = tid
    return out


def text_numbers(db: AnyDb) -> range:
    """The numbers this process may give new shared texts: after the last one (SQLite: this process
    is the file's one writer), or a block of TEXT_BLOCK no other replica has (PostgreSQL)."""
    return db.text_numbers(TEXT_BLOCK)


def insert_chunks(db: AnyDb, chunks: Chunks) -> None:
    """Each call's lines since the last batch as one row (a chunk): a batch of thousands of lines
    costs a row per call. A chunk is flat: ms, direction, node, agent, text, ms, ... (ms: the time
    in epoch milliseconds; text: the text, or the number of a row of `texts`). A keypress and the
    screen it brought are one entry: ms, "k", node, key, number of the screen's row in `texts`
    (which names the screen's node)."""
    db.executemany(
        "INSERT INTO chunks (session_id, time, lines) VALUES (?, ?, " + db.dialect.utf8_text + ")",  # noqa: S608 - the dialect's own
        ((sid, chunk[0] / 1000, chunk_json(chunk)) for sid, chunk in chunks.items() if chunk),  # one by one
    )


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def chunk_json(chunk: list[Any]) -> bytes:
    """A chunk's JSON text in UTF-8, compact and not ASCII-escaped: orjson's, which is the standard
    library's to the byte for what a chunk holds (ints, strings, null) and 4-7 times quicker (this
    runs in the records thread, for every line), and stored as it comes (no str made of it and
    encoded again: 1.6-2x quicker for a rendered screen). What orjson refuses, a string with a lone
    surrogate (not UTF-8), goes through the standard library with the surrogate written as JSON's
    escape (`\\ud800`): the chunk is stored, and reads back with the same string."""
    try:
        return orjson.dumps(chunk)
    except TypeError:  # orjson.JSONEncodeError
        return _dumps(chunk).encode("utf-8", "backslashreplace")


def insert_lines(db: AnyDb, lines: Iterable[Line]) -> None:
    """Lines of any calls, in order (tests and tools; the server writes chunks it gathered)."""
    chunks: Chunks = {}
    for session_id, t, *rest in lines:
        chunks.setdefault(session_id, []).extend((int(t * 1000), *rest))
    insert_chunks(db, chunks)


def _split(db: AnyDb, chunk: str) -> list[list[Any]]:
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


def _lines_of(db: AnyDb, session_id: str) -> list[list[Any]]:
    out: list[list[Any]] = []
    for (chunk,) in db.execute("SELECT lines FROM chunks WHERE session_id = ? ORDER BY rowid", (session_id,)):
        out += _split(db, chunk)
    return out


def call_started(db: AnyDb, session_id: str, started: float, caller: str) -> None:
    db.execute(
        "INSERT INTO calls (session_id, started, caller) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        (session_id, started, caller),
    )


def call_ended(db: AnyDb, session_id: str, ended: float, dropped: int) -> None:
    db.execute(
        "UPDATE calls SET ended = ?, dropped = dropped + ? WHERE session_id = ?", (ended, dropped, session_id)
    )


# A desk call's later facts go to its latest row: a session that went to the desk twice has two.
_NOTE_SQL = {
    "disposition": "UPDATE desk_calls SET disposition = ? "
    "WHERE rowid = (SELECT MAX(rowid) FROM desk_calls WHERE call_id = ?)",
    "callback": "UPDATE desk_calls SET callback = ?, context = ?, expires = ? "
    "WHERE rowid = (SELECT MAX(rowid) FROM desk_calls WHERE call_id = ?)",
    "csat": "UPDATE desk_calls SET csat = ? "
    "WHERE rowid = (SELECT MAX(rowid) FROM desk_calls WHERE call_id = ?)",
}


@dataclass(frozen=True)
class DeskCallEnded:
    """How a desk call ended (the desk's DeskCallEnd, as the records take it)."""

    call_id: str
    queue: str
    joined: float
    answered: float | None
    agent: str | None
    ended: float
    ended_by: str
    outcome: str
    offers: int
    missed: int


def desk_joined(db: AnyDb, call_id: str, queue: str, joined: float, phone: str | None = None) -> None:
    db.execute(
        "INSERT INTO desk_calls (call_id, queue, joined, phone) VALUES (?, ?, ?, ?)",
        (call_id, queue, joined, phone),
    )


def desk_missed(db: AnyDb, call_id: str, queue: str, agent: str, time: float) -> None:
    """An offer `agent` let ring out (the reports' missed, by agent)."""
    db.execute(
        "INSERT INTO desk_misses (call_id, queue, agent, time) VALUES (?, ?, ?, ?)",
        (call_id, queue, agent, time),
    )


def desk_ended(db: AnyDb, e: DeskCallEnded) -> None:
    waited = (e.answered if e.answered is not None else e.ended) - e.joined
    talked = e.ended - e.answered if e.answered is not None else None
    db.execute(
        "UPDATE desk_calls SET answered = ?, agent = ?, ended = ?, ended_by = ?, outcome = ?, waited = ?, "
        "talked = ?, offers = ?, missed = ? "
        "WHERE rowid = (SELECT MAX(rowid) FROM desk_calls WHERE call_id = ?)",
        (e.answered, e.agent, e.ended, e.ended_by, e.outcome, max(0.0, waited), talked, e.offers, e.missed,
         e.call_id),
    )  # fmt: skip


def desk_note(db: AnyDb, call_id: str, column: str, *values: object) -> None:
    """A disposition, a satisfaction score or a booked callback on the call's latest desk call."""
    db.execute(_NOTE_SQL[column], (*values, call_id))


def pending_callbacks(db: AnyDb) -> list[dict[str, Any]]:
    """Callbacks booked and not yet served or expired, in their join order (to restore at start)."""
    return db.rows(
        "SELECT call_id, queue, joined, callback, context, expires FROM desk_calls "
        "WHERE callback IS NOT NULL AND ended IS NULL ORDER BY joined"
    )


def desk_calls_of(db: AnyDb, call_id: str) -> list[dict[str, Any]]:
    """A session's desk calls, oldest first, as `hotline calls show --json` has them."""
    return [
        _desk_call(row)
        for row in db.rows("SELECT * FROM desk_calls WHERE call_id = ? ORDER BY joined, rowid", (call_id,))
    ]


def latest_desk_call(db: AnyDb, call_id: str) -> dict[str, Any] | None:
    """The session's latest desk call, as `desk_calls_of` has each (what a webhook event carries)."""
    rows = db.rows(
        "SELECT * FROM desk_calls WHERE rowid = (SELECT MAX(rowid) FROM desk_calls WHERE call_id = ?)",
        (call_id,),
    )
    return _desk_call(rows[0]) if rows else None


def _desk_call(row: Any) -> dict[str, Any]:
    return {
        "call_id": row["call_id"],
        "session_id": row["call_id"],
        "queue": row["queue"],
        "joined": _iso(row["joined"]),
        "answered": _iso(row["answered"]),
        "agent": row["agent"],
        "ended": _iso(row["ended"]),
        "ended_by": row["ended_by"],
        "outcome": row["outcome"],
        "waited": _seconds(row["waited"]),
        "talked": _seconds(row["talked"]),
        "offers": row["offers"],
        "missed": row["missed"],
        "disposition": strip_unsafe(row["disposition"]) if row["disposition"] is not None else None,
        "csat": row["csat"],
        "callback": strip_unsafe(row["callback"]) if row.get("callback") is not None else None,
    }


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)


def purge_lines(db: AnyDb, before: float) -> int:
    """Delete the transcripts of calls that started before `before`; tickets stay. Chunks deleted."""
    deleted = db.execute(
        "DELETE FROM chunks WHERE session_id IN (SELECT session_id FROM calls WHERE started < ?)", (before,)
    ).rowcount
    db.execute("DELETE FROM calls WHERE started < ?", (before,))
    return int(deleted)


def backup(db: AnyDb, dest: Path) -> None:
    """A consistent copy of the database at `dest`, taken while the server writes (SQLite's online
    backup), mode 0600 like the database. `dest` must not exist yet; a copy that failed half way
    is removed. (PostgreSQL has its own tools for that.)"""
    db.backup(dest)


# ---- reading (the CLI, /history) -----------------------------------------------------------------


def _iso(t: float | None) -> str | None:
    return None if t is None else zone.iso(t)


# What is read back is cleaned of what no person should be shown (app.text.UNSAFE) on its way to the
# CLI, the console's ticket API and /history: records an older hotline wrote may hold what a caller
# typed before the line discipline removed it. (New records are clean already: this finds nothing.)


def _shown(value: Any) -> Any:
    """A value read from the records, its text cleaned (a saved variable may be a lookup's row)."""
    if isinstance(value, str):
        return strip_unsafe(value)
    if isinstance(value, dict):
        return {strip_unsafe(str(k)): _shown(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shown(v) for v in value]
    return value


def _ticket(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "created": _iso(row["created"]),
        "status": row["status"],
        "session_id": row["session_id"],
        "caller": _shown(row["caller"]),
        "queue": row["queue"],
        "message": _shown(row["message"]),
        "vars": _shown(json.loads(row["vars"])),
        "callback": _shown(row["callback"]),
        "closed": _iso(row["closed"]),
        "note": _shown(row["note"]),
    }


def list_tickets(
    db: AnyDb,
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
    return [_ticket(r) for r in db.rows(sql + " ORDER BY created DESC, seq DESC LIMIT ?", (*args, limit))]


def get_ticket(db: AnyDb, ticket_id: str) -> dict[str, Any] | None:
    rows = db.rows("SELECT * FROM tickets WHERE id = ?", (ticket_id,))
    return _ticket(rows[0]) if rows else None


def close_ticket(db: AnyDb, ticket_id: str, note: str | None, now: float) -> bool:
    """Close a ticket (again: the note is replaced); False when there is no such ticket."""
    cur = db.execute(
        "UPDATE tickets SET status = 'closed', closed = ?, note = coalesce(?, note) WHERE id = ?",
        (now, note, ticket_id),
    )
    return bool(cur.rowcount == 1)


def _call(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "session_id": row["session_id"],
        "started": _iso(row["started"]),
        "ended": _iso(row["ended"]),
        "caller": _shown(row["caller"]),
        "dropped": row["dropped"],
    }


def list_calls(db: AnyDb, limit: int = 50) -> list[dict[str, Any]]:
    """Newest first, each with its latest desk call's queue, agent, outcome and disposition."""
    calls = [_call(r) for r in db.rows("SELECT * FROM calls ORDER BY started DESC LIMIT ?", (limit,))]
    for call in calls:
        desk = db.rows(
            "SELECT queue, agent, outcome, disposition FROM desk_calls WHERE rowid = "
            "(SELECT MAX(rowid) FROM desk_calls WHERE call_id = ?)",
            (call["session_id"],),
        )
        last = desk[0] if desk else {}
        for key in ("queue", "agent", "outcome", "disposition"):
            value = last.get(key)
            call[key] = strip_unsafe(value) if isinstance(value, str) else value
    return calls


def get_call(db: AnyDb, session_id: str) -> dict[str, Any] | None:
    rows = db.rows("SELECT * FROM calls WHERE session_id = ?", (session_id,))
    if not rows:
        return None
    call = _call(rows[0])
    call["lines"] = [
        {"time": _iso(t), "direction": direction, "node": node, "text": strip_unsafe_lines(text)}
        | ({"agent": agent} if agent is not None else {})
        for t, direction, node, agent, text in _lines_of(db, session_id)
    ]
    call["desk_calls"] = desk_calls_of(db, session_id)
    return call


def last_lines(db: AnyDb, session_id: str, count: int) -> list[tuple[str, str | None, str]]:
    """The last `count` lines of a call, oldest first: (direction, agent, text)."""
    out: list[list[Any]] = []
    for (chunk,) in db.execute(
        "SELECT lines FROM chunks WHERE session_id = ? ORDER BY rowid DESC", (session_id,)
    ):
        out[:0] = _split(db, chunk)
        if len(out) >= count:
            break
    return [(line[1], line[3], strip_unsafe_lines(line[4])) for line in out[-count:]]
