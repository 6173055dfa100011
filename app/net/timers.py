"""One loop timer for every session: a timer wheel of 50 ms buckets, instead of a TimerHandle each.

A TimerHandle costs about 600 bytes per idle caller; here a waiting session costs one slot in a
bucket's list (8 bytes). Deadlines are in `time.time()` seconds, like the engine's, rounded up to the
next 50 ms tick. Buckets are never searched or cleaned early: when a bucket's tick comes, each
session in it is called only if the deadline it is waiting for still falls in that tick (it may have
moved, or the session may have closed); stale slots are simply dropped with the bucket.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from typing import Protocol

TICK = 0.05  # seconds per bucket


class Sleeper(Protocol):
    _timer_due: float

    def timer_fired(self, due: float) -> None: ...

    @property
    def alive(self) -> bool: ...


def tick_of(due: float) -> int:
    return math.ceil(due / TICK)


class Timers:
    """The shared timer: `schedule(due, session)` calls `session.timer_fired(due)` at `due` (±50 ms)."""

    def __init__(self) -> None:
        self.buckets: dict[int, list[Sleeper]] = {}
        self.ticks: list[int] = []  # a heap of the ticks that have a bucket
        self.handle: asyncio.TimerHandle | None = None
        self.handle_tick = 0
        self.stale = 0

    def schedule(self, due: float, session: Sleeper) -> None:
        tick = tick_of(due)
        bucket = self.buckets.get(tick)
        if bucket is not None:
            bucket.append(session)
            return
        self.buckets[tick] = [session]
        heapq.heappush(self.ticks, tick)
        if self.handle is None or tick < self.handle_tick:
            self._arm(tick)

    def forget(self) -> None:
        """A session with a pending slot closed. Its slot goes with its bucket; but when closed
        sessions pile up (a storm of short connections), sweep them out so they are not kept alive."""
        self.stale += 1
        if self.stale > 1000 and self.stale * 2 > self.slots():
            for tick, bucket in list(self.buckets.items()):
                live = [s for s in bucket if s.alive]
                if live:
                    self.buckets[tick] = live
                else:
                    del self.buckets[tick]  # its tick stays in the heap and finds no bucket: harmless
            self.stale = 0

    def slots(self) -> int:
        return sum(map(len, self.buckets.values()))

    def _arm(self, tick: int) -> None:
        if self.handle is not None:
            self.handle.cancel()
        self.handle_tick = tick
        self.handle = asyncio.get_running_loop().call_later(max(0.0, tick * TICK - time.time()), self._fire)

    def _fire(self) -> None:
        self.handle = None
        now_tick = tick_of(time.time())
        ticks = self.ticks
        while ticks and ticks[0] <= now_tick:
            tick = heapq.heappop(ticks)
            for session in self.buckets.pop(tick, ()):
                due = session._timer_due
                if due and tick_of(due) == tick:
                    session.timer_fired(due)
        if ticks:
            self._arm(ticks[0])

    def close(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        self.buckets.clear()
        self.ticks.clear()
