"""What the desk tells an agent: one model, whatever the encoding (TCP lines here, JSON elsewhere).
Read-only by convention (not frozen, as app.menu.events explains)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, unsafe_hash=True)
class Offer:
    call_id: str
    queue: str
    waited: int
    peer: str
    context: tuple[tuple[str, str], ...]  # (key, value): ("path", "main>agent"), ("var:phone", "*******8000")


@dataclass(slots=True, unsafe_hash=True)
class Missed:
    call_id: str
    on_break: bool  # max_missed reached: the agent was put on break


@dataclass(slots=True, unsafe_hash=True)
class Ended:
    call_id: str
    by: str  # caller | agent | server


@dataclass(slots=True, unsafe_hash=True)
class CallerSaid:
    call_id: str
    text: str


@dataclass(slots=True, unsafe_hash=True)
class LoggedOut:
    """The desk logged the agent out (removed from desk.yaml at the end of their call)."""

    reason: str


AgentEvent = Offer | Missed | Ended | CallerSaid | LoggedOut
