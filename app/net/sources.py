"""HTTP look-ups: what a `lookup` node with a `source:` asks of a backend, over one pooled client.

How this works: a session's engine emits `Lookup` (the url and body rendered from its variables,
and the compiled Source of the session's own menu, so a reload never moves a look-up under way to
another backend). The session hands it to the server's `Lookups.start` with a callback; the answer,
a `LookupResult`, comes back through that callback and into the session's coroutine in order with
the caller's lines (tcp.py `_deliver`), as a ticket's does. What needs no request is answered at
once, inside `start`: a cached answer, the breaker open, the source's `max_in_flight` reached. The
rest run as one Task per look-up, kept by owner (not in a slot of every session), so that a caller
who hangs up cancels theirs (`cancel`), and the server's shutdown cancels what is left (`close`).

The wait prompt ("正在为您查询,请稍候") is the engine's deadline while it waits (Session.look_up):
the session's timer wheel already calls the engine at its deadline, so this module keeps no timer,
and `hotline chat` and `hotline test` show the prompt from the same engine.

Per source, per distinct compiled Source (a reload that leaves a source as it was keeps its state;
one that changes it starts afresh while look-ups under way finish on the old one):
- `max_in_flight` requests at once, past it `error` at once: a slow or dead backend holds up only
  the callers who asked it, and never more than that many sockets;
- `timeout` bounds the whole look-up, retries and their backoff included: no caller waits longer;
- GET is retried `retries` times after a connect error or 502/503/504, 100 ms apart; POST never;
- `cache`: found and missing answers kept per request (method, url, body) for that long, at most
  CACHE_ENTRIES per source; errors never;
- the breaker: after `failures` failed look-ups in a row, `error` at once for `open_for`; then one
  look-up is let through (half-open), and its success closes the breaker, its failure opens it again.

A failure is a timeout, a connect error, a status other than 2xx and 404, a body that is not JSON,
larger than MAX_ANSWER or not an object where the object is expected. `lookup_failed` is logged
once per source and reason a minute (with how many were not logged since), with the url as menu.yaml
writes it, without query string or user: no secret, no caller's data; headers are never logged.
Metrics read `seconds` (per source, the requests sent) and `results` ((source, found|missing|error|
timeout|breaker) -> count).

The client sends no cookies between callers (DummyCookieJar), follows no redirects (a 3xx is an
error: an Authorization header must not follow one), asks for no compression (a 256 KiB bound on
what is read is then a bound on memory) and goes straight to the backend (HTTP_PROXY is not read).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import structlog
from yarl import URL

from app import __version__
from app.desk.tallies import Histogram
from app.menu.events import Lookup, LookupResult
from app.menu.sources import ERROR, MAX_ANSWER, MISSING, Source, parse_answer

log = structlog.get_logger("hotline.lookups")

SECONDS_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RETRY_AFTER: Final = 0.1  # seconds between a GET's attempts
RETRY_STATUS: Final = frozenset({502, 503, 504})
CACHE_ENTRIES: Final = 10_000  # answers kept per source
LOG_EVERY: Final = 60.0  # seconds between two lookup_failed lines of one source and reason
STATES_KEPT: Final = 64  # sources of old menus whose state is kept while nothing is in flight

Report = Callable[[str, dict[str, Any]], None]
Deliver = Callable[[LookupResult], None]


def _log_info(event: str, fields: dict[str, Any]) -> None:
    log.info(event, **fields)


def outbound_session(headers: dict[str, str] | None = None) -> aiohttp.ClientSession:
    """The HTTP client of the server's outbound requests (look-ups here, webhooks in app/net/hooks.py):
    no pool-wide connection limit (each user bounds its own), timeouts set per request, no cookies
    kept (one caller's are not another's), bodies as sent (no decompression), `headers` added to the
    User-Agent and Accept-Encoding every request carries."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=60),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=None, sock_read=None),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        headers={"User-Agent": f"hotline/{__version__}", "Accept-Encoding": "identity", **(headers or {})},
    )


@dataclass
class _State:
    """One source's breaker, in-flight count and cache."""

    in_flight: int = 0
    failures: int = 0  # failed look-ups in a row
    open_until: float = 0.0  # the breaker is open until then (0: closed)
    trial: bool = False  # half-open: one look-up is through, the others are refused
    cache: dict[tuple[str, str, str], tuple[float, LookupResult]] = field(default_factory=dict)


class Lookups:
    """The server's look-ups: one pooled aiohttp client, each source's limits, the metrics' counts."""

    def __init__(self, report: Report | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._report = report or _log_info
        self._clock = clock
        self._client: aiohttp.ClientSession | None = None
        self._states: dict[Source, _State] = {}
        self._tasks: dict[object, asyncio.Task[None]] = {}  # owner (a session) -> its look-up
        self._logged: dict[tuple[str, str], float] = {}  # (source, reason) -> when last logged
        self._quiet: dict[tuple[str, str], int] = {}  # (source, reason) -> not logged since
        self.seconds: dict[str, Histogram] = {}  # source -> how long its requests took
        self.results: dict[tuple[str, str], int] = {}  # (source, result) -> look-ups

    # ---- what sessions use ------------------------------------------------------------------

    def start(self, owner: object, lookup: Lookup, deliver: Deliver) -> None:
        """Begin `owner`'s look-up; `deliver` gets its answer (at once when no request is needed)."""
        state = self._state(lookup.source)
        answer = self._admit(state, lookup)
        if answer is not None:
            deliver(answer)
            return
        old = self._tasks.pop(owner, None)
        if old is not None:  # cannot happen (an engine waits for one answer at a time); be safe
            old.cancel()
        task = asyncio.get_running_loop().create_task(self._run(owner, state, lookup, deliver))
        self._tasks[owner] = task

    def cancel(self, owner: object) -> None:
        """`owner` hung up: their look-up, if one is under way, is cancelled (its socket closed)."""
        if self._tasks:
            task = self._tasks.pop(owner, None)
            if task is not None:
                task.cancel()

    @property
    def in_flight(self) -> int:
        """Requests under way, all sources together."""
        return sum(s.in_flight for s in self._states.values())

    async def fetch(self, lookup: Lookup) -> LookupResult:
        """One look-up to its end (the offline tools' way; sessions use `start`)."""
        state = self._state(lookup.source)
        answer = self._admit(state, lookup)
        if answer is not None:
            return answer
        try:
            return await self._request(state, lookup)
        finally:
            state.in_flight -= 1

    async def close(self) -> None:
        """Cancel every look-up under way and close the client (the server's shutdown)."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.close()
            self._client = None

    # ---- inside -----------------------------------------------------------------------------

    async def _run(self, owner: object, state: _State, lookup: Lookup, deliver: Deliver) -> None:
        try:
            answer = await self._request(state, lookup)
        except Exception:  # a bug here must still let the caller go on: the node's `error` way
            log.exception("lookup_crashed", source=lookup.source.name)
            answer = LookupResult(ERROR, None, "internal")
        finally:
            state.in_flight -= 1
            if self._tasks.get(owner) is asyncio.current_task():
                del self._tasks[owner]
        deliver(answer)

    def _state(self, source: Source) -> _State:
        state = self._states.get(source)
        if state is None:
            if len(self._states) >= STATES_KEPT:  # sources of menus long reloaded away
                for old in [s for s, st in self._states.items() if not st.in_flight]:
                    del self._states[old]
            state = self._states[source] = _State()
        return state

    def _admit(self, state: _State, lookup: Lookup) -> LookupResult | None:
        """The answer a look-up gets without a request (cache, breaker, in-flight bound), or None:
        then it is counted in flight and must be sent."""
        source = lookup.source
        now = self._clock()
        if source.cache:
            kept = state.cache.get(_cache_key(lookup))
            if kept is not None:
                if kept[0] > now:
                    self._count(source.name, kept[1].outcome)
                    return kept[1]
                del state.cache[_cache_key(lookup)]
        if state.open_until:
            if now < state.open_until or state.trial:
                return self._refused(lookup, "breaker", "breaker")
            state.trial = True  # half-open: this one goes through
        if state.in_flight >= source.max_in_flight:
            state.trial = False
            return self._refused(lookup, "max_in_flight", ERROR)
        state.in_flight += 1
        return None

    def _refused(self, lookup: Lookup, reason: str, result: str) -> LookupResult:
        self._count(lookup.source.name, result)
        self._failed(lookup, reason, 0.0)
        return LookupResult(ERROR, None, reason)

    async def _request(self, state: _State, lookup: Lookup) -> LookupResult:
        """Send the look-up (with its retries) within its timeout; settle the breaker and cache."""
        source = lookup.source
        started = self._clock()
        status = 0
        try:
            async with asyncio.timeout(source.timeout):
                outcome, record, reason, status = await self._attempts(lookup)
        except TimeoutError:
            outcome, record, reason = ERROR, None, "timeout"
        except asyncio.CancelledError:
            state.trial = False  # the caller hung up: no verdict on the backend
            raise
        seconds = self._clock() - started
        hist = self.seconds.get(source.name)
        if hist is None:
            hist = self.seconds[source.name] = Histogram(SECONDS_BUCKETS)
        hist.observe(seconds)
        answer = LookupResult(outcome, record, reason, seconds)
        self._count(source.name, "timeout" if reason == "timeout" else outcome)
        if outcome == ERROR:
            state.failures += 1
            if state.trial or state.failures >= source.failures:
                state.open_until = self._clock() + source.open_for
            self._failed(lookup, reason, seconds, status)
        else:
            state.failures = 0
            state.open_until = 0.0
            if source.cache:
                cache = state.cache
                if len(cache) >= CACHE_ENTRIES:
                    del cache[next(iter(cache))]  # the oldest: kept in the order they were stored
                cache[_cache_key(lookup)] = (self._clock() + source.cache, answer)
        state.trial = False
        return answer

    async def _attempts(self, lookup: Lookup) -> tuple[str, dict[str, str] | None, str, int]:
        """(outcome, record, reason, status) of the first attempt that need not be repeated."""
        source = lookup.source
        tries = 1 + (source.retries if source.method == "GET" else 0)
        client = self._session()
        url = URL(lookup.url, encoded=True)  # variables were URL-encoded when it was rendered
        headers = dict(source.headers)
        for attempt in range(tries):
            last = attempt == tries - 1
            if attempt:
                await asyncio.sleep(RETRY_AFTER)
            try:
                async with client.request(
                    source.method, url, headers=headers, json=lookup.body, allow_redirects=False
                ) as resp:
                    status = resp.status
                    if status in RETRY_STATUS and not last:
                        continue
                    if status == 404:
                        return MISSING, None, "not_found", status
                    if not 200 <= status < 300:
                        return ERROR, None, f"status_{status}", status
                    if resp.content_length is not None and resp.content_length > MAX_ANSWER:
                        return ERROR, None, "too_large", status
                    body = bytearray()
                    async for chunk in resp.content.iter_any():
                        body += chunk
                        if len(body) > MAX_ANSWER:
                            return ERROR, None, "too_large", status
                    outcome, record, reason = parse_answer(bytes(body), source.result)
                    return outcome, record, reason, status
            except aiohttp.ClientConnectionError:
                if not last:
                    continue
                return ERROR, None, "connect", 0
            except (aiohttp.ClientError, ValueError):  # a malformed answer, an unusable header value
                return ERROR, None, "bad_request_or_answer", 0
        raise AssertionError("unreachable: the last attempt returns")  # pragma: no cover

    def _session(self) -> aiohttp.ClientSession:
        client = self._client
        if client is None:
            client = self._client = outbound_session({"Accept": "application/json"})
        return client

    def _count(self, source: str, result: str) -> None:
        key = (source, result)
        self.results[key] = self.results.get(key, 0) + 1

    def _failed(self, lookup: Lookup, reason: str, seconds: float, status: int = 0) -> None:
        """lookup_failed, once per source and reason a minute."""
        source = lookup.source
        key = (source.name, reason)
        now = self._clock()
        last = self._logged.get(key)
        if last is not None and now - last < LOG_EVERY:
            self._quiet[key] = self._quiet.get(key, 0) + 1
            return
        self._logged[key] = now
        fields: dict[str, Any] = {
            "source": source.name,
            "reason": reason,
            "latency": round(seconds, 3),
            "url": source.logged,  # as written in menu.yaml: no caller's data, no secret
            "method": source.method,
        }
        if status:
            fields["status"] = status
        quiet = self._quiet.pop(key, 0)
        if quiet:
            fields["not_logged"] = quiet  # failures of this source and reason since the last line
        self._report("lookup_failed", fields)


def _cache_key(lookup: Lookup) -> tuple[str, str, str]:
    body = "" if lookup.body is None else repr(sorted(lookup.body.items()))
    return lookup.source.method, lookup.url, body


class Blocking:
    """Look-ups for the offline tools (`hotline chat`, `hotline test`): each one run to its end on a
    private event loop, which keeps the pooled client between look-ups."""

    def __init__(self, report: Report | None = None) -> None:
        self._lookups = Lookups(report)
        self._runner: asyncio.Runner | None = None

    def fetch(self, lookup: Lookup, slow_after: float | None, slow: Callable[[], None]) -> LookupResult:
        """The answer; `slow()` is called first, once, if it takes longer than `slow_after` seconds."""
        if self._runner is None:
            self._runner = asyncio.Runner()
        return self._runner.run(self._fetch(lookup, slow_after, slow))

    async def _fetch(
        self, lookup: Lookup, slow_after: float | None, slow: Callable[[], None]
    ) -> LookupResult:
        task = asyncio.ensure_future(self._lookups.fetch(lookup))
        if slow_after is not None:
            done, _ = await asyncio.wait({task}, timeout=max(0.0, slow_after))
            if not done:
                slow()
        return await task

    def close(self) -> None:
        if self._runner is not None:
            self._runner.run(self._lookups.close())
            self._runner.close()
            self._runner = None
