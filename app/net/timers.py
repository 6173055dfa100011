"""One loop timer for every session: a heap of (due, seq, session), instead of a TimerHandle each.

A TimerHandle costs about 600 bytes per idle caller; a heap entry about 100. Deadlines are in
`time.time()` seconds, like the engine's. Entries are never removed early: a session whose deadline
moved ignores an entry that no longer matches (`due != session._timer_due`), and entries of closed
sessions are dropped when they fire, or all at once when they outnumber the live ones.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Sleeper(Protocol):
    _timer_due: float

    def timer_fired(self, due: float) -> None: ...

    @property
    def alive(self) -> bool: ...


class Timers:
    """The shared timer: `schedule(due, session)` calls `session.timer_fired(due)` at `due`."""

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, Sleeper]] = []
        self.seq = itertools.count()
        self.handle: asyncio.TimerHandle | None = None
        self.handle_due = float("inf")
        self.stale = 0

    def schedule(self, due: float, session: Sleeper) -> None:
        heapq.heappush(self.heap, (due, next(self.seq), session))
        if due < self.handle_due:
            self._arm(due)

    def forget(self) -> None:
        """A session with an entry closed: compact the heap when most entries are dead."""
        self.stale += 1
        if self.stale > 1000 and self.stale * 2 > len(self.heap):
            self.heap = [e for e in self.heap if e[2].alive and e[2]._timer_due == e[0]]
            heapq.heapify(self.heap)
            self.stale = 0

    def _arm(self, due: float) -> None:
        if self.handle is not None:
            self.handle.cancel()
        self.handle_due = due
        self.handle = asyncio.get_running_loop().call_later(max(0.0, due - time.time()), self._fire)

    def _fire(self) -> None:
        self.handle = None
        self.handle_due = float("inf")
        heap = self.heap
        now = time.time()
        while heap and heap[0][0] <= now:
            due, _, session = heapq.heappop(heap)
            if session._timer_due == due:
                session.timer_fired(due)
        if heap:
            self._arm(heap[0][0])

    def close(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        self.heap.clear()
