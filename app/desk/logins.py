"""Agent logins, once for both doors (the terminal port and the browser console): who may have a
password checked now, the check itself off the event loop, and what each outcome costs the address.

The rules (README.md "The doors", docs/agent-desk.md):

- Failures are counted per address over the last minute (a success does not reset them). The lock-out
  is decided **before** the check: an address with 5 failures is refused without a check, and an
  address may have only one check in flight, so parallel guesses get no more than 5 checks a minute
  (checking first and counting after let 300 parallel guesses through the door at once).
- At most `max_waiting` checks wait or run in all (the executor has two threads); past that, and for a
  second check from an address whose first is still running, the answer is BUSY, which is not a
  failure. A flood therefore delays a real agent's login by at most 32 checks (about a second).
- Successful logins are limited per address too (`max_successes` a minute), so the public demo
  credentials cannot be used to churn sessions.
- With HOTLINE_REDIS_URL the counts and the in-flight mark are kept in Redis (`RedisCounts`), shared by
  the replicas, so five guesses spread over replicas still lock the address out; if Redis cannot be
  reached the replica counts alone (`LocalCounts`) until it can.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import secrets
import time
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Final, Protocol

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.desk.passwords import DUMMY_HASH, verify_password

log = structlog.get_logger("hotline.desk")

MAX_FAILURES: Final = 5  # failed logins per address per WINDOW: then locked out until the window passes
MAX_SUCCESSES: Final = 60  # successful logins per address per WINDOW (an office behind one NAT logs in)
WINDOW: Final = 60.0
MAX_WAITING: Final = 32  # password checks waiting or running, all addresses together
MAX_PASSWORD: Final = 1000  # characters of a password that are checked
_TRACKED: Final = 10_000  # addresses remembered before old entries are swept


class Verdict(StrEnum):
    """What became of one login attempt."""

    OK = "ok"
    FAILED = "failed"  # wrong id or password (the same answer for both)
    LOCKED = "locked"  # too many failures from this address: refused without a check, or this was the last
    BUSY = "busy"  # too many checks at once, or one already in flight for this address: try again
    THROTTLED = "throttled"  # too many successful logins from this address this minute


class Account(Protocol):
    """An agent of desk.yaml, as far as logging in goes."""

    @property
    def password_hash(self) -> str: ...


class Counts(Protocol):
    """Where the per-address counts live: this process, or Redis shared by the replicas."""

    async def reserve(self, address: str) -> Verdict:
        """OK and the address's one in-flight mark taken, or why no check may start now."""

    async def settle(self, address: str, ok: bool) -> bool:
        """Record the outcome and release the mark; True when the address is now locked out."""


def _recent(times: dict[str, collections.deque[float]], address: str, now: float) -> int:
    """How many of the address's times fall in the last WINDOW seconds (older ones are dropped)."""
    q = times.get(address)
    if q is None:
        return 0
    while q and now - q[0] >= WINDOW:
        q.popleft()
    if not q:
        del times[address]
        return 0
    return len(q)


class LocalCounts:
    """The counts in this process's memory (one server, or a replica whose Redis is away)."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self.clock = clock
        self.failures: dict[str, collections.deque[float]] = {}
        self.successes: dict[str, collections.deque[float]] = {}
        self.in_flight: set[str] = set()

    async def reserve(self, address: str) -> Verdict:
        return self.reserve_now(address)

    def reserve_now(self, address: str) -> Verdict:
        now = self.clock()
        if _recent(self.failures, address, now) >= MAX_FAILURES:
            return Verdict.LOCKED
        if _recent(self.successes, address, now) >= MAX_SUCCESSES:
            return Verdict.THROTTLED
        if address in self.in_flight:
            return Verdict.BUSY
        self.in_flight.add(address)
        return Verdict.OK

    async def settle(self, address: str, ok: bool) -> bool:
        return self.settle_now(address, ok)

    def settle_now(self, address: str, ok: bool) -> bool:
        now = self.clock()
        self.in_flight.discard(address)
        times = self.successes if ok else self.failures
        if len(times) >= _TRACKED:  # bounded under a flood from many addresses
            for old in list(times):
                _recent(times, old, now)
        times.setdefault(address, collections.deque()).append(now)
        return not ok and _recent(self.failures, address, now) >= MAX_FAILURES


# KEYS: failures (sorted set of times), successes (likewise), the in-flight mark.
# Redis's own clock, so that replicas whose clocks differ still count one window.
_RESERVE: Final = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local since = now - tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', since)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 'locked' end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', since)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return 'throttled' end
if not redis.call('SET', KEYS[3], ARGV[4], 'NX', 'PX', ARGV[5]) then return 'busy' end
return 'ok'
"""
_SETTLE: Final = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('DEL', KEYS[3]) end
local key = KEYS[1]
if ARGV[2] == '1' then key = KEYS[2] end
redis.call('ZADD', key, now, ARGV[1])
redis.call('PEXPIRE', key, ARGV[3])
if ARGV[2] == '1' then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 1 end
return 0
"""
IN_FLIGHT_MS: Final = 10_000  # a replica that dies mid-check frees its address's mark after this


def _keys(address: str) -> list[str]:
    tag = f"{{login:{address}}}"  # one hash slot for an address's keys
    return [f"hotline:{tag}:failures", f"hotline:{tag}:successes", f"hotline:{tag}:checking"]


class RedisCounts:
    """The counts in Redis, shared by every replica; this process's own counts when Redis is away."""

    def __init__(self, url: str) -> None:
        self.redis: Redis = Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=1.0, socket_timeout=1.0
        )
        self._reserve = self.redis.register_script(_RESERVE)
        self._settle = self.redis.register_script(_SETTLE)
        self.local = LocalCounts()
        self.tokens: dict[str, str | None] = {}  # address -> our mark in Redis (None: counted locally)
        self.down = False

    async def reserve(self, address: str) -> Verdict:
        token = secrets.token_hex(8)
        try:
            args: list[str | int] = [int(WINDOW * 1000), MAX_FAILURES, MAX_SUCCESSES, token, IN_FLIGHT_MS]
            verdict = Verdict(await self._reserve(keys=_keys(address), args=args))
        except (RedisError, OSError, ValueError) as exc:
            self._away(exc)
            verdict = self.local.reserve_now(address)
            if verdict is Verdict.OK:
                self.tokens[address] = None
            return verdict
        self._back()
        if verdict is Verdict.OK:
            self.tokens[address] = token
        return verdict

    async def settle(self, address: str, ok: bool) -> bool:
        token = self.tokens.pop(address, None)
        if token is None:
            return self.local.settle_now(address, ok)
        try:
            args: list[str | int] = [token, int(ok), int(WINDOW * 1000), MAX_FAILURES]
            locked = bool(await self._settle(keys=_keys(address), args=args))
        except (RedisError, OSError) as exc:
            self._away(exc)
            return self.local.settle_now(address, ok)
        self._back()
        return locked

    def _away(self, exc: BaseException) -> None:
        if not self.down:
            self.down = True
            log.warning("login_counts_local", reason=type(exc).__name__)

    def _back(self) -> None:
        if self.down:
            self.down = False
            log.info("login_counts_shared")

    async def close(self) -> None:
        await self.redis.aclose()


class LoginGate:
    """One login attempt at a time per address, a bounded queue of password checks, the counts."""

    def __init__(
        self,
        counts: Counts,
        executor: concurrent.futures.Executor | None = None,
        max_waiting: int = MAX_WAITING,
    ) -> None:
        self.counts = counts
        self.executor = executor or concurrent.futures.ThreadPoolExecutor(
            max_workers=2, thread_name_prefix="hotline-login"
        )
        self.max_waiting = max_waiting
        self.waiting = 0
        self.failed_total = 0
        self.refused: dict[str, int] = {}  # attempts refused without a check, by verdict

    async def check(
        self, accounts: Mapping[str, Account], address: str, agent_id: str, password: str, via: str
    ) -> Verdict:
        """A login to either door: `agent_id`'s password checked against desk.yaml's `accounts`
        (an unknown id fails like a wrong password); an account removed or changed by a reload
        while the check ran fails too."""
        account = accounts.get(agent_id) if len(agent_id) <= 32 else None
        verdict = await self.attempt(address, account.password_hash if account else None, password, via)
        if verdict is Verdict.OK and accounts.get(agent_id) is not account:
            return Verdict.FAILED
        return verdict

    async def attempt(self, address: str, stored: str | None, password: str, via: str) -> Verdict:
        """Check `password` against `stored` (None: an unknown id, which fails in the same time).
        `via` names the door in the `login_failed` log line."""
        if self.waiting >= self.max_waiting:
            return self._refused(Verdict.BUSY)
        self.waiting += 1
        try:
            verdict = await self.counts.reserve(address)
            if verdict is not Verdict.OK:
                return self._refused(verdict)
            ok = False
            try:
                loop = asyncio.get_running_loop()
                check = loop.run_in_executor(
                    self.executor, verify_password, password[:MAX_PASSWORD], stored or DUMMY_HASH
                )
                ok = await check and stored is not None
            finally:  # a cancelled attempt (the server stopping) still frees the address's mark
                locked = await asyncio.shield(self.counts.settle(address, ok))
        finally:
            self.waiting -= 1
        if ok:
            return Verdict.OK
        self.failed_total += 1
        log.warning("login_failed", peer=address, via=via)  # never the id or the password
        return Verdict.LOCKED if locked else Verdict.FAILED

    def _refused(self, verdict: Verdict) -> Verdict:
        self.refused[verdict] = self.refused.get(verdict, 0) + 1
        return verdict

    async def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        closer = getattr(self.counts, "close", None)
        if closer is not None:
            with contextlib.suppress(TimeoutError, RedisError, OSError):
                await asyncio.wait_for(closer(), 2.0)
