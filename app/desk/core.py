"""The agent desk's core: queues, agents, offers and calls, without I/O.

How this works: callers `join` a queue and agents `login`; `dispatch` pairs the first waiting caller
of a queue (first come, first served) with an available, idle agent chosen by the queue's strategy
and *offers* the call: the agent's state becomes `offered` and the caller stays in its place. The
agent `accept`s (the call leaves the queue, both sides are connected), `reject`s (the caller keeps
its place and is never offered to that agent again) or lets `ring_timeout` pass (missed: the caller
is offered to another agent at once, or to this one after MISS_COOLDOWN). An offer is claimed by
compare-and-set on the call's `offered_to`, so no caller is offered to two agents and no agent gets
two offers. After a call the agent is in `wrap_up` for the queue's `wrap_up`, then idle.

Time is passed in (`now`, seconds since the epoch) and `tick(now)` does everything that is due:
ring timeouts, wrap-ups, callers past `max_wait`, and every `announce_every` the position and
estimate to each waiting caller whose numbers changed (one walk of the queue in order, so no per
caller timer). A caller's position is a rank in a sorted list of join numbers: O(log n).

The core tells the outside through the links it was given: a caller link receives the menu's desk
events (app.menu.events), an agent link the desk's agent events (app.desk.events). Links must not
call back into the desk synchronously. Log lines (queue_log style) go through `log`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sortedcontainers import SortedList  # type: ignore[import-untyped]

from app.desk.events import AgentEvent, CallerSaid, Ended, LoggedOut, Missed, Offer
from app.desk.loader import DeskConfig, QueueConfig
from app.desk.tallies import Histogram, Timeline, Today
from app.menu.events import (
    AgentConnected,
    AgentLine,
    CallEnded,
    DeskEvent,
    QueueBusy,
    QueueClosed,
    QueuePosition,
)

MISS_COOLDOWN = 5.0  # a missed caller is offered to the same agent again only after this, if no other
DEFAULT_HANDLE = 180.0  # the handle time assumed before any call was handled (seconds)
EMA_WEIGHT = 0.25  # weight of the newest call in the moving average handle time (as app_queue)
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


def _no_log(event: str, **fields: Any) -> None:
    return None


_NO_ONE: frozenset[str] = frozenset()  # shared: an empty frozenset() is a new object each time


class Call:
    """A caller who asked for an agent: waiting (maybe offered), then connected."""

    __slots__ = (
        "agent",
        "announced",
        "connected_at",
        "cooldown",
        "id",
        "joined",
        "link",
        "offered_to",
        "queue",
        "rejected",
        "seq",
    )

    def __init__(
        self,
        call_id: str,
        queue: str,
        seq: int,
        now: float,
        link: CallerLink,
    ) -> None:
        self.id = call_id
        self.queue = queue
        self.seq = seq
        self.joined = now
        self.link = link
        self.offered_to: Agent | None = None
        self.agent: Agent | None = None  # once connected
        self.connected_at = 0.0
        self.rejected = _NO_ONE  # agents who rejected this call; rarely any
        self.cooldown: tuple[str, float] | None = None  # (agent id, until) after a missed offer
        self.announced: tuple[int, int] = (0, 0)  # (position, minutes) last said


class Agent:
    """A logged-in agent. `status` is the agent's choice, `state` the system's."""

    __slots__ = (
        "call",
        "calls",
        "id",
        "idle_since",
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
        self.removed = False  # gone from desk.yaml: logged out when the current call ends


@dataclass
class QueueState:
    config: QueueConfig
    waiting: dict[str, Call] = field(default_factory=dict)  # in join order (joins only append)
    order: SortedList = field(default_factory=SortedList)  # join numbers of `waiting`, for ranks
    handle_time: float = DEFAULT_HANDLE  # moving average, seconds
    next_announce: float = 0.0
    rr_last: str = ""  # round_robin: the agent offered last
    agents: dict[str, Agent] = field(default_factory=dict)  # logged in to this queue (not supervisors)
    free: dict[str, Agent] = field(default_factory=dict)  # of those, available and idle: may be offered
    outcomes: dict[str, int] = field(default_factory=dict)  # answered, abandoned, timeout, busy, closed
    waits: Histogram = field(default_factory=lambda: Histogram(WAIT_BUCKETS))  # before an agent answered
    talks: Histogram = field(default_factory=lambda: Histogram(TALK_BUCKETS))
    today: Today = field(default_factory=Today)  # for the board
    timeline: Timeline = field(default_factory=Timeline)

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


@dataclass(frozen=True, slots=True)
class SharedHealth:
    """The link to the replicas' Redis, as the metrics show it."""

    up: bool  # Redis answered the last time it was asked
    commands: int  # sent since start
    failures: int  # of those, failed
    reaped: int  # lapsed replicas this one cleared out


class DeskError(Exception):
    """A command that does not fit the agent's state; the message is the protocol's ERR text."""


class Desk:
    """Every queue and logged-in agent of one process."""

    def __init__(self, config: DeskConfig, log: Log = _no_log) -> None:
        self.config = config
        self.log = log
        self.queues: dict[str, QueueState] = {name: QueueState(q) for name, q in config.queues.items()}
        self.agents: dict[str, Agent] = {}
        self.calls: dict[str, Call] = {}  # waiting or connected, by call id
        self._seq = 0
        self.offers_total = 0
        self.closed = False

    async def start(self) -> None:
        """Nothing to start in process (app.desk.shared's desk connects to Redis here)."""

    async def close(self) -> None:
        """After shutdown(): nothing to let go of in process."""

    def shared_health(self) -> SharedHealth | None:
        """The link to the replicas' Redis (None: everything is in this process)."""
        return None

    # ---- configuration --------------------------------------------------------------------------

    def configure(self, config: DeskConfig, now: float) -> None:
        """A reloaded desk.yaml: queues and agents change; logged-in agents stay logged in, a removed
        agent is logged out at the end of their call; a removed queue keeps its callers until they go."""
        self.config = config
        for name, q in config.queues.items():
            if name in self.queues:
                self.queues[name].config = q
            else:
                self.queues[name] = QueueState(q)
        for agent in list(self.agents.values()):
            model = config.agents.get(agent.id)
            if model is None:
                agent.removed = True
                if agent.state in ("idle", "wrap_up", "offered"):
                    self.logout(agent, now)
                    agent.link.agent_event(LoggedOut("removed"))
            else:
                agent.removed = False  # back in desk.yaml before their call ended: stays logged in
                self._enrol(agent, False)
                agent.name, agent.queues, agent.role = model.name, tuple(model.queues), model.role
                self._enrol(agent, True)
        self.dispatch(now)

    # ---- callers --------------------------------------------------------------------------------

    def logged_in(self, queue: str) -> int:
        """Agents logged in to `queue` (on break counts; supervisors do not)."""
        q = self.queues.get(queue)
        return len(q.agents) if q is not None else 0

    def join(
        self,
        queue: str,
        call_id: str,
        link: CallerLink,
        now: float,
    ) -> bool:
        """A caller arrives at a transfer node. Tells the link QueueClosed, QueueBusy or the first
        QueuePosition; True when the caller now waits."""
        q = self._open_queue(queue, link, now)
        if q is None:
            return False
        model = q.config.model
        agents = self.logged_in(queue)
        if agents == 0 or len(q.waiting) >= model.max_waiting:
            q.count("busy")
            self.log("queue_busy", queue=queue, reason="no_agents" if agents == 0 else "full")
            link.desk_event(QueueBusy("no_agents" if agents == 0 else "full"))
            return False
        self._seq += 1
        call = Call(call_id, queue, self._seq, now, link)
        q.waiting[call_id] = call
        q.order.add(call.seq)
        self.calls[call_id] = call
        position = len(q.waiting)
        q.timeline.sample(now, position)
        self.log("queue_entered", queue=queue, call_id=call_id, position=position)
        self._announce(q, call, position, agents)
        if not q.next_announce:
            q.next_announce = now + model.announce_every
        self.dispatch(now)
        return True

    def _open_queue(self, queue: str, link: CallerLink, now: float) -> QueueState | None:
        """The queue a caller may join now, or None once they were told why not (the server is
        stopping, no such queue, or outside its hours)."""
        q = self.queues.get(queue)
        if self.closed:
            link.desk_event(QueueBusy("shutdown"))
            return None
        if q is None or not q.config.is_open(now):
            if q is not None:
                q.count("closed")
            self.log("queue_closed", queue=queue)
            link.desk_event(QueueClosed())
            return None
        return q

    def position(self, call: Call) -> int:
        """1 for the next caller; O(log n)."""
        return int(self.queues[call.queue].order.index(call.seq)) + 1

    def estimate_minutes(self, q: QueueState, position: int, agents: int | None = None) -> int:
        """position × the moving average handle time ÷ agents logged in, in minutes (at least 1)."""
        n = max(1, self.logged_in(q.config.name) if agents is None else agents)
        return max(1, math.ceil(position * q.handle_time / n / 60.0))

    def leave(self, call_id: str, now: float) -> None:
        """The caller went away (hung up, pressed a key to leave, or was cut off)."""
        call = self.calls.pop(call_id, None)
        if call is None:
            return
        q = self.queues[call.queue]
        if call.agent is not None:  # connected
            agent = call.agent
            agent.link.agent_event(Ended(call.id, "caller"))
            self._completed(q, call, agent, "caller", now)
            return
        position = self.position(call)
        offered = self._withdraw(call, now)
        self._unqueue(q, call)
        if offered is not None:  # hung up while being offered
            offered.link.agent_event(Ended(call.id, "caller"))
        q.count("abandoned")
        q.today.abandon(now)
        self.log(
            "queue_abandoned",
            queue=call.queue,
            call_id=call.id,
            position=position,
            waited=round(now - call.joined),
        )
        self.dispatch(now)

    def caller_line(self, call_id: str, text: str) -> None:
        call = self.calls.get(call_id)
        if call is not None and call.agent is not None:
            call.agent.link.agent_event(CallerSaid(call.id, text))

    # ---- agents ---------------------------------------------------------------------------------

    def login(self, agent_id: str, link: AgentLink, now: float) -> Agent:
        """Log in an agent whose password was checked; on break until /ready."""
        if agent_id in self.agents:
            raise DeskError("already logged in elsewhere")
        model = self.config.agents[agent_id]
        agent = Agent(agent_id, model.name, tuple(model.queues), model.role, link, now)
        self.agents[agent_id] = agent
        self._enrol(agent, True)
        self.log("agent_login", agent=agent_id)
        return agent

    def logout(self, agent: Agent, now: float) -> None:
        """The agent logs out or their connection closed: an offer goes to someone else, a call in
        progress ends for the caller (by=agent)."""
        if self.agents.get(agent.id) is not agent:
            return
        if agent.offer is not None:
            self._withdraw(agent.offer, now)
        if agent.call is not None:
            self.end(agent, now)
            if self.agents.get(agent.id) is not agent:  # removed from desk.yaml: logged out by end()
                return
        del self.agents[agent.id]
        agent.status = "logged_out"
        self._enrol(agent, False)
        self.log("agent_logout", agent=agent.id)
        self.dispatch(now)

    def set_status(self, agent: Agent, status: str, now: float, reason: str = "") -> None:
        if agent.role != "agent" and status == "available":
            raise DeskError("supervisors take no calls")
        if agent.status != status:
            agent.status = status
            if status == "available":
                agent.missed = 0
            self._mark(agent)
            self.log("agent_status", agent=agent.id, status=status, **({"reason": reason} if reason else {}))
        self.dispatch(now)

    def accept(self, agent: Agent, now: float) -> Call:
        call = agent.offer
        if call is None or agent.state != "offered":
            raise DeskError("no offer to accept")
        if call.offered_to is not agent or not self._holds(call):  # compare-and-set
            agent.offer = None
            self._set_state(agent, "idle", now)
            raise DeskError("the offer is gone")
        q = self.queues[call.queue]
        self._unqueue(q, call)
        agent.offer = call.offered_to = None
        call.agent = agent
        call.connected_at = now
        agent.call = call
        agent.calls += 1
        agent.missed = 0
        self._set_state(agent, "in_call", now)
        waited = now - call.joined
        q.count("answered")
        q.waits.observe(waited)
        q.today.answer(now, waited)
        q.timeline.answer(now)
        self.log("call_connected", queue=call.queue, call_id=call.id, agent=agent.id, waited=round(waited))
        call.link.desk_event(AgentConnected(agent.id, agent.name))
        return call

    def _holds(self, call: Call) -> bool:
        """`call` is still one of the desk's (not gone while an agent was deciding)."""
        return self.calls.get(call.id) is call

    def reject(self, agent: Agent, now: float) -> Call:
        call = agent.offer
        if call is None or agent.state != "offered":
            raise DeskError("no offer to reject")
        call.rejected |= {agent.id}
        self._withdraw(call, now)
        self.log("offer_rejected", queue=call.queue, call_id=call.id, agent=agent.id)
        self.dispatch(now)
        return call

    def end(self, agent: Agent, now: float, disposition: str = "") -> Call:
        call = agent.call
        if call is None:
            raise DeskError("not in a call")
        self.calls.pop(call.id, None)
        call.link.desk_event(CallEnded("agent"))
        self._completed(self.queues[call.queue], call, agent, "agent", now, disposition)
        return call

    def agent_line(self, agent: Agent, text: str) -> None:
        if agent.call is None:
            raise DeskError("not in a call")
        agent.call.link.desk_event(AgentLine(text))

    def queue_summary(self, name: str, now: float) -> tuple[int, int, int, int]:
        """(waiting, longest wait in seconds, available agents, busy agents) of a queue."""
        q = self.queues[name]
        head = next(iter(q.waiting.values()), None)
        longest = int(now - head.joined) if head is not None else 0
        mine = list(self.agents_of(name))
        available = sum(1 for a in mine if a.status == "available" and a.state == "idle")
        busy = sum(1 for a in mine if a.state in ("offered", "in_call"))
        return len(q.waiting), longest, available, busy

    # ---- time -----------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Everything that is due: ring timeouts, wrap-ups, max_wait, announcements, re-offers."""
        for agent in list(self.agents.values()):
            if agent.state == "offered" and now >= agent.ring_until and agent.offer is not None:
                self._missed(agent, agent.offer, now)
            elif agent.state == "wrap_up" and now >= agent.wrap_until:
                self._set_state(agent, "idle", now)
        for q in self.queues.values():
            max_wait = q.config.model.max_wait
            while q.waiting:
                head = next(iter(q.waiting.values()))
                if now - head.joined < max_wait:
                    break
                self._timed_out(q, head, now)
            q.timeline.sample(now, len(q.waiting))
            if q.next_announce and now >= q.next_announce:
                q.next_announce = now + q.config.model.announce_every if q.waiting else 0.0
                self._announce_all(q)
        self.dispatch(now)

    def _announce_all(self, q: QueueState) -> None:
        """Every waiting caller of `q` hears their position and estimate, if either changed."""
        agents = self.logged_in(q.config.name)
        for i, call in enumerate(q.waiting.values(), 1):
            self._announce(q, call, i, agents)

    def shutdown(self) -> None:
        """The server stops: every agent in a call or offered hears ENDED by=server; callers get the
        server's goodbye on their own, and leave no trace here."""
        self.closed = True
        for agent in self.agents.values():
            call = agent.call or agent.offer
            if call is not None:
                agent.link.agent_event(Ended(call.id, "server"))
        self.calls.clear()

    # ---- routing --------------------------------------------------------------------------------

    def dispatch(self, now: float) -> None:
        """Offer the first waiting callers of each queue to free agents."""
        for q in self.queues.values():
            if not q.waiting:
                continue
            if not q.free:
                continue
            free = list(q.free.values())
            for call in q.waiting.values():
                if call.offered_to is not None:
                    continue
                able = [a for a in free if self._may_offer(call, a, now)]
                if not able:
                    continue
                agent = self._pick(q, able)
                self._offer(q, call, agent, now)
                free.remove(agent)
                if not free:
                    break

    def _may_offer(self, call: Call, agent: Agent, now: float) -> bool:
        if agent.id in call.rejected:
            return False
        cool = call.cooldown
        return cool is None or cool[0] != agent.id or now >= cool[1]

    def _pick(self, q: QueueState, able: list[Agent]) -> Agent:
        strategy = q.config.model.strategy
        if strategy == "fewest_calls":
            return min(able, key=lambda a: (a.calls, a.idle_since))
        if strategy == "round_robin":
            ids = sorted(a.id for a in able)
            after = [i for i in ids if i > q.rr_last]
            chosen = after[0] if after else ids[0]
            q.rr_last = chosen
            return next(a for a in able if a.id == chosen)
        return min(able, key=lambda a: a.idle_since)  # longest_idle

    def _offer(self, q: QueueState, call: Call, agent: Agent, now: float) -> None:
        assert call.offered_to is None and agent.offer is None  # the compare-and-set's invariant
        call.offered_to = agent
        agent.offer = call
        agent.ring_until = now + q.config.model.ring_timeout
        self._set_state(agent, "offered", now)
        self.offers_total += 1
        self.log("call_offered", queue=call.queue, call_id=call.id, agent=agent.id)
        agent.link.agent_event(self.offer_of(call, now))

    def offer_of(self, call: Call, now: float) -> Offer:
        """The offer of `call` as its agent sees it (again, for a console that reconnects)."""
        link = call.link
        return Offer(call.id, call.queue, int(now - call.joined), link.peer, link.handoff_context())

    def _missed(self, agent: Agent, call: Call, now: float) -> None:
        call.cooldown = (agent.id, now + MISS_COOLDOWN)
        self._withdraw(call, now)
        agent.missed += 1
        on_break = agent.missed >= self.queues[call.queue].config.model.max_missed
        self.log("offer_missed", queue=call.queue, call_id=call.id, agent=agent.id, in_a_row=agent.missed)
        if on_break:
            agent.status = "on_break"
            self._mark(agent)
            self.log("agent_status", agent=agent.id, status="on_break", reason="max_missed")
        agent.link.agent_event(Missed(call.id, on_break))

    def _timed_out(self, q: QueueState, call: Call, now: float) -> None:
        self.calls.pop(call.id, None)
        agent = self._withdraw(call, now)
        self._unqueue(q, call)
        if agent is not None:
            agent.link.agent_event(Ended(call.id, "server"))
        q.count("timeout")
        q.today.time_out(now)
        self.log("queue_timeout", queue=call.queue, call_id=call.id, waited=round(now - call.joined))
        call.link.desk_event(QueueBusy("max_wait"))

    def _withdraw(self, call: Call, now: float) -> Agent | None:
        """Take back the offer of `call`, if any (the other half of _offer's compare-and-set): the
        agent is idle again and keeps their place for longest-idle routing. Returns that agent."""
        agent = call.offered_to
        if agent is not None:
            agent.offer = call.offered_to = None
            self._set_state(agent, "idle", now, keep_idle_since=True)
        return agent

    def _unqueue(self, q: QueueState, call: Call) -> None:
        if q.waiting.pop(call.id, None) is not None:
            q.order.remove(call.seq)

    def _completed(
        self, q: QueueState, call: Call, agent: Agent, by: str, now: float, disposition: str = ""
    ) -> None:
        talked = now - call.connected_at
        q.handle_time = q.handle_time * (1 - EMA_WEIGHT) + talked * EMA_WEIGHT
        q.talks.observe(talked)
        agent.call = None
        call.agent = None
        self.log(
            "call_completed",
            queue=call.queue,
            call_id=call.id,
            agent=agent.id,
            by=by,
            waited=round(call.connected_at - call.joined),
            talked=round(talked),
            **({"disposition": disposition} if disposition else {}),
        )
        wrap = q.config.model.wrap_up
        if wrap > 0:
            agent.wrap_until = now + wrap
            self._set_state(agent, "wrap_up", now)
        else:
            self._set_state(agent, "idle", now)
        if agent.removed and self.agents.get(agent.id) is agent:
            self.logout(agent, now)
            agent.link.agent_event(LoggedOut("removed"))
        elif wrap <= 0:
            self.dispatch(now)  # free at once: the next caller need not wait for the clock

    def _set_state(self, agent: Agent, state: str, now: float, keep_idle_since: bool = False) -> None:
        agent.state = state
        agent.state_since = now
        if state == "idle" and not keep_idle_since:
            agent.idle_since = now
        self._mark(agent)

    def _enrol(self, agent: Agent, member: bool) -> None:
        """Add `agent` to (or take them out of) the member and free lists of their queues."""
        if agent.role != "agent":
            return
        for name in agent.queues:
            q = self.queues.get(name)
            if q is None:
                continue
            if member:
                q.agents[agent.id] = agent
            else:
                q.agents.pop(agent.id, None)
                q.free.pop(agent.id, None)
        if member:
            self._mark(agent)

    def _mark(self, agent: Agent) -> None:
        """Keep `agent` in their queues' free lists exactly while available and idle."""
        free = agent.status == "available" and agent.state == "idle"
        for name in agent.queues:
            q = self.queues.get(name)
            if q is None or agent.id not in q.agents:
                continue
            if free:
                q.free[agent.id] = agent
            else:
                q.free.pop(agent.id, None)

    def _announce(
        self, q: QueueState, call: Call, position: int, agents: int, waiting: int | None = None
    ) -> None:
        """The caller hears their position and estimate if either changed (`waiting`: the whole
        queue's length, when it is not this desk's to count)."""
        minutes = self.estimate_minutes(q, position, agents)
        if (position, minutes) != call.announced:
            call.announced = (position, minutes)
            total = len(q.waiting) if waiting is None else max(waiting, position)
            call.link.desk_event(QueuePosition(position, total, minutes))

    # ---- for metrics and tests ------------------------------------------------------------------

    def agent_rows(self, now: float) -> list[dict[str, Any]]:
        """The board's table of agents (and supervisors) logged in."""
        return agent_rows(self.agents.values(), now)

    def agents_of(self, queue: str) -> Iterable[Agent]:
        """The logged-in agents (not supervisors) of `queue`."""
        q = self.queues.get(queue)
        return q.agents.values() if q is not None else ()


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
