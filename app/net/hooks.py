"""Webhook deliveries: the outbox's rows (app/records/outbox.py) sent to the webhooks of hooks.yaml.

How this works: one asyncio task per webhook, one thread for the database (its own connection: the
recorder's thread keeps writing meanwhile), one pooled aiohttp client. A webhook's task loops: in
one transaction (`outbox.exchange`, run in the thread) it records how the attempts that finished
went and claims what is due: MAX_IN_FLIGHT requests at once, and as many rows again claimed ahead
(`ready`), so that a request that ends is followed by the next at once, not after the database's
answer. It then sleeps until a request ends, the recorder committed new events (`wake`), the next
retry is due, or POLL passes (events other replicas wrote, `hotline hooks retry`). So a slow
receiver holds up its own webhook's deliveries only: the others' tasks and the callers never wait
on it, and the event loop never waits on the database.

A request is a Standard Webhooks POST (app/hooks/signing.py): the stored body, `webhook-id` (the
event's id, the same on every attempt), `webhook-timestamp` (this attempt's) and its signature. Any
2xx is delivered; 410 fails the delivery at once (the receiver wants no more of it); anything else
(another status, a redirect, which is never followed, a timeout, a refused connection) is tried
again after first, 2 x first, 4 x first ... seconds, at most `most` apart, until `give_up` seconds
after the event: then it is failed, and kept (`hotline hooks retry`).

A row claimed is leased to its sender for twice the webhook's timeout and LEASE_MARGIN (it may wait
for a request before its own); a sender that died (kill -9) leaves a lease that lapses, and the row
is claimed again: at least once. SQLite has one server, so at start its leases are all this
server's old ones and are dropped at once.
`webhook_failed` is logged once per webhook a minute (with the attempts not logged since).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import aiohttp
import structlog

from app.hooks.config import HooksConfig, Webhook
from app.hooks.signing import sign
from app.net.sources import outbound_session
from app.records import database as dbm
from app.records import outbox
from app.records.dialects import AnyDb, is_postgres, one_line

log = structlog.get_logger("hotline.hooks")

MAX_IN_FLIGHT: Final = 8  # requests at once per webhook
AHEAD: Final = MAX_IN_FLIGHT  # rows claimed ahead of the requests, started as others end
POLL: Final = 1.0  # seconds between looks at the outbox when nothing woke the worker
LEASE_MARGIN: Final = 10.0  # seconds a lease outlives the request's timeout
COUNT_EVERY: Final = 1.0  # seconds between counts of a webhook's pending rows (the gauge)
LOG_EVERY: Final = 60.0  # seconds between two webhook_failed lines of one webhook
MAX_READ: Final = 64 * 1024  # bytes of an answer read (and thrown away) to keep the connection

T = TypeVar("T")
Report = Callable[[str, dict[str, Any]], None]


def _log_warning(event: str, fields: dict[str, Any]) -> None:
    log.warning(event, **fields)


@dataclass(frozen=True)
class Retry:
    """When a failed attempt is tried again (HOTLINE_WEBHOOK_RETRY_*)."""

    first: float = 1.0
    most: float = 600.0
    give_up: float = 86400.0

    def after(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th failed attempt (1, 2, ...)."""
        return min(self.most, self.first * 2.0 ** min(attempts - 1, 60))


@dataclass
class _Worker:
    hook: Webhook
    task: asyncio.Task[None] | None = None
    sending: dict[int, asyncio.Task[None]] = field(default_factory=dict)  # delivery id -> its request
    ready: deque[outbox.Due] = field(default_factory=deque)  # claimed, waiting for a free request
    outcomes: list[outbox.Outcome] = field(default_factory=list)  # finished, not yet recorded
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: bool = False  # removed from hooks.yaml: finish what is under way, claim nothing more
    next_count: float = 0.0
    logged: float = -LOG_EVERY
    quiet: int = 0


class Deliveries:
    """The server's webhook deliveries (see the module's docstring). `target`: the data folder or
    the PostgreSQL URL, as the Recorder takes it."""

    def __init__(
        self,
        target: Path | str,
        hooks: HooksConfig,
        retry: Retry | None = None,
        report: Report | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._where: Path | str = target if is_postgres(target) else Path(target) / dbm.FILE
        self.hooks = hooks
        self.retry = retry or Retry()
        self._report = report or _log_warning
        self._clock = clock
        self._workers: dict[str, _Worker] = {}
        self._db: AnyDb | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="hotline-hooks")
        self._client: aiohttp.ClientSession | None = None
        self._db_logged = -LOG_EVERY
        self.results: dict[tuple[str, str], int] = {}  # (webhook, delivered|retried|failed|gone) -> count
        self.pending: dict[str, int] = {}  # webhook -> rows pending (counted at most every COUNT_EVERY)

    # ---- the server's side --------------------------------------------------------------------

    def start(self) -> None:
        self.configure(self.hooks)

    def configure(self, hooks: HooksConfig) -> None:
        """Webhooks of a (re)loaded hooks.yaml: new ones start, removed ones finish what is under
        way and stop, changed ones send their next requests as now written."""
        self.hooks = hooks
        wanted = {h.name: h for h in hooks.webhooks}
        for name, worker in self._workers.items():
            if name not in wanted:
                worker.stopping = True
                worker.wake.set()
        for name, hook in wanted.items():
            old = self._workers.get(name)
            if old is not None and old.task is not None and not old.task.done():
                old.hook, old.stopping = hook, False
                continue
            worker = self._workers[name] = _Worker(hook)
            worker.task = asyncio.get_running_loop().create_task(self._serve(worker))

    def wake(self) -> None:
        """New events were committed (the recorder calls this on the loop)."""
        for worker in self._workers.values():
            worker.wake.set()

    async def close(self) -> None:
        """Stop sending: requests under way are cancelled and their rows released at once."""
        workers = list(self._workers.values())
        self._workers.clear()
        # their rows stay leased unless released
        unsent = [i for w in workers for i in (*w.sending, *(d.id for d in w.ready))]
        for worker in workers:
            worker.ready.clear()  # none started any more
        for worker in workers:
            if worker.task is not None:
                worker.task.cancel()
            for task in worker.sending.values():
                task.cancel()
        await asyncio.gather(
            *(t for w in workers for t in (w.task, *w.sending.values()) if t is not None),
            return_exceptions=True,
        )
        outcomes = [o for w in workers for o in w.outcomes]
        unsent = [i for i in unsent if i not in {o.id for o in outcomes}]
        if self._db is not None and (outcomes or unsent):
            with contextlib.suppress(Exception):
                await self._in_thread(self._release, outcomes, unsent)
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._db is not None:
            await self._in_thread(self._db.close)
        self._thread.shutdown(wait=True)

    # ---- a webhook's task ---------------------------------------------------------------------

    async def _serve(self, w: _Worker) -> None:
        while True:
            try:
                if await self._round(w):
                    return
            except Exception:  # a bug here must not stop this webhook for good: log, look again later
                log.exception("webhook_worker_failed", webhook=w.hook.name)
                await _wait(w.wake, POLL)

    async def _round(self, w: _Worker) -> bool:
        """One exchange with the outbox, the requests it claimed started, then the wait for
        something to do; True when the webhook was removed and nothing of it is left under way."""
        outcomes, w.outcomes = w.outcomes, []
        free = 0 if w.stopping else MAX_IN_FLIGHT + AHEAD - len(w.sending) - len(w.ready)
        now = self._clock()
        count = now >= w.next_count
        hook = w.hook
        try:
            got = await self._in_thread(
                self._exchange, hook.name, outcomes, free, now, 2 * hook.timeout + LEASE_MARGIN, count
            )
        except Exception as exc:  # the database is unwell: keep the outcomes, look again later
            w.outcomes[:0] = outcomes
            self._db_failed(exc)
            await _wait(w.wake, POLL)
            return False
        if got.pending is not None:
            w.next_count = now + COUNT_EVERY
            self.pending[hook.name] = got.pending
        w.ready.extend(got.claimed)
        self._start(w)
        if w.stopping and not w.sending and not w.ready and not w.outcomes:
            self.pending.pop(hook.name, None)  # no longer a webhook: its gauge goes
            return True
        if w.outcomes:
            return False  # requests ended while the database answered
        wait = POLL
        if got.next_at is not None:
            wait = min(wait, max(0.0, got.next_at - self._clock()))
        w.wake.clear()
        await _wait(w.wake, wait)
        return False

    def _start(self, w: _Worker) -> None:
        """Requests for claimed rows, up to MAX_IN_FLIGHT at once."""
        loop = asyncio.get_running_loop()
        while w.ready and len(w.sending) < MAX_IN_FLIGHT:
            due = w.ready.popleft()
            w.sending[due.id] = loop.create_task(self._send(w, w.hook, due))

    async def _send(self, w: _Worker, hook: Webhook, due: outbox.Due) -> None:
        try:
            status, error = await self._post(hook, due)
            outcome, result = self._outcome(due, status, error)
            w.outcomes.append(outcome)
            self.results[(hook.name, result)] = self.results.get((hook.name, result), 0) + 1
            if result != "delivered":
                self._failed(w, hook, due, result, status, error)
        finally:
            w.sending.pop(due.id, None)
            w.wake.set()
        self._start(w)  # the next row claimed, at once

    async def _post(self, hook: Webhook, due: outbox.Due) -> tuple[int | None, str | None]:
        """(HTTP status, None) when an answer came, else (None, why not)."""
        body = due.body.encode()
        stamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "webhook-id": due.event_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign(hook.key, due.event_id, stamp, body),
        }
        try:
            async with asyncio.timeout(hook.timeout):
                async with self._session().post(
                    hook.url, data=body, headers=headers, allow_redirects=False
                ) as resp:
                    with contextlib.suppress(aiohttp.ClientError):
                        await resp.content.read(MAX_READ)
                    return resp.status, None
        except TimeoutError:
            return None, "timeout"
        except aiohttp.ClientConnectionError as exc:
            return None, f"connect: {one_line(exc)}"
        except (aiohttp.ClientError, ValueError) as exc:
            return None, f"bad answer: {one_line(exc)}"

    def _outcome(self, due: outbox.Due, status: int | None, error: str | None) -> tuple[outbox.Outcome, str]:
        now = self._clock()
        if status is not None and 200 <= status < 300:
            return outbox.Outcome(due.id, outbox.DELIVERED, now, status, None), "delivered"
        if status == 410:
            return outbox.Outcome(
                due.id, outbox.FAILED, now, status, "gone: the receiver wants no more"
            ), "gone"
        error = error or f"status {status}"
        attempts = due.attempts + 1
        if now - due.since >= self.retry.give_up:
            return outbox.Outcome(due.id, outbox.FAILED, now, status, error), "failed"
        return outbox.Outcome(
            due.id, outbox.PENDING, now + self.retry.after(attempts), status, error
        ), "retried"

    def _failed(
        self, w: _Worker, hook: Webhook, due: outbox.Due, result: str, status: int | None, error: str | None
    ) -> None:
        """webhook_failed, once per webhook a minute."""
        now = self._clock()
        if now - w.logged < LOG_EVERY:
            w.quiet += 1
            return
        w.logged = now
        fields: dict[str, Any] = {
            "webhook": hook.name,
            "url": hook.logged,  # as written in hooks.yaml: no secret
            "result": result,
            "delivery": due.id,
            "type": due.type,
            "attempts": due.attempts + 1,
        }
        if status is not None:
            fields["status"] = status
        if error is not None:
            fields["error"] = error
        if w.quiet:
            fields["not_logged"], w.quiet = w.quiet, 0
        self._report("webhook_failed", fields)

    def _db_failed(self, exc: Exception) -> None:
        now = self._clock()
        if now - self._db_logged >= LOG_EVERY:
            self._db_logged = now
            log.error("webhook_outbox_failed", error=one_line(exc))

    def _session(self) -> aiohttp.ClientSession:
        client = self._client
        if client is None:
            client = self._client = outbound_session()  # bounded per webhook (MAX_IN_FLIGHT)
        return client

    # ---- the database thread ------------------------------------------------------------------

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def _conn(self) -> AnyDb:
        db = self._db
        if db is None:
            db = self._db = dbm.connect(self._where, create=False)
            if not is_postgres(self._where):
                outbox.release_leases(db)  # this server's, from before a restart
        return db

    def _exchange(
        self, webhook: str, outcomes: list[outbox.Outcome], limit: int, now: float, lease: float, count: bool
    ) -> outbox.Round:
        return outbox.exchange(self._conn(), webhook, outcomes, limit, now, lease, count)

    def _release(self, outcomes: list[outbox.Outcome], unsent: list[int]) -> None:
        db = self._conn()
        db.begin(durable=False, writing=True)
        try:
            outbox.settle(db, outcomes, self._clock())
            outbox.release(db, unsent)
            db.commit()
        except BaseException:
            db.rollback()
            raise


async def _wait(event: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)
