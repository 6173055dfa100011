"""The desk's objects: a caller's call, a logged-in agent, a queue's state here, and the links through
which the desk talks to the caller's session and the agent's connection. Plain data, no rules (those
are app/desk/policy.py) and no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.desk.events import AgentEvent
from app.desk.loader import QueueConfig
from app.desk.policy import DEFAULT_HANDLE
from app.desk.tallies import Histogram, Timeline, Today
from app.menu.events import DeskEvent

WAIT_BUCKETS = (5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
TALK_BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0)


class CallerLink(Protocol):
    """The caller's side of a call. `peer` and `handoff_context()` are read when the call is offered,
    so a waiting caller costs the desk no copy of them."""

    @property
    def peer(self) -> str: ...

    def handoff_context(self) -> tuple[tuple[str, str], ...]: ...

    def desk_event(self, event: DeskEvent) -> None: ...


class AgentLink(Protocol):
    def agent_event(self, event: AgentEvent) -> None: ...


Log = Callable[..., None]


def no_log(event: str, **fields: Any) -> None:
    return None


NO_ONE: frozenset[str] = frozenset()  # shared: an empty frozenset() is a new object each time


class Call:
    """A caller who asked for an agent: waiting (maybe offered), then connected. `seq` orders the
    queue: a join number in process, the join time in µs (Redis's clock) across replicas."""

    __slots__ = (
        "agent",
        "announced",
        "callback",
        "connected_at",
        "cooldown",
        "disposition",
        "expires",
        "id",
        "joined",
        "link",
        "missed",
        "offered_to",
        "offers",
        "open_waited",
        "queue",
        "rejected",
        "seq",
    )

    def __init__(self, call_id: str, queue: str, seq: int, now: float, link: CallerLink) -> None:
        self.id = call_id
        self.queue = queue
        self.seq = seq
        self.joined = now
        self.link = link
        self.offered_to: Agent | None = None
        self.agent: Agent | None = None  # once connected
        self.connected_at = 0.0
        self.rejected = NO_ONE  # agents who rejected this call; rarely any
        self.cooldown: tuple[str, float] | None = None  # (agent id, until) after a missed offer
        self.announced: tuple[int, int, bool] = (0, 0, False)  # (position, minutes, agents away) last said
        self.disposition = ""  # what the agent recorded for the call (Desk.dispose)
        self.offers = 0  # offers made to agents (for the record; with Redis as the store counted)
        self.missed = 0  # of those, not answered in time
        self.callback = ""  # a queued callback: the number an agent is to call (no live caller)
        self.expires = 0.0  # a callback's life, in seconds of the queue's open hours
        self.open_waited = 0.0  # of those, gone by


class Agent:
    """A logged-in agent. `status` is the agent's choice, `state` the system's."""

    __slots__ = (
        "call",
        "calls",
        "id",
        "idle_since",
        "last_call",
        "link",
        "missed",
        "name",
        "offer",
        "queues",
        "removed",
        "ring_until",
        "role",
        "state",
        "state_since",
        "status",
        "wrap_until",
    )

    def __init__(
        self, agent_id: str, name: str, queues: tuple[str, ...], role: str, link: AgentLink, now: float
    ) -> None:
        self.id = agent_id
        self.name = name
        self.queues = queues
        self.role = role
        self.link = link
        self.status = "on_break"  # logged_out | on_break | available
        self.state = "idle"  # idle | offered | in_call | wrap_up
        self.state_since = now
        self.idle_since = now
        self.calls = 0
        self.missed = 0
        self.offer: Call | None = None
        self.ring_until = 0.0
        self.call: Call | None = None
        self.wrap_until = 0.0
        self.last_call: Call | None = None  # the call ended last: its disposition may still be given
        self.removed = False  # gone from desk.yaml: logged out when the current call ends


@dataclass
class QueueState:
    """One queue as this process sees it: its callers here (in join order), its agents here, what
    it counted. The whole queue, across replicas, is the store's."""

    config: QueueConfig
    waiting: dict[str, Call] = field(default_factory=dict)  # this process's callers, in join order
    callbacks: dict[str, Call] = field(default_factory=dict)  # of those, queued callbacks (tick prunes)
    agents: dict[str, Agent] = field(default_factory=dict)  # logged in here (not supervisors)
    back: set[str] = field(default_factory=set)  # of those, the ids not on break (Desk.agents_away)
    handle_time: float = DEFAULT_HANDLE  # moving average, seconds
    next_announce: float = 0.0
    outcomes: dict[str, int] = field(default_factory=dict)  # answered, abandoned, timeout, busy, closed
    waits: Histogram = field(default_factory=lambda: Histogram(WAIT_BUCKETS))  # before an agent answered
    talks: Histogram = field(default_factory=lambda: Histogram(TALK_BUCKETS))
    today: Today = field(default_factory=Today)  # for the board
    timeline: Timeline = field(default_factory=Timeline)

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


@dataclass(frozen=True, slots=True)
class Counts:
    """A queue's numbers now: callers waiting and the longest wait, agents available, busy
    (offered or in a call), logged in (on break counts, supervisors do not) and of those on break."""

    waiting: int
    longest: int  # seconds
    available: int
    busy: int
    logged_in: int
    on_break: int = 0


@dataclass(frozen=True, slots=True)
class DeskCallEnd:
    """How one desk call ended, for the records (docs/agent-desk.md, "Every call on record")."""

    call_id: str
    queue: str
    joined: float
    answered: float | None
    agent: str | None
    ended: float
    ended_by: str  # caller | agent | server
    outcome: str  # answered | abandoned | timeout | busy | closed | callback
    offers: int
    missed: int


class CallRecords(Protocol):
    """Where desk calls are recorded (app/records' Recorder): a row when the caller joins, its end,
    and what the agent or the caller adds after (a disposition, a satisfaction score)."""

    def desk_joined(self, call_id: str, queue: str, joined: float, phone: str | None = None) -> None: ...

    def desk_missed(self, call_id: str, queue: str, agent: str, time: float) -> None: ...

    def desk_ended(self, end: DeskCallEnd) -> None: ...

    def desk_disposition(self, call_id: str, disposition: str) -> None: ...

    def desk_callback(self, call_id: str, number: str, context: str, expires: float) -> None: ...


@dataclass(frozen=True, slots=True)
class SharedHealth:
    """The link to the replicas' Redis, as the metrics show it."""

    up: bool  # Redis answered the last time it was asked
    commands: int  # sent since start
    failures: int  # of those, failed
    reaped: int  # lapsed replicas this one cleared out


class DeskError(Exception):
    """A command that does not fit the agent's state; the message is the protocol's ERR text."""
