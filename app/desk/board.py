"""The supervisor's wall board, without I/O: today's counts per queue, the last hour minute by minute,
and one snapshot of queues and agents as JSON-ready data (app/web sends it, at most once a second).

Today is the server's local day (TZ): counts start again at local midnight. Service level is the
share of today's callers answered within SERVICE_SECONDS of all answered, abandoned or timed out
today (callers still waiting do not count yet), in whole percent; None before the first such caller.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from app.desk.core import Agent, Desk

SERVICE_SECONDS: Final = 20.0
MINUTES: Final = 60  # the chart's span


class Today:
    """One queue's counts since local midnight."""

    __slots__ = ("abandoned", "answered", "ends", "timed_out", "within")

    def __init__(self) -> None:
        self.answered = 0
        self.abandoned = 0
        self.timed_out = 0  # waited max_wait
        self.within = 0  # answered within SERVICE_SECONDS
        self.ends = 0.0  # when today ends (local midnight), as a timestamp

    def _roll(self, now: float) -> None:
        if now >= self.ends:
            self.answered = self.abandoned = self.timed_out = self.within = 0
            day = dt.datetime.fromtimestamp(now).date() + dt.timedelta(days=1)
            self.ends = time.mktime(day.timetuple())

    def answer(self, now: float, waited: float) -> None:
        self._roll(now)
        self.answered += 1
        self.within += waited <= SERVICE_SECONDS

    def abandon(self, now: float) -> None:
        self._roll(now)
        self.abandoned += 1

    def time_out(self, now: float) -> None:
        self._roll(now)
        self.timed_out += 1

    def counts(self, now: float) -> tuple[int, int, int | None]:
        """(answered, abandoned, service level in percent or None)."""
        self._roll(now)
        total = self.answered + self.abandoned + self.timed_out
        level = round(100 * self.within / total) if total else None
        return self.answered, self.abandoned, level


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


def snapshot(desk: Desk, now: float) -> dict[str, Any]:
    """What a board shows: queues (with today's counts and the last hour) and agents."""
    queues = []
    for name, q in desk.queues.items():
        waiting, longest, available, busy = desk.queue_summary(name, now)
        answered, abandoned, level = q.today.counts(now)
        queues.append(
            {
                "queue": name,
                "title": q.config.title,
                "waiting": waiting,
                "longest": longest,
                "answered": answered,
                "abandoned": abandoned,
                "service_level": level,
                "available": available,
                "busy": busy,
                "logged_in": desk.logged_in(name),
                "series": q.timeline.series(now),
            }
        )
    return {
        "type": "board",
        "now": int(now),
        "service_seconds": int(SERVICE_SECONDS),
        "queues": queues,
        "agents": desk.agent_rows(now),
    }


def agent_rows(agents: Iterable[Agent], now: float) -> list[dict[str, Any]]:
    """The board's table of agents, by id."""
    return [
        {
            "id": a.id,
            "name": a.name,
            "role": a.role,
            "status": a.status,
            "state": a.state,
            "since": int(now - a.state_since),
            "call": _call_id(a),
            "queues": list(a.queues),
        }
        for a in sorted(agents, key=lambda a: a.id)
    ]


def _call_id(agent: Agent) -> str | None:
    call = agent.call or agent.offer
    return call.id if call is not None else None
