"""What the desk counts, without I/O and without the desk: histograms of seconds (metrics), today's
counts per queue and the last hour minute by minute (the board). Nothing here imports the desk, so
the desk, the board, the metrics and the reports can all use it.

Today is the server's day (HOTLINE_TIMEZONE, app/zone.py): counts start again at its midnight.
Service level is the share of today's callers answered within SERVICE_SECONDS of all answered,
abandoned or timed out today (callers still waiting do not count yet), in whole percent; None
before the first such caller.
"""

from __future__ import annotations

from typing import Final

from app import zone

DURATION_BUCKETS: Final = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
SERVICE_SECONDS: Final = 20.0  # a queue's default service_level_seconds
SHORT_ABANDON: Final = 5.0  # a queue's default short_abandon
MINUTES: Final = 60  # the chart's span


class Histogram:
    """Seconds in fixed buckets (upper bounds): an int per bucket and a sum, no locks."""

    __slots__ = ("bounds", "counts", "total", "total_seconds")

    def __init__(self, bounds: tuple[float, ...] = DURATION_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0
        self.total_seconds = 0.0

    def observe(self, seconds: float) -> None:
        bounds = self.bounds
        i = 0
        while i < len(bounds) and seconds > bounds[i]:
            i += 1
        self.counts[i] += 1
        self.total += 1
        self.total_seconds += seconds

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative counts per upper bound, as Prometheus wants them."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append((str(bound) if bound != float("inf") else "+Inf", running))
        return out


class Today:
    """One queue's counts since the server's midnight. A caller who hung up within `short` seconds
    is a short abandon: counted as abandoned, but left out of the service level (they never gave
    the queue a chance), as the queue's `short_abandon` says."""

    __slots__ = ("abandoned", "answered", "ends", "seconds", "short", "shorts", "timed_out", "within")

    def __init__(self, seconds: float = SERVICE_SECONDS, short: float = SHORT_ABANDON) -> None:
        self.seconds = seconds  # the queue's service_level_seconds
        self.short = short  # the queue's short_abandon
        self.answered = 0
        self.abandoned = 0
        self.shorts = 0  # of the abandoned, within `short`
        self.timed_out = 0  # waited max_wait
        self.within = 0  # answered within `seconds`
        self.ends = 0.0  # when today ends (the server's midnight), as a timestamp

    def _roll(self, now: float) -> None:
        if now >= self.ends:
            self.answered = self.abandoned = self.shorts = self.timed_out = self.within = 0
            self.ends = zone.next_midnight(now)

    def answer(self, now: float, waited: float) -> None:
        self._roll(now)
        self.answered += 1
        self.within += waited <= self.seconds

    def abandon(self, now: float, waited: float = float("inf")) -> None:
        self._roll(now)
        self.abandoned += 1
        self.shorts += waited < self.short

    def time_out(self, now: float) -> None:
        self._roll(now)
        self.timed_out += 1

    def counts(self, now: float) -> tuple[int, int, int | None]:
        """(answered, abandoned, service level in percent or None)."""
        self._roll(now)
        total = self.answered + self.abandoned - self.shorts + self.timed_out
        level = round(100 * self.within / total) if total else None
        return self.answered, self.abandoned, level


class Scores:
    """Satisfaction scores (1-5) since the server's midnight: one agent's, for the board's 满意度."""

    __slots__ = ("count", "ends", "total")

    def __init__(self) -> None:
        self.total = 0
        self.count = 0
        self.ends = 0.0

    def add(self, now: float, score: int) -> None:
        self.average(now)
        self.total += score
        self.count += 1

    def average(self, now: float) -> float | None:
        if now >= self.ends:
            self.total = self.count = 0
            self.ends = zone.next_midnight(now)
        return round(self.total / self.count, 2) if self.count else None


class Timeline:
    """The last MINUTES minutes of one queue: the most callers waiting at once, and calls answered."""

    __slots__ = ("answered", "minute", "waiting")

    def __init__(self) -> None:
        self.minute = [-1] * MINUTES  # which minute (since the epoch) each slot holds
        self.waiting = [0] * MINUTES
        self.answered = [0] * MINUTES

    def _slot(self, now: float) -> int:
        minute = int(now // 60)
        i = minute % MINUTES
        if self.minute[i] != minute:
            self.minute[i], self.waiting[i], self.answered[i] = minute, 0, 0
        return i

    def sample(self, now: float, waiting: int) -> None:
        i = self._slot(now)
        self.waiting[i] = max(self.waiting[i], waiting)

    def answer(self, now: float) -> None:
        self.answered[self._slot(now)] += 1

    def series(self, now: float) -> list[tuple[int, int, int]]:
        """(minute start, waiting, answered) for each of the last MINUTES minutes, oldest first."""
        last = int(now // 60)
        out = []
        for minute in range(last - MINUTES + 1, last + 1):
            i = minute % MINUTES
            held = self.minute[i] == minute
            out.append((minute * 60, self.waiting[i] if held else 0, self.answered[i] if held else 0))
        return out
