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
class Status:
    """The agent's status or state changed (by a command, or by the desk on its own: an offer, the
    caller hanging up, wrap-up ending, a missed offer). Pages show it; terminal agents get no line
    for it (the protocol's own lines, OK ready, MISSED, ENDED ..., already say what happened)."""

    status: str  # on_break | available
    state: str  # idle | offered | in_call | wrap_up


@dataclass(slots=True, unsafe_hash=True)
class LoggedOut:
    """The desk logged the agent out: removed from desk.yaml (at the end of their call), or, with
    replicas, already logged in on another one."""

    reason: str  # removed | elsewhere


AgentEvent = Offer | Missed | Ended | CallerSaid | Status | LoggedOut


# -- answers to an agent's commands (the same model for the TCP lines and the browser's JSON) ----


@dataclass(slots=True, unsafe_hash=True)
class Ok:
    """A command done: ready, break, reject (detail: the call id), disposition, login (detail: id and
    name), logout."""

    what: str
    detail: str = ""


@dataclass(slots=True, unsafe_hash=True)
class Connected:
    call_id: str


@dataclass(slots=True, unsafe_hash=True)
class Error:
    text: str


@dataclass(slots=True, unsafe_hash=True)
class Info:
    text: str


@dataclass(slots=True, unsafe_hash=True)
class QueueInfo:
    queue: str
    title: str
    waiting: int
    longest: int  # seconds
    available: int
    busy: int


@dataclass(slots=True, unsafe_hash=True)
class HistoryLine:
    call_id: str
    direction: str  # caller | system | agent
    agent: str | None
    text: str


Reply = Ok | Connected | Error | Info | QueueInfo | HistoryLine
Message = AgentEvent | Reply  # everything the desk's side says to an agent
