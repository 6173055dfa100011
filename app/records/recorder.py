"""The server's side of the records: one writer thread owns the database; the event loop never
waits on it.

- Tickets: `await recorder.save_ticket(...)` resolves with the ticket's id once the transaction that
  stored it has committed (synchronous=FULL), or raises RecordError. The thread takes every ticket
  waiting when it starts a transaction, so under load many tickets share one commit (group commit),
  and each caller still hears their number only after theirs is on disk.
- Transcripts: a line, or a keypress and the screen it brought, is one append of ENTRY values to
  `entries` on the loop (no lock, no syscall, no look-up: `line`, `step`, or the caller's session
  itself for a keypress); every FLUSH_EVERY seconds the list goes to the thread as one batch, and
  the thread does the rest: each call's lines grouped into its chunk, times made milliseconds, fixed
  prompts numbered, the JSON. When the thread is behind by more than
  MAX_BACKLOG lines (a slow or full disk), new lines are dropped and counted rather than held, with
  one log line per incident; callers are never slowed. A call keeps at most MAX_CALL_BYTES of
  transcript; past it, one line says so and the rest of the call is counted, not kept.

- Webhook events (app/records/outbox.py): for the webhooks `hooks` names, an event row goes into the
  transaction of the record it reports (a ticket's, a batch's desk call); after the commit
  `on_outbox` is called on the loop (the delivery worker wakes).

This is the storage interface the server uses (Storage). The thread writes to SQLite (a file in the
data folder) or to PostgreSQL (`HOTLINE_DATABASE_URL`, replicas sharing one): the same queries
(database.py), the same group commit; the thread connects again by itself after PostgreSQL went away.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog

from app.records import database as dbm
from app.records import outbox
from app.records.database import Chunks, NewTicket
from app.records.dialects import DatabaseError, is_postgres

log = structlog.get_logger("hotline.records")

FLUSH_EVERY = 0.5  # seconds between transcript batches (fewer, larger chunks: less to write per line)
MAX_BACKLOG = 200_000  # transcript lines handed to the thread and not yet written
MAX_CALL_BYTES = 256 * 1024  # transcript kept per call
MAX_SHARED_TEXTS = 10_000  # distinct prompts stored once and referred to by number
PURGE_EVERY = 3600.0  # seconds between retention sweeps
TRUNCATED = "(记录已截断:本次通话后续内容未保存 / transcript truncated)"

# An entry of Recorder.entries is ENTRY values, flat: session id, time (seconds), node, then
#   a step (a keypress at node and the screen it brought):  key, the screen's node, screen, FIXED | RENDERED
#   a line:                                                 direction, agent, text, LINE | SHARED
# (FIXED: a prompt of the menu, numbered; RENDERED: rendered for this caller and masked, kept in full;
# SHARED: a line whose text is a fixed prompt, numbered.) The loop appends; the thread reads them.
ENTRY = 7
FIXED, RENDERED = False, True  # a step's kind is its screen's `fresh` (Say.fresh), as it comes
LINE, SHARED = "l", "s"


class RecordError(Exception):
    """A ticket could not be stored (disk full, read-only, database error)."""


@dataclass
class Counters:
    tickets: int = 0
    ticket_failures: int = 0
    lines: int = 0
    dropped: int = 0
    write_errors: int = 0
    commits: int = 0


class Storage(Protocol):
    """What the server needs from a records backend (Recorder is checked against it below)."""

    counters: Counters
    entries: list[Any]

    def start(self) -> None: ...

    async def save_ticket(self, ticket: NewTicket) -> str: ...

    def call_started(self, session_id: str, started: float, caller: str) -> None: ...

    def line(
        self,
        session_id: str,
        t: float,
        direction: str,
        node: str | None,
        agent: str | None,
        text: str,
        shared: bool = False,
    ) -> None: ...

    def step(
        self, session_id: str, t: float, node: str | None, key: str, after: str | None, screen: str
    ) -> None: ...

    def call_ended(self, session_id: str, ended: float, dropped: int) -> None: ...

    async def last_lines(self, session_id: str, count: int) -> list[tuple[str, str | None, str]]: ...

    async def tickets(
        self, status: str | None, limit: int, queues: Sequence[str] | None
    ) -> list[dict[str, Any]]: ...

    async def ticket(self, ticket_id: str) -> dict[str, Any] | None: ...

    async def close_ticket(self, ticket_id: str, note: str | None) -> bool: ...

    async def close(self) -> None: ...


@dataclass
class _Job:
    kind: str  # "tickets" | "lines" | "read" | "purge" | "stop"
    payload: Any = None
    futures: list[asyncio.Future[Any]] = field(default_factory=list)


_ms = float.__trunc__  # float -> int: cheaper than int() or math.trunc, for every transcript line
_NO_IDS: dict[str, int] = {}  # never written to
_PLAIN = (FIXED, RENDERED)  # a step whose screen is not numbered is kept as two plain lines


class Recorder:
    """The records of one server process (see the module's docstring): in the data folder `target`,
    or in the PostgreSQL database at the URL `target`."""

    def __init__(self, target: Path | str, retention_days: float) -> None:
        where = target if is_postgres(target) else dbm.prepare_folder(Path(target))
        self.db = dbm.connect(where, create=True)  # here, not in the thread: errors stop the start
        self.retention = retention_days * 86400.0
        self.counters = Counters()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self.entries: list[Any] = []  # since the last flush: ENTRY values each (see ENTRY)
        # the thread's: node -> prompt -> its row in `texts` (node None: a shared line's text)
        self._text_ids = dbm.shared_texts(self.db, MAX_SHARED_TEXTS)
        self._shared = sum(map(len, self._text_ids.values()))
        numbers = dbm.text_numbers(self.db)
        self._next_text, self._text_end = numbers.start, numbers.stop
        self._calls: list[tuple[str, Any]] = []  # ("start" | "end", args), in order with the lines
        self._tickets: list[tuple[NewTicket, asyncio.Future[str]]] = []
        self._backlog = 0  # lines handed to the thread, not yet written (the thread lowers it)
        self._lock = threading.Lock()  # guards _backlog and _tickets across the two threads
        self._dropping = False
        self._thread = threading.Thread(target=self._run, name="hotline-records", daemon=True)
        self._flusher: asyncio.Task[None] | None = None
        # event type -> webhooks taking it (replaced whole on reload; the thread reads it per batch)
        self.hooks: outbox.Subscriptions = {}
        self.on_outbox: Callable[[], None] | None = None  # events were committed to the outbox

    @property
    def where(self) -> str:
        """The database: a path, or the URL without its password."""
        return self.db.where

    # ---- the event loop's side --------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread.start()
        self._flusher = self._loop.create_task(self._flush_forever())

    async def save_ticket(self, ticket: NewTicket) -> str:
        assert self._loop is not None
        future: asyncio.Future[str] = self._loop.create_future()
        with self._lock:
            self._tickets.append((ticket, future))
            first = len(self._tickets) == 1
        if first:
            self._jobs.put(_Job("tickets"))
        return await future

    def call_started(self, session_id: str, started: float, caller: str) -> None:
        self._calls.append(("start", (session_id, started, caller)))

    def line(
        self,
        session_id: str,
        t: float,
        direction: str,
        node: str | None,
        agent: str | None,
        text: str,
        shared: bool = False,
    ) -> None:
        """One line of a call. `shared`: a fixed prompt, said again and again: stored once."""
        self.entries.extend((session_id, t, node, direction, agent, text, SHARED if shared else LINE))

    def step(
        self,
        session_id: str,
        t: float,
        node: str | None,
        key: str,
        after: str | None,
        screen: str,
        fresh: bool = False,
    ) -> None:
        """`line` twice, in one entry: a caller's key at `node` and the screen it brought at `after`.
        A fixed screen is stored as its number (see database.insert_chunks); a `fresh` one (rendered
        for this caller, masked already) in full. (The caller's session appends a common step's
        entry itself, without this call: it runs for every keypress.)"""
        self.entries.extend((session_id, t, node, key, after, screen, fresh))

    def call_ended(self, session_id: str, ended: float, dropped: int) -> None:
        self._calls.append(("end", (session_id, ended, dropped)))

    # desk calls: written with the next batch of lines (within FLUSH_EVERY), in the order they came:
    # on disk within a second of the end, across kill -9 (the batch's commit is in the database's log)
    def desk_joined(self, call_id: str, queue: str, joined: float, phone: str | None = None) -> None:
        """A caller entered a queue; `phone`: their `phone` variable, kept in full (the abandoned list)."""
        self._calls.append(("desk", (dbm.desk_joined, (call_id, queue, joined, phone), None, call_id)))

    def desk_missed(self, call_id: str, queue: str, agent: str, time: float) -> None:
        self._calls.append(("desk", (dbm.desk_missed, (call_id, queue, agent, time), None, call_id)))

    def desk_ended(self, end: Any) -> None:
        """`end`: the desk's DeskCallEnd (any object with DeskCallEnded's fields)."""
        fields = {f: getattr(end, f) for f in dbm.DeskCallEnded.__dataclass_fields__}
        ended = dbm.DeskCallEnded(**fields)
        self._calls.append(("desk", (dbm.desk_ended, (ended,), "call.completed", ended.call_id)))

    def desk_disposition(self, call_id: str, disposition: str) -> None:
        self._calls.append(("desk", (dbm.desk_note, (call_id, "disposition", disposition), None, call_id)))

    def desk_callback(self, call_id: str, number: str, context: str, expires: float) -> None:
        """A caller booked a callback: the number in full (agents dial it), kept like a ticket's."""
        note = (call_id, "callback", number, context, expires)
        self._calls.append(("desk", (dbm.desk_note, note, "callback.booked", call_id)))

    async def pending_callbacks(self) -> list[dict[str, Any]]:
        """Callbacks still waiting (after a restart of a server that keeps its queues in process)."""
        return await self._ask(lambda: dbm.pending_callbacks(self.db))  # type: ignore[no-any-return]

    def desk_score(self, call_id: str, csat: int) -> None:
        """A satisfaction score (1-5) for the session's latest desk call."""
        self._calls.append(("desk", (dbm.desk_note, (call_id, "csat", csat), "survey.answered", call_id)))

    async def last_lines(self, session_id: str, count: int) -> list[tuple[str, str | None, str]]:
        """The call's last lines as stored, after everything recorded so far is written."""
        self.flush()
        return await self._ask(lambda: dbm.last_lines(self.db, session_id, count))  # type: ignore[no-any-return]

    async def tickets(
        self, status: str | None, limit: int, queues: Sequence[str] | None
    ) -> list[dict[str, Any]]:
        """As `hotline tickets list --json`; with `queues`, those queues' tickets and those of none."""
        return await self._ask(lambda: dbm.list_tickets(self.db, status, limit, queues))  # type: ignore[no-any-return]

    async def ticket(self, ticket_id: str) -> dict[str, Any] | None:
        return await self._ask(lambda: dbm.get_ticket(self.db, ticket_id))  # type: ignore[no-any-return]

    async def close_ticket(self, ticket_id: str, note: str | None) -> bool:
        """Close a ticket (autocommit: one UPDATE); False when there is no such ticket."""
        return await self._ask(lambda: dbm.close_ticket(self.db, ticket_id, note, time.time()))  # type: ignore[no-any-return]

    def flush(self) -> None:
        """Hand the lines and call records gathered so far to the thread (or drop them, counted)."""
        entries, calls = self.entries, self._calls
        if not entries and not calls:
            return
        self.entries, self._calls = [], []
        count = _lines_in(entries)
        with self._lock:
            over = self._backlog + count > MAX_BACKLOG
            if not over:
                self._backlog += count
        if over:
            self._dropped(count, "backlog")
            entries, count = [], 0
        self._jobs.put(_Job("lines", (entries, count, calls)))

    async def close(self) -> None:
        """Write everything gathered, then stop the thread (on shutdown: SIGTERM loses nothing)."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        self.flush()
        done = asyncio.get_running_loop().create_future()
        self._jobs.put(_Job("stop", futures=[done]))
        await done
        self._thread.join(5)
        self.db.close()

    async def _flush_forever(self) -> None:
        next_purge = time.time()
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            self.flush()
            now = time.time()
            if self.retention and now >= next_purge:
                next_purge = now + PURGE_EVERY
                self._jobs.put(_Job("purge", now - self.retention))

    def _dropped(self, count: int, why: str) -> None:
        self.counters.dropped += count
        if not self._dropping:
            self._dropping = True
            log.warning("transcript_dropped", lines=count, reason=why, database=self.where)

    async def _ask(self, read: Callable[[], Any]) -> Any:
        assert self._loop is not None
        future = self._loop.create_future()
        self._jobs.put(_Job("read", read, [future]))
        return await future

    # ---- the thread's side ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job.kind == "stop":
                self._write_tickets()  # any that came in last
                self._settle(job.futures, None)
                return
            if job.kind == "tickets":
                self._write_tickets()
            elif job.kind == "lines":
                self._write_lines(*job.payload)
            elif job.kind == "read":
                try:
                    self._settle(job.futures, job.payload())
                except Exception as exc:
                    self._settle(job.futures, None, exc)
            elif job.kind == "purge":
                self._purge(job.payload)

    def _write_tickets(self) -> None:
        with self._lock:
            batch, self._tickets = self._tickets, []
        if not batch:
            return
        try:
            # durable: the commit reaches the disk before anyone hears an id
            self.db.begin(lock=dbm.TICKET_LOCK)
            ids = dbm.insert_tickets(self.db, [t for t, _ in batch])
            events = outbox.tickets_created(self.db, self.hooks, ids, time.time())
            self.db.commit()
        except Exception as exc:
            self._rollback()
            self.counters.ticket_failures += len(batch)
            self._log_soon("error", "ticket_failed", error=str(exc), tickets=len(batch), database=self.where)
            error = RecordError(str(exc))
            for _, future in batch:
                self._call_soon(_fail, future, error)
            return
        self.counters.tickets += len(batch)
        self.counters.commits += 1
        for (_, future), ticket_id in zip(batch, ids, strict=True):
            self._call_soon(_succeed, future, ticket_id)
        if events:
            self._outbox_filled()

    def _chunks(self, entries: list[Any], texts: list[tuple[int, str | None, str]]) -> Chunks:
        """A batch's entries as each call's chunk (see database.insert_chunks); the prompts it
        numbered are added to `texts` (new rows of the table)."""
        chunks: Chunks = {}
        ids, number, get = self._text_ids, self._text_id, chunks.get
        for sid, t, node, a, b, text, kind in zip(*[iter(entries)] * ENTRY, strict=True):
            chunk = get(sid)
            if chunk is None:
                chunk = chunks[sid] = []
            ms = _ms(t * 1000.0)  # an int: JSON writes it three times faster than a float
            if kind is FIXED:  # a: the key, b: the screen's node
                tid = ids.get(b, _NO_IDS).get(text) or number(text, b, texts)
                if type(tid) is int:
                    chunk += (ms, "k", node, a, tid)
                    continue
            if kind in _PLAIN:  # rendered, or past MAX_SHARED_TEXTS: two plain lines
                chunk += (ms, "caller", node, None, a, ms, "system", b, None, text)
            elif kind is SHARED:  # a: the direction, b: the agent
                chunk += (ms, a, node, b, ids.get(None, _NO_IDS).get(text) or number(text, None, texts))
            else:
                chunk += (ms, a, node, b, text)
        return chunks

    def _text_id(self, text: str, node: str | None, texts: list[tuple[int, str | None, str]]) -> str | int:
        """The number a fixed prompt (of `node`) is stored under (numbered now if new, and added
        to `texts`), or the text itself once MAX_SHARED_TEXTS are numbered."""
        ids = self._text_ids.setdefault(node, {})
        tid = ids.get(text)
        if tid is None:
            if self._shared >= MAX_SHARED_TEXTS or self._next_text >= self._text_end:
                return text
            tid = ids[text] = self._next_text
            self._next_text += 1
            self._shared += 1
            texts.append((tid, node, text))
        return tid

    def _forget(self, texts: list[tuple[int, str | None, str]]) -> None:
        """Prompts numbered for a batch that was not written: numbered again when next said (so a
        later batch stores their texts)."""
        for tid, node, text in texts:
            ids = self._text_ids.get(node)
            if ids is not None and ids.get(text) == tid:
                del ids[text]
                self._shared -= 1

    def _write_lines(self, entries: list[Any], count: int, calls: list[tuple[str, Any]]) -> None:
        texts: list[tuple[int, str | None, str]] = []
        try:
            chunks = self._chunks(entries, texts)
            # In the database's log before COMMIT returns, so a killed process loses nothing; without
            # an fsync per batch only a machine crash could take the last batches.
            self.db.begin(durable=False)
            for what, args in calls:
                if what == "start":
                    dbm.call_started(self.db, *args)
            dbm.insert_texts(self.db, texts)
            dbm.insert_chunks(self.db, chunks)
            events, hooks, now = 0, self.hooks, time.time()
            for what, args in calls:
                if what == "end":
                    dbm.call_ended(self.db, *args)
                elif what == "desk":
                    write, values, event, call_id = args
                    write(self.db, *values)
                    if event is not None and hooks:
                        events += outbox.desk_event(self.db, hooks, event, call_id, now)
            self.db.commit()
            if events:
                self._outbox_filled()
            self.counters.lines += count
            self.counters.commits += 1
            if self._dropping and count:
                self._call_soon(self._recovered)
        except Exception as exc:
            self._rollback()
            self._forget(texts)
            self.counters.write_errors += 1
            self._call_soon(self._write_failed, count, str(exc))
        finally:
            with self._lock:
                self._backlog -= count

    def _outbox_filled(self) -> None:
        if self.on_outbox is not None:
            self._call_soon(self.on_outbox)

    def _recovered(self) -> None:
        if self._dropping:
            self._dropping = False
            log.info("transcript_recovered", dropped_total=self.counters.dropped)

    def _write_failed(self, count: int, error: str) -> None:
        """A batch could not be written: its lines are counted as dropped."""
        if not self._dropping:
            log.error("transcript_write_failed", error=error, database=self.where)
        self._dropped(count, "write_failed")

    def _purge(self, before: float) -> None:
        try:
            self.db.begin(durable=False)
            deleted = dbm.purge_lines(self.db, before)
            delivered = outbox.purge(self.db, before)  # events delivered as long ago (failed ones stay)
            self.db.commit()
        except Exception as exc:
            self._rollback()
            self._log_soon("error", "transcript_purge_failed", error=str(exc))
            return
        if deleted or delivered:
            self._log_soon("info", "transcripts_purged", lines=deleted, webhook_deliveries=delivered)

    def _log_soon(self, level: str, event: str, **fields: Any) -> None:
        """Log from the event loop's thread (structlog's processors are not shared across threads)."""
        self._call_soon(lambda: getattr(log, level)(event, **fields))

    def _rollback(self) -> None:
        with contextlib.suppress(Exception):
            self.db.rollback()

    def _call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting any more
            self._loop.call_soon_threadsafe(fn, *args)

    def _settle(
        self, futures: list[asyncio.Future[Any]], value: Any, exc: BaseException | None = None
    ) -> None:
        for future in futures:
            if exc is None:
                self._call_soon(_succeed, future, value)
            else:
                self._call_soon(_fail, future, exc)


def _lines_in(entries: list[Any]) -> int:
    """The transcript lines in a batch of entries (a step is two)."""
    kinds = entries[ENTRY - 1 :: ENTRY]
    return len(kinds) + kinds.count(FIXED) + kinds.count(RENDERED)


def _succeed(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def _is_storage(recorder: Recorder) -> Storage:
    return recorder  # mypy checks that Recorder offers everything Storage names


__all__ = ["DatabaseError", "NewTicket", "RecordError", "Recorder", "Storage"]
