"""The agent desk: queues, agents, offers and calls of this process, over one store (docs/agent-desk.md).

How this works: callers `join` a queue and agents `login`; when something changes the desk asks its
store to `claim`: the store pairs the first waiting callers (first come, first served) with free
agents by the queue's strategy, following app/desk/policy.py, marks each pair offered (compare and
set: no caller offered to two agents, no agent two offers) and hands each pair whose agent is here
to `deliver`, which rings the agent. The agent `accept`s (the call leaves the queue, both sides are
connected), `reject`s (the caller keeps their place, never offered to that agent again) or lets
`ring_timeout` pass (missed: offered to another agent at once, or to this one after the cool-down,
which holds the agent for them). After a call the agent is in `wrap_up` for the queue's `wrap_up`.

The store is where the queue itself lives: in this process (app/desk/queue.py), or in Redis shared
by replicas (app/desk/redis/). Both have the same methods and answer through callbacks, the local
one at once, the Redis one after its round trip, in the order asked; the desk's code is the same for
both. With Redis, the other end of a call may be on another replica: `RemoteCaller` / `RemoteAgent`
are links like any other that go through the store's relay, and the store hands the desk what other
replicas say (`withdrawn`, `connected`, `relayed`, `resync`).

Time is passed in (`now`); `tick(now)` does what is due: ring timeouts, wrap-ups, max_wait, and every
`announce_every` the position and estimate of each waiting caller whose numbers changed. The desk
tells callers through their links (app.menu.events) and agents through theirs (app.desk.events); log
lines (queue_log style) go through `log`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from typing import Any

from app.desk import policy
from app.desk.events import AgentEvent, CallerSaid, Ended, LoggedOut, Missed, Offer, Status
from app.desk.loader import DeskConfig
from app.desk.model import (
    Agent,
    AgentLink,
    Call,
    CallerLink,
    CallRecords,
    Counts,
    DeskCallEnd,
    DeskError,
    Log,
    QueueState,
    SharedHealth,
    no_log,
)
from app.desk.queue import LocalStore
from app.desk.store import Joined, Left, Store
from app.desk.tallies import Scores
from app.menu.events import (
    AgentConnected,
    AgentLine,
    CallEnded,
    DeskEvent,
    QueueBusy,
    QueueClosed,
    QueuePosition,
)


class RemoteCaller:
    """A caller on another replica, as the agent's replica sees them (a CallerLink): what the desk
    tells the caller goes down the call's relay."""

    __slots__ = ("call_id", "context", "peer", "queue", "store")

    def __init__(
        self, store: Store, queue: str, call_id: str, peer: str, context: tuple[tuple[str, str], ...]
    ) -> None:
        self.store = store
        self.queue = queue
        self.call_id = call_id
        self.peer = peer
        self.context = context

    def handoff_context(self) -> tuple[tuple[str, str], ...]:
        return self.context

    def desk_event(self, event: DeskEvent) -> None:
        if isinstance(event, AgentLine):
            self.store.relay(self.queue, self.call_id, "down", "l", event.text)
        elif isinstance(event, CallEnded):
            self.store.relay(self.queue, self.call_id, "down", "e", event.by)
        # AgentConnected: the caller's replica hears it from the accept itself


class RemoteAgent:
    """An agent on another replica, as the caller's replica sees them (an AgentLink)."""

    __slots__ = ("call_id", "queue", "store")

    def __init__(self, store: Store, queue: str, call_id: str) -> None:
        self.store = store
        self.queue = queue
        self.call_id = call_id

    def agent_event(self, event: AgentEvent) -> None:
        if isinstance(event, CallerSaid):
            self.store.relay(self.queue, self.call_id, "up", "l", event.text)
        elif isinstance(event, Ended):
            self.store.relay(self.queue, self.call_id, "up", "e", event.by)


class CallbackLink:
    """A queued callback: the caller has hung up and waits for an agent to phone them. It waits in the
    queue like a caller (its place kept) and is offered with the number in full; nobody hears what
    the desk would tell a caller."""

    __slots__ = ("context", "number")
    peer = "callback"  # OFFER ... from=callback

    def __init__(self, number: str, context: tuple[tuple[str, str], ...]) -> None:
        self.number = number
        self.context = context

    def handoff_context(self) -> tuple[tuple[str, str], ...]:
        return (("callback", self.number), *self.context)

    def desk_event(self, event: DeskEvent) -> None:
        return None


def _remote(link: object) -> bool:
    return type(link) is RemoteCaller or type(link) is RemoteAgent


class Desk:
    """Every queue and logged-in agent of this process, over one store."""

    def __init__(
        self,
        config: DeskConfig,
        log: Log = no_log,
        store: Store | None = None,
        records: CallRecords | None = None,
    ) -> None:
        self.config = config
        self.log = log
        self.records = records  # every desk call on record (None: not kept)
        self.queues: dict[str, QueueState] = {}
        self.scores: dict[str, Scores] = {}  # agent id -> today's satisfaction scores (the board)
        self.agents: dict[str, Agent] = {}
        self.calls: dict[str, Call] = {}  # this process's callers, waiting or connected, by call id
        self.remote: dict[str, Call] = {}  # other replicas' callers offered to / talking with our agents
        self.offers_total = 0
        self.closed = False
        self._ticked = 0.0  # the last tick (callbacks' open hours are counted between ticks)
        self.store: Store = store if store is not None else LocalStore()
        self.store.bind(self)
        self._set_queues(config)

    async def start(self) -> None:
        await self.store.start()

    async def close(self) -> None:
        """After shutdown(): the store lets go (with Redis: this replica leaves the shared queues)."""
        await self.store.close()

    def shared_health(self) -> SharedHealth | None:
        """The link to the replicas' Redis (None: everything is in this process)."""
        return self.store.health()

    # ---- configuration --------------------------------------------------------------------------

    def configure(self, config: DeskConfig, now: float) -> None:
        """A reloaded desk.yaml: queues and agents change; logged-in agents stay logged in, a removed
        agent is logged out at the end of their call; a removed queue keeps its callers until they go."""
        self.config = config
        self._set_queues(config)
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

    def _set_queues(self, config: DeskConfig) -> None:
        """desk.yaml's queues: new ones made, known ones given their (reloaded) settings."""
        for name, q in config.queues.items():
            if name in self.queues:
                self.queues[name].config = q
            else:
                self.queues[name] = QueueState(q)
            self.queues[name].today.seconds = q.model.service_level_seconds
            self.queues[name].today.short = q.model.short_abandon

    def scored(self, agent_id: str, score: int, now: float) -> None:
        """A caller's satisfaction score for a call this agent took (the board's 满意度 per agent)."""
        self.scores.setdefault(agent_id, Scores()).add(now, score)

    # ---- callers --------------------------------------------------------------------------------

    def logged_in(self, queue: str) -> int:
        """Agents logged in to `queue` (on break counts; supervisors do not), on every replica."""
        shared = self.store.summary(queue)
        if shared is not None:
            return shared.logged_in
        q = self.queues.get(queue)
        return len(q.agents) if q is not None else 0

    def join(self, queue: str, call_id: str, link: CallerLink, now: float, phone: str | None = None) -> bool:
        """A caller arrives at a transfer node (`phone`: their `phone` variable, for the records). The
        link hears QueueClosed, QueueBusy or the first QueuePosition (at once in process, after the
        store's answer with Redis)."""
        q = self._open_queue(queue, call_id, link, now)
        if q is None:
            return False
        call = Call(call_id, queue, 0, now, link)
        self.calls[call_id] = call
        q.waiting[call_id] = call
        self.store.join(q, call, lambda joined: self._joined(q, call, joined, now, phone))
        return self.calls.get(call_id) is call

    def _open_queue(self, queue: str, call_id: str, link: CallerLink, now: float) -> QueueState | None:
        """The queue a caller may join now, or None once they were told why not (the server is
        stopping, no such queue, or outside its hours)."""
        q = self.queues.get(queue)
        if self.closed:
            link.desk_event(QueueBusy("shutdown"))
            return None
        if q is None or not q.config.is_open(now):
            if q is not None:
                q.count("closed")
            self.log("queue_closed", queue=queue, call_id=call_id)
            self._refused_record(call_id, queue, "closed", now)
            link.desk_event(QueueClosed())
            return None
        return q

    def _refused_record(self, call_id: str, queue: str, outcome: str, now: float) -> None:
        """A caller turned away at the door (closed, busy) is a desk call too."""
        if self.records is not None:
            self.records.desk_joined(call_id, queue, now)
            self.records.desk_ended(
                DeskCallEnd(call_id, queue, now, None, None, now, "server", outcome, 0, 0)
            )

    def _record_end(self, call: Call, outcome: str, by: str, now: float, agent: Agent | None = None) -> None:
        """The end of one of this process's callers' desk calls, on record (a callback an agent
        served has the outcome `callback`)."""
        if call.callback:
            self.store.unbook(call)
            if outcome == "answered":
                outcome = "callback"
        if self.records is not None:
            answered = call.connected_at if agent is not None else None
            self.records.desk_ended(
                DeskCallEnd(
                    call.id,
                    call.queue,
                    call.joined,
                    answered,
                    agent.id if agent is not None else None,
                    now,
                    by,
                    outcome,
                    call.offers,
                    call.missed,
                )
            )

    def _joined(
        self, q: QueueState, call: Call, joined: Joined | str, now: float, phone: str | None = None
    ) -> None:
        if self.calls.get(call.id) is not call:
            return  # gone already; its leave came after the join
        if isinstance(joined, str):  # refused: no_agents, full, unavailable
            self.calls.pop(call.id, None)
            q.waiting.pop(call.id, None)
            q.count("busy")
            self.log("queue_busy", queue=q.config.name, call_id=call.id, reason=joined)
            self._refused_record(call.id, call.queue, "busy", now)
            call.link.desk_event(QueueBusy(joined))
            return
        if self.records is not None:
            self.records.desk_joined(call.id, call.queue, call.joined, phone)
        q.timeline.sample(now, joined.waiting)
        self.log("queue_entered", queue=q.config.name, call_id=call.id, position=joined.position)
        if not q.next_announce:
            q.next_announce = now + q.config.model.announce_every
        self.dispatch(now)  # first: a caller offered at once hears no estimate
        if q.waiting.get(call.id) is call:
            ringing = call.offered_to is not None or joined.position <= joined.free
            self._announce(q, call, joined.position, joined.agents, joined.waiting, ringing)

    def position(self, call: Call, done: Callable[[int], None]) -> None:
        """The caller's place in the whole queue (1: next), through `done`."""
        self.store.positions([call], lambda _call, position: done(position))

    def estimate_minutes(self, q: QueueState, position: int, agents: int | None = None) -> int:
        n = self.logged_in(q.config.name) if agents is None else agents
        return policy.estimate_minutes(position, q.handle_time, n)

    def leave(self, call_id: str, now: float) -> None:
        """The caller went away (hung up, pressed a key to leave, or was cut off)."""
        call = self.calls.pop(call_id, None)
        if call is None:
            return
        q = self.queues[call.queue]
        agent = call.agent
        if agent is None:
            self._gone_from_queue(q, call, now, "caller")
            return
        agent.link.agent_event(Ended(call.id, "caller"))  # with a remote agent: the end of the relay
        if _remote(agent.link):
            call.agent = None
            self.store.forget(call)
            self._record_end(call, "answered", "caller", now, agent)
        else:
            self._completed(q, call, agent, "caller", now)

    def _gone_from_queue(self, q: QueueState, call: Call, now: float, by: str) -> None:
        """A waiting caller of this process leaves: hung up (by=caller) or max_wait (by=server)."""
        offered = self._withdraw(call, now, release=False)
        q.waiting.pop(call.id, None)
        if offered is not None:
            offered.link.agent_event(Ended(call.id, by))
        self.store.leave(call, by, lambda left: self._left(q, call, left, now, by))

    def _left(self, q: QueueState, call: Call, left: Left | None, now: float, by: str) -> None:
        if left is not None and left.answered_elsewhere:
            return  # answered on another replica before we heard of it: not abandoned
        if left is not None and left.offers is not None:  # counted by the shared store
            call.offers, call.missed = left.offers, left.missed
        self._record_end(call, "abandoned" if by == "caller" else "timeout", by, now)
        waited = round(now - call.joined)
        if by == "caller":
            q.count("abandoned")
            q.today.abandon(now, now - call.joined)
            position = left.position if left is not None else 0
            self.log("queue_abandoned", queue=call.queue, call_id=call.id, position=position, waited=waited)
        else:
            q.count("timeout")
            q.today.time_out(now)
            self.log("queue_timeout", queue=call.queue, call_id=call.id, waited=waited)
        self.dispatch(now)

    def book_callback(self, call_id: str, number: str, expires: float, now: float) -> None:
        """A waiting caller asked to be called back on `number`: they keep their place as a callback
        (with what the agent would have seen of them) and may hang up. The same number already
        waiting in the queue keeps its place; this one is then done."""
        call = self.calls.get(call_id)
        if call is None or call.agent is not None or call.callback:
            return
        q = self.queues[call.queue]
        context = tuple((k, v) for k, v in call.link.handoff_context() if k != "transcript")
        offered = self._withdraw(call, now, release=False)  # re-offered as a callback
        if offered is not None:
            offered.link.agent_event(Ended(call.id, "caller"))
        text = json.dumps([("callback", number), *context], ensure_ascii=False)
        call.expires = expires  # kept with the booking (a replica that adopts it counts it down)
        self.store.book(
            call, number, text, functools.partial(self._booked, q, call, number, expires, context, now)
        )

    def _booked(
        self,
        q: QueueState,
        call: Call,
        number: str,
        expires: float,
        context: tuple[tuple[str, str], ...],
        now: float,
        booked: bool,
    ) -> None:
        if self.calls.get(call.id) is not call:
            return
        if not booked:  # the number waits already: that callback keeps its first place
            self.calls.pop(call.id, None)
            q.waiting.pop(call.id, None)
            self.store.leave(call, "caller", lambda left: None)
            self.log("callback_duplicate", queue=call.queue, call_id=call.id)
            self._record_end(call, "callback", "caller", now)
            self.dispatch(now)
            return
        call.link = CallbackLink(number, context)
        call.callback, call.expires, call.open_waited = number, expires, 0.0
        q.callbacks[call.id] = call
        self.log("callback_booked", queue=call.queue, call_id=call.id)  # never the number
        if self.records is not None:
            self.records.desk_callback(call.id, number, json.dumps(context, ensure_ascii=False), expires)
        self.dispatch(now)

    def restore_callback(
        self,
        call_id: str,
        queue: str,
        joined: float,
        number: str,
        context: tuple[tuple[str, str], ...],
        expires: float,
        open_waited: float = 0.0,
    ) -> None:
        """A callback kept in the records, back in its queue after a restart (in process), or one a
        lapsed replica left behind, adopted (with Redis: `adopt`)."""
        q = self.queues.get(queue)
        if q is None or call_id in self.calls:
            return
        call = Call(call_id, queue, 0, joined, CallbackLink(number, context))
        call.callback, call.expires, call.open_waited = number, expires, open_waited
        self.calls[call_id] = call
        q.waiting[call_id] = call
        q.callbacks[call_id] = call
        self.store.rejoin(q, call)

    def adopt(
        self,
        name: str,
        call_id: str,
        seq: int,
        number: str,
        context: tuple[tuple[str, str], ...],
        expires: float,
        now: float,
    ) -> None:
        """Replicas: a callback whose replica went away is this one's now (it stays in the shared queue)."""
        q = self.queues.get(name)
        if q is None or call_id in self.calls:
            return
        call = Call(call_id, name, seq, seq / 1e6, CallbackLink(number, context))
        call.callback, call.expires = number, expires
        self.calls[call_id] = call
        q.waiting[call_id] = call
        q.callbacks[call_id] = call
        self.log("callback_adopted", queue=name, call_id=call_id)
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
        self.store.login(agent, functools.partial(self._login_held, agent, now=now))
        return agent

    def _login_held(self, agent: Agent, owner: str | None, now: float) -> None:
        """Replicas: the agent id turned out to be logged in on `owner` already."""
        if owner is not None and self.agents.get(agent.id) is agent:
            self.log("agent_logged_in_elsewhere", agent=agent.id, replica=owner)
            self.logout(agent, now, release=False)
            agent.link.agent_event(LoggedOut("elsewhere"))

    def logout(self, agent: Agent, now: float, release: bool = True) -> None:
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
        if release:
            self.store.logout(agent)
        self.dispatch(now)

    def set_status(self, agent: Agent, status: str, now: float, reason: str = "") -> None:
        if agent.role != "agent" and status == "available":
            raise DeskError("supervisors take no calls")
        if agent.status != status:
            agent.status = status
            self._on_status(agent)
            if status == "available":
                agent.missed = 0
            self.store.agent_changed(agent)
            self.log("agent_status", agent=agent.id, status=status, **({"reason": reason} if reason else {}))
            agent.link.agent_event(Status(status, agent.state))
        self.dispatch(now)

    def accept(self, agent: Agent, now: float) -> Call:
        call = agent.offer
        if call is None or agent.state != "offered":
            raise DeskError("no offer to accept")
        if call.offered_to is not agent or not self._holds(call):  # compare-and-set
            agent.offer = None
            self._set_state(agent, "withdraw", now)
            raise DeskError("the offer is gone")
        q = self.queues[call.queue]
        q.waiting.pop(call.id, None)
        agent.offer = call.offered_to = None
        call.agent = agent
        call.connected_at = now
        agent.call = call
        agent.calls += 1
        agent.missed = 0
        self._set_state(agent, "accept", now)
        waited = now - call.joined
        q.count("answered")
        q.waits.observe(waited)
        q.today.answer(now, waited)
        q.timeline.answer(now)
        self.log("call_connected", queue=call.queue, call_id=call.id, agent=agent.id, waited=round(waited))
        call.link.desk_event(AgentConnected(agent.id, agent.name))
        self.store.accept(call, agent, functools.partial(self._accepted, agent, call, now))
        return call

    def _holds(self, call: Call) -> bool:
        """`call` is still one of ours (not gone while an agent was deciding)."""
        if type(call.link) is RemoteCaller:
            return self.remote.get(call.id) is call
        return self.calls.get(call.id) is call

    def _accepted(self, agent: Agent, call: Call, now: float, held: bool) -> None:
        """The store's answer to the accept. Not held: the offer was gone (the caller left, or their
        replica died) before the answer reached it, so there is no call after all."""
        if held or agent.call is not call:
            return
        self.log("accept_lost", queue=call.queue, call_id=call.id, agent=agent.id)
        agent.link.agent_event(Ended(call.id, "caller"))
        if type(call.link) is not RemoteCaller and self.calls.pop(call.id, None) is not None:
            call.link.desk_event(CallEnded("agent"))
        self._completed(self.queues[call.queue], call, agent, "caller", now)

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
        if disposition:
            self._disposed(call, agent, disposition, now)
        return call

    def dispose(self, agent: Agent, text: str, now: float) -> Call:
        """`/disposition TEXT` (the console's 处理结果 after a call): the disposition of the agent's
        last call, however it ended (by the agent, the caller or the server), during wrap-up or after
        it until their next call; a second one replaces the first."""
        if agent.call is not None:
            raise DeskError("in a call: /end DISPOSITION")
        call = agent.last_call
        if call is None:
            raise DeskError("no call to give a disposition")
        self._disposed(call, agent, text, now)
        return call

    def _disposed(self, call: Call, agent: Agent, text: str, now: float) -> None:
        """Every disposition is recorded here, whichever command gave it (`/end DISPOSITION` or
        `/disposition`): on the call, in the log (`call_disposition`) and on the call's record (the
        agent's side writes it, wherever the caller is)."""
        call.disposition = text
        self.log("call_disposition", queue=call.queue, call_id=call.id, agent=agent.id, disposition=text)
        if self.records is not None:
            self.records.desk_disposition(call.id, text)

    def agent_line(self, agent: Agent, text: str) -> None:
        if agent.call is None:
            raise DeskError("not in a call")
        agent.call.link.desk_event(AgentLine(text))

    # ---- what the queues look like -----------------------------------------------------------------

    def queue_summary(self, name: str, now: float) -> tuple[int, int, int, int]:
        """(waiting, longest wait in seconds, available agents, busy agents) of a queue, for the
        board and the metrics (with Redis: as of the store's last look, at most a second ago)."""
        c = self.store.summary(name) or self.local_counts(name, now)
        return c.waiting, c.longest, c.available, c.busy

    def counts(self, names: Iterable[str], now: float, done: Callable[[dict[str, Counts]], None]) -> None:
        """Each queue's numbers exactly now, on every replica, this process's own last changes
        counted (an agent's /queue), through `done`. A queue the store could not read (Redis away) is
        as last seen."""
        known = [name for name in names if name in self.queues]

        def filled(counts: dict[str, Counts]) -> None:
            for name in known:
                if name not in counts:
                    counts[name] = self.store.summary(name) or self.local_counts(name, now)
            done(counts)

        self.store.counts(known, now, filled)

    def local_counts(self, name: str, now: float) -> Counts:
        """A queue's numbers from this process's own callers and agents."""
        q = self.queues[name]
        head = next(iter(q.waiting.values()), None)
        longest = int(now - head.joined) if head is not None else 0
        mine = list(self.agents_of(name))
        available = sum(1 for a in mine if policy.may_take(a.status, a.state))
        busy = sum(1 for a in mine if a.state in ("offered", "in_call"))
        on_break = sum(1 for a in mine if a.status == "on_break")
        return Counts(len(q.waiting), longest, available, busy, len(mine), on_break)

    def agents_away(self, q: QueueState) -> bool:
        """Every agent logged in to `q` is on break (with replicas: as of the store's last look)."""
        shared = self.store.summary(q.config.name)
        if shared is not None:
            return shared.logged_in > 0 and shared.on_break >= shared.logged_in
        return bool(q.agents) and not q.back  # a set kept by _enrol and _on_status: no walk of the agents

    # ---- time -----------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Everything that is due: ring timeouts, wrap-ups, max_wait, announcements, re-offers."""
        for agent in list(self.agents.values()):
            if agent.state == "offered" and now >= agent.ring_until and agent.offer is not None:
                self._missed(agent, agent.offer, now)
            elif agent.state == "wrap_up" and now >= agent.wrap_until:
                self._set_state(agent, "wrapped", now)
        since, self._ticked = self._ticked or now, now
        for q in self.queues.values():
            max_wait = q.config.model.max_wait
            open_now = q.config.is_open(now)
            for call in list(q.waiting.values()):  # in join order
                if call.callback:
                    continue  # below
                if now - call.joined < max_wait:
                    break  # the callers after this one joined later
                self._timed_out(q, call, now)
            for call in list(q.callbacks.values()):  # a callback's life is counted in open hours
                if q.waiting.get(call.id) is not call:  # answered, or gone
                    del q.callbacks[call.id]
                    continue
                call.open_waited += (now - since) if open_now else 0.0
                if call.open_waited >= call.expires:
                    del q.callbacks[call.id]
                    self.log("callback_expired", queue=q.config.name, call_id=call.id)
                    self._timed_out(q, call, now)
            q.timeline.sample(now, self.store.waiting(q))
            if q.next_announce and now >= q.next_announce:
                q.next_announce = now + q.config.model.announce_every if q.waiting else 0.0
                self._announce_all(q)
        self.dispatch(now)

    def _announce_all(self, q: QueueState) -> None:
        """Every waiting caller of `q` here hears their position and estimate, if either changed
        (not while an offer of theirs rings: they are about to be answered)."""
        if not q.waiting:
            return
        agents = self.logged_in(q.config.name)
        waiting = self.store.waiting(q)
        away = self.agents_away(q)

        def heard(call: Call, position: int) -> None:
            if q.waiting.get(call.id) is call and call.offered_to is None:  # still waiting, not ringing
                self._announce(q, call, position, agents, waiting, away=away)

        self.store.positions(list(q.waiting.values()), heard)

    def shutdown(self, now: float) -> None:
        """The server stops: every agent in a call or offered hears ENDED by=server (through the relay
        when on another replica) and a call is completed by=server; a connected caller here hears
        CallEnded by=server (`ended`, then the server's goodbye); waiting callers get the goodbye on
        their own. A caller of ours on another replica hears the call end as when an agent drops."""
        self.closed = True
        for call in list(self.calls.values()):
            stub = call.agent
            if stub is not None and type(stub.link) is RemoteAgent:
                stub.link.agent_event(Ended(call.id, "server"))
                call.agent = None
                self.calls.pop(call.id, None)
                self._record_end(call, "answered", "server", now, stub)
                call.link.desk_event(CallEnded("server"))
        for agent in list(self.agents.values()):
            if agent.offer is not None:
                agent.link.agent_event(Ended(agent.offer.id, "server"))
            talking = agent.call
            if talking is not None:
                agent.link.agent_event(Ended(talking.id, "server"))
                remote = type(talking.link) is RemoteCaller
                if not remote:
                    self.calls.pop(talking.id, None)
                talking.link.desk_event(CallEnded("agent" if remote else "server"))
                self._completed(self.queues[talking.queue], talking, agent, "server", now)
        for call in self.calls.values():  # still waiting: on record as the server ended them
            if not call.callback:  # a callback stays booked: the next start (or replica) takes it
                self._record_end(call, "abandoned", "server", now)
        self.calls.clear()

    # ---- offers ---------------------------------------------------------------------------------

    def dispatch(self, now: float) -> None:
        """Something changed: the store claims what can be offered (now in process; with Redis
        once this turn's changes are written)."""
        if not self.closed:
            self.store.claim_soon(now)

    def deliver(self, name: str, call: Call | str, agent_id: str, now: float) -> None:
        """The store claimed `call` (one of ours, or a remote caller it made) for our agent: ring
        them if they are still free, else give the claim back."""
        q = self.queues.get(name)
        agent = self.agents.get(agent_id)
        if isinstance(call, str):  # one of ours, by id
            ours = self.calls.get(call)
            held = ours if ours is not None and ours.agent is None and ours.offered_to is None else None
        else:
            held = call
        free = agent is not None and policy.may_take(agent.status, agent.state) and agent.offer is None
        if q is None or held is None or agent is None or not free:
            call_id = call if isinstance(call, str) else call.id
            self.store.unclaim(name, call_id, agent_id)
            if agent is not None:
                self.store.agent_changed(
                    agent
                )  # the claim took them out of the free set: put back what is true
            self.dispatch(now)
            return
        if type(held.link) is RemoteCaller:
            self.remote[held.id] = held
        self._offer(q, held, agent, now)

    def remote_caller(
        self, queue: str, call_id: str, seq: int, peer: str, context: tuple[tuple[str, str], ...]
    ) -> Call:
        """A caller on another replica, offered to one of ours (the store hands it to `deliver`)."""
        link = RemoteCaller(self.store, queue, call_id, peer, context)
        return Call(call_id, queue, seq, seq / 1e6, link)

    def _offer(self, q: QueueState, call: Call, agent: Agent, now: float) -> None:
        assert call.offered_to is None and agent.offer is None  # the compare-and-set's invariant
        call.offered_to = agent
        call.offers += 1
        agent.offer = call
        agent.ring_until = now + q.config.model.ring_timeout
        self._set_state(agent, "offer", now)
        self.offers_total += 1
        self.log("call_offered", queue=call.queue, call_id=call.id, agent=agent.id)
        agent.link.agent_event(self.offer_of(call, now))

    def offer_of(self, call: Call, now: float) -> Offer:
        """The offer of `call` as its agent sees it (again, for a console that reconnects)."""
        link = call.link
        return Offer(call.id, call.queue, int(now - call.joined), link.peer, link.handoff_context())

    def _missed(self, agent: Agent, call: Call, now: float) -> None:
        call.cooldown = (agent.id, now + policy.MISS_COOLDOWN)
        call.missed += 1
        self._withdraw(call, now)
        agent.missed += 1
        if self.records is not None:
            self.records.desk_missed(call.id, call.queue, agent.id, now)
        on_break = agent.missed >= self.queues[call.queue].config.model.max_missed
        self.log("offer_missed", queue=call.queue, call_id=call.id, agent=agent.id, in_a_row=agent.missed)
        agent.link.agent_event(Missed(call.id, on_break))
        if on_break:
            agent.status = "on_break"
            self._on_status(agent)
            self.store.agent_changed(agent)
            self.log("agent_status", agent=agent.id, status="on_break", reason="max_missed")
            agent.link.agent_event(Status(agent.status, agent.state))

    def _timed_out(self, q: QueueState, call: Call, now: float) -> None:
        self.calls.pop(call.id, None)
        self._gone_from_queue(q, call, now, "server")
        call.link.desk_event(QueueBusy("max_wait"))

    def _withdraw(self, call: Call, now: float, release: bool = True) -> Agent | None:
        """Take back the offer of `call`, if any (the other half of _offer's compare-and-set): the
        agent is idle again and keeps their place for longest-idle routing; the store hears of it
        (`release`) unless the caller is leaving anyway. Returns that agent."""
        agent = call.offered_to
        if agent is None:
            return None
        agent.offer = call.offered_to = None
        self._set_state(agent, "withdraw", now)
        if type(call.link) is RemoteCaller and call.agent is None:
            self.remote.pop(call.id, None)
        if release:
            self.store.release(call, agent)
        return agent

    def _completed(
        self, q: QueueState, call: Call, agent: Agent, by: str, now: float, disposition: str = ""
    ) -> None:
        talked = now - call.connected_at
        q.handle_time = policy.handle_time(q.handle_time, talked)
        q.talks.observe(talked)
        agent.call = None
        agent.last_call = call
        call.agent = None
        if self.remote.pop(call.id, None) is None and type(call.link) is not RemoteCaller:
            self._record_end(call, "answered", by, now, agent)  # the caller's side keeps the record
        self.store.end(q, call, agent)
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
            self._set_state(agent, "end", now)
        else:
            self._set_state(agent, "end_at_once", now)
        if agent.removed and self.agents.get(agent.id) is agent:
            self.logout(agent, now)
            agent.link.agent_event(LoggedOut("removed"))
        elif wrap <= 0:
            self.dispatch(now)  # free at once: the next caller need not wait for the clock

    def _set_state(self, agent: Agent, event: str, now: float) -> None:
        """Move the agent's state by the policy's table; the idle clock restarts unless an offer was
        only withdrawn (they keep their place for longest-idle routing)."""
        agent.state = policy.next_state(agent.state, event)
        agent.state_since = now
        if agent.state == "idle" and event != "withdraw":
            agent.idle_since = now
        self.store.agent_changed(agent)
        agent.link.agent_event(Status(agent.status, agent.state))

    def _enrol(self, agent: Agent, member: bool) -> None:
        """Add `agent` to (or take them out of) their queues' members here."""
        if agent.role != "agent":
            return
        for name in agent.queues:
            q = self.queues.get(name)
            if q is None:
                continue
            if member:
                q.agents[agent.id] = agent
                if agent.status != "on_break":
                    q.back.add(agent.id)
            else:
                q.agents.pop(agent.id, None)
                q.back.discard(agent.id)
        self.store.agent_changed(agent)

    def _on_status(self, agent: Agent) -> None:
        """The agent's status changed: their queues' count of agents not on break follows."""
        for name in agent.queues:
            q = self.queues.get(name)
            if q is not None and q.agents.get(agent.id) is agent:
                if agent.status == "on_break":
                    q.back.discard(agent.id)
                else:
                    q.back.add(agent.id)

    def _announce(
        self,
        q: QueueState,
        call: Call,
        position: int,
        agents: int,
        waiting: int | None = None,
        ringing: bool = False,
        away: bool | None = None,
    ) -> None:
        """The caller hears their position and estimate if either changed, or whether every agent
        logged in is on break did (`waiting`: the whole queue's length). `ringing`: an offer of
        theirs is ringing (or about to), so no estimate; they hear the position when one is said."""
        total = len(q.waiting) if waiting is None else max(waiting, position)
        minutes = self.estimate_minutes(q, position, agents)
        if ringing:
            call.link.desk_event(QueuePosition(position, total, minutes, ringing=True))
            return
        now_away = self.agents_away(q) if away is None else away
        if (position, minutes, now_away) != call.announced:
            call.announced = (position, minutes, now_away)
            call.link.desk_event(QueuePosition(position, total, minutes, away=now_away))

    # ---- what other replicas said (through the Redis store) ---------------------------------------

    def withdrawn(self, call_id: str, agent_id: str, by: str, now: float) -> bool:
        """The caller of an offer to one of our agents left (or their replica died); False when
        there is no such offer here (yet: it may still be on its way)."""
        call = self.remote.get(call_id)
        agent = self.agents.get(agent_id)
        if call is None or agent is None or agent.offer is not call:
            return False
        self.remote.pop(call_id, None)
        self._withdraw(call, now, release=False)
        agent.link.agent_event(Ended(call_id, by))
        self.dispatch(now)
        return True

    def connected(
        self, name: str, call_id: str, agent_id: str, agent_name: str, counts: tuple[int, int], now: float
    ) -> bool:
        """An agent on another replica answered our caller (`counts`: the offers made and missed, as
        the shared store counted them); False when the caller is gone."""
        call = self.calls.get(call_id)
        q = self.queues.get(name)
        if call is None or q is None or call.agent is not None:
            return False
        q.waiting.pop(call.id, None)
        call.offers, call.missed = counts
        stub = Agent(agent_id, agent_name, (), "agent", RemoteAgent(self.store, name, call_id), now)
        stub.call = call
        call.agent = stub
        call.connected_at = now
        call.link.desk_event(AgentConnected(agent_id, agent_name))
        return True

    def relayed(
        self, name: str, call_id: str, direction: str, line: str | None, end: str | None, now: float
    ) -> None:
        """A line (or the end) from the other side of a call across replicas. `direction` up: the
        caller's, for our agent; down: the agent's, for our caller."""
        if direction == "up":
            call = self.remote.get(call_id)
            if call is None or call.agent is None:
                return
            agent = call.agent
            if line is not None:
                agent.link.agent_event(CallerSaid(call_id, line))
            else:
                agent.link.agent_event(Ended(call_id, end or "caller"))
                self._completed(self.queues[name], call, agent, end or "caller", now)
            return
        call = self.calls.get(call_id)
        if call is None or call.agent is None or type(call.agent.link) is not RemoteAgent:
            return
        if line is not None:
            call.link.desk_event(AgentLine(line))
        else:
            stub = call.agent
            self.calls.pop(call_id, None)
            call.agent = None
            self._record_end(call, "answered", end or "agent", now, stub)
            call.link.desk_event(CallEnded("agent"))

    def resync(self, now: float) -> None:
        """Our lease lapsed (Redis restarted or was away too long) and others may have reaped us: our
        agents and waiting callers go back (waiting callers at their join time), and what crossed
        replicas ends (the other end heard so)."""
        for call in list(self.calls.values()):
            agent = call.agent
            if agent is not None and type(agent.link) is RemoteAgent:
                self.store.forget(call)
                self.calls.pop(call.id, None)
                call.agent = None
                self._record_end(call, "answered", "server", now, agent)
                call.link.desk_event(CallEnded("agent"))
            elif agent is None and call.seq:
                self.store.rejoin(self.queues[call.queue], call)
        for agent in list(self.agents.values()):
            held = agent.call or agent.offer
            if held is not None and type(held.link) is RemoteCaller:
                agent.link.agent_event(Ended(held.id, "caller"))
                if agent.offer is held:
                    self.remote.pop(held.id, None)
                    self._withdraw(held, now, release=False)
                else:
                    self._completed(self.queues[held.queue], held, agent, "caller", now)
            self.store.login(agent, functools.partial(self._login_held, agent, now=now))
            self.store.agent_changed(agent)

    # ---- for the board, the metrics and tests --------------------------------------------------------

    def agent_rows(self, now: float) -> list[dict[str, Any]]:
        """The board's table of agents (and supervisors) logged in, on every replica."""
        rows = self.store.agent_rows(agent_rows(self.agents.values(), now), now)
        for row in rows:
            scores = self.scores.get(str(row["id"]))
            row["csat"] = scores.average(now) if scores is not None else None
        return rows

    def agents_of(self, queue: str) -> Iterable[Agent]:
        """The logged-in agents (not supervisors) of `queue` here."""
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
