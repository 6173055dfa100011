"""One ordered, pipelined command stream: every Redis command of a replica but the blocking read, in
the order they were asked for, one round trip per turn of the event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from app.desk.redis.scripts import SCRIPTS, SHA

log = structlog.get_logger("hotline.desk")

Done = Callable[[Any], None]


class Commands:
    """Every Redis command of this replica but the blocking read, in the order they were asked for,
    sent as one pipeline per turn of the event loop (so a burst of joins costs one round trip). A
    command's answer, or the exception that stopped it, goes to its `done` callback."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.pending: list[tuple[tuple[Any, ...], Done | None]] = []
        self.wake = asyncio.Event()
        self.idle = asyncio.Event()  # nothing queued, nothing in flight
        self.loaded = False  # the scripts are in Redis's script cache (as far as we know)
        self.sent = 0  # commands, for the metrics
        self.failed = 0

    def command(self, *args: Any, done: Done | None = None) -> None:
        self.pending.append((args, done))
        self.wake.set()
        self.idle.clear()

    async def drained(self, timeout: float = 2.0) -> None:
        """Wait until every command asked for so far has had its answer (or `timeout` passed)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.idle.wait(), timeout)

    def script(self, body: str, keys: list[str], args: list[Any], done: Done | None = None) -> None:
        self.command("EVALSHA", SHA[body], len(keys), *keys, *args, done=done)

    async def run(self) -> None:
        while True:
            self.idle.set()
            await self.wake.wait()
            self.idle.clear()
            self.wake.clear()
            while self.pending:
                batch, self.pending = self.pending, []
                results = await self._send([args for args, _ in batch])
                for (_, done), result in zip(batch, results, strict=True):
                    if done is not None:
                        try:
                            done(result)
                        except Exception:  # one callback's bug must not stop the others
                            log.exception("desk_shared_callback_failed")

    async def _send(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """One pipeline, in order. The scripts are loaded at its head the first time and after any
        failure (a restarted Redis has forgotten them): re-running a script that met NOSCRIPT after
        the rest of its batch would put it out of order (an ACCEPT after the same call's HDEL)."""
        self.sent += len(commands)
        load = [] if self.loaded else [("SCRIPT", "LOAD", body) for body in SCRIPTS]
        try:
            results = (await self._pipeline(load + commands))[len(load) :]
            self.loaded = True
            missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
            if missing:  # flushed meanwhile (SCRIPT FLUSH): run those with their text, and reload
                self.loaded = False
                again = await self._pipeline([_eval(commands[i]) for i in missing])
                for i, r in zip(missing, again, strict=True):
                    results[i] = r
        except (RedisError, OSError) as exc:
            self.loaded = False
            results = [exc] * len(commands)
        self.failed += sum(1 for r in results if isinstance(r, Exception))
        return results

    async def _pipeline(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        pipe = self.redis.pipeline(transaction=False)
        for args in commands:
            pipe.execute_command(*args)
        return list(await pipe.execute(raise_on_error=False))


_BY_SHA = {sha: body for body, sha in SHA.items()}


def _eval(args: tuple[Any, ...]) -> tuple[Any, ...]:
    if args[0] == "EVALSHA":
        return ("EVAL", _BY_SHA[args[1]], *args[2:])
    return args
