"""The supervisor's wall board, without I/O: one snapshot of queues (today's counts, the last hour) and
agents as JSON-ready data (app/web sends it, at most once a second). The counting is app/desk/tallies.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.desk.tallies import SERVICE_SECONDS

if TYPE_CHECKING:
    from app.desk.desk import Desk


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
                "service_target": round(100 * q.config.model.service_level_target),
                "service_seconds": int(q.config.model.service_level_seconds),
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
