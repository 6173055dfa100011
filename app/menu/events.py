"""What the engine asks the outside world to do: small values, no behaviour.

Treat them as read-only. They are not `frozen` only because a frozen dataclass costs three times as
much to build, and a relayed chat line builds several (ToAgent, AgentLine, Say)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, get_args

if TYPE_CHECKING:
    from app.menu.sources import Source


@dataclass(slots=True, unsafe_hash=True)
class Say:
    """Send this text to the caller (one or more lines; the I/O layer adds line endings).
    `fresh`: rendered for this caller (a position, an agent's line), so not worth keeping encoded."""

    text: str
    fresh: bool = False


@dataclass(slots=True, unsafe_hash=True)
class Hangup:
    """The session is over; close the connection after sending what came before.

    `reason` is one of: "caller" (a hangup key or node), "timeout", "failures", "loop",
    "interrupt", "eof", "shutdown", "end" (a node with nowhere to go).
    """

    reason: str


@dataclass(slots=True, unsafe_hash=True)
class Transfer:
    """The caller is to join agent queue `queue`: the I/O layer asks the desk and answers the session
    with one of the desk events below (QueueClosed, QueueBusy or QueuePosition)."""

    queue: str
    node: str


@dataclass(slots=True, unsafe_hash=True)
class SaveTicket:
    """Store a ticket (the caller's message, with the session's variables): the I/O layer answers the
    session with TicketSaved once it is committed, or TicketFailed (Session.ticket_result)."""

    message: str
    queue: str | None  # of the transfer the caller came from, if any
    callback: str | None  # the call-back number, from the node's `callback` variable
    vars: dict[str, Any]


@dataclass(slots=True, unsafe_hash=True)
class BookCallback:
    """The waiting caller asked to be called back: the desk keeps their place in `queue` for an agent
    to call `number` (in full: the agent dials it), expiring after `expires` seconds of open hours."""

    queue: str
    number: str
    expires: float


@dataclass(slots=True, unsafe_hash=True)
class TicketSaved:
    ticket_id: str


@dataclass(slots=True, unsafe_hash=True)
class TicketFailed:
    reason: str


@dataclass(slots=True, unsafe_hash=True)
class Lookup:
    """Ask an HTTP source (a `lookup` node with `source:`): the I/O layer sends the request and
    answers the session with LookupResult (Session.lookup_result). `source` is the session's own
    menu's, so a reload does not move a look-up to another backend; `key` is what canned answers
    of a conversation test are listed by."""

    source: Source
    url: str = field(repr=False)  # may hold a secret (${NAME}) and a caller's data
    body: dict[str, str] | None = field(repr=False)
    key: str = field(repr=False)
    node: str


@dataclass(slots=True, unsafe_hash=True)
class LookupResult:
    """`outcome` is "found" (with the saved object as text), "missing" or "error"; `reason` says
    why a look-up was missing or failed (timeout, breaker, status 500, not_json, ...)."""

    outcome: str
    record: dict[str, str] | None = None
    reason: str = ""
    seconds: float = 0.0


@dataclass(slots=True, unsafe_hash=True)
class ToAgent:
    """A line the connected caller typed, for the agent."""

    text: str


# ---- what the desk tells a session in a transfer node (Session.desk_event) ----------------------


@dataclass(slots=True, unsafe_hash=True)
class QueuePosition:
    position: int  # 1 = next
    waiting: int
    wait_minutes: int
    ringing: bool = False  # an offer to an agent rings (or is about to): no position or estimate said
    away: bool = False  # every agent logged in to the queue is on break


@dataclass(slots=True, unsafe_hash=True)
class QueueClosed:
    """Outside the queue's hours."""


@dataclass(slots=True, unsafe_hash=True)
class QueueBusy:
    """No agent logged in, the queue is full, or the caller waited `max_wait`."""

    reason: str = "busy"


@dataclass(slots=True, unsafe_hash=True)
class AgentConnected:
    agent_id: str
    agent_name: str


@dataclass(slots=True, unsafe_hash=True)
class AgentLine:
    text: str


@dataclass(slots=True, unsafe_hash=True)
class CallEnded:
    """The agent ended the call, their connection dropped, or the desk went away."""

    by: str


@dataclass(slots=True, unsafe_hash=True)
class Score:
    """A caller's satisfaction score (1-5) for their last desk call, from a survey node."""

    value: int
    node: str


DeskEvent = QueuePosition | QueueClosed | QueueBusy | AgentConnected | AgentLine | CallEnded
DESK_EVENTS = frozenset(get_args(DeskEvent))  # for `type(x) in DESK_EVENTS`


@dataclass(slots=True, unsafe_hash=True)
class Notice:
    """Something the I/O layer should log; the engine itself never logs.

    `level` is "debug", "info", "warning" or "error"; `event` is a log event name.
    """

    level: str
    event: str
    fields: dict[str, Any] = field(default_factory=dict)


Event = Say | Hangup | Transfer | ToAgent | SaveTicket | Lookup | Score | BookCallback | Notice
