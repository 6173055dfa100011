"""The in-process store: the whole queue lives in this process (no HOTLINE_REDIS_URL). It answers
every call of the store interface (app/desk/store.py) at once, before the method returns.

A caller's position is a rank in a sorted list of join numbers (O(log n)); the free agents of each
queue are kept as they change (`agent_changed`), so a claim looks only at the head of the queue and
the free agents, and asks app/desk/policy.py for the pairs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from sortedcontainers import SortedList  # type: ignore[import-untyped]

from app.desk import policy
from app.desk.model import Agent, Call, Counts, QueueState, SharedHealth
from app.desk.store import Joined, Left, Owner


class LocalStore:
    """Every queue of the desk in this process's memory."""

    replica = ""

    def __init__(self) -> None:
        self.desk: Owner | None = None
        self.order: dict[str, SortedList] = {}  # queue -> join numbers of its waiting callers
        self.free: dict[str, dict[str, Agent]] = {}  # queue -> its agents available and idle
        self.member_of: dict[str, frozenset[str]] = {}  # agent id -> queues they are free-listed in
        self.rr: dict[str, str] = {}  # round_robin: the agent offered last, per queue
        self.seq = 0
        self.claiming = False
        self.again = False

    def bind(self, desk: Owner) -> None:
        self.desk = desk

    def _desk(self) -> Owner:
        assert self.desk is not None, "a store is bound to its desk first"
        return self.desk

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def health(self) -> SharedHealth | None:
        return None

    # ---- callers ----

    def join(self, q: QueueState, call: Call, done: Callable[[Joined | str], None]) -> None:
        name = q.config.name
        order = self.order.setdefault(name, SortedList())
        agents = len(q.agents)
        if agents == 0:
            done("no_agents")
        elif len(order) >= q.config.model.max_waiting:
            done("full")
        else:
            self.seq += 1
            call.seq = self.seq
            order.add(call.seq)
            done(Joined(len(order), len(order), agents, len(self.free.get(name, ()))))

    def rejoin(self, q: QueueState, call: Call) -> None:
        """A callback kept in the records, back after a restart: at the end of the queue as it is
        (callbacks come back in their join order, before any new caller)."""
        order = self.order.setdefault(q.config.name, SortedList())
        self.seq += 1
        call.seq = self.seq
        order.add(call.seq)

    def book(self, call: Call, number: str, context: str, done: Callable[[bool], None]) -> None:
        """A waiting caller becomes a callback, unless the same number waits already (False)."""
        desk = self._desk()
        twice = any(c.callback == number for c in desk.queues[call.queue].waiting.values() if c is not call)
        done(not twice)

    def unbook(self, call: Call) -> None:
        return None  # the desk's own calls say which numbers wait

    def leave(self, call: Call, by: str, done: Callable[[Left | None], None]) -> None:
        order = self.order.get(call.queue)
        if order is None or call.seq not in order:
            done(None)
            return
        position = int(order.index(call.seq)) + 1
        order.remove(call.seq)
        done(Left(position))

    def positions(self, calls: list[Call], done: Callable[[Call, int], None]) -> None:
        for call in calls:
            order = self.order.get(call.queue)
            if order is not None and call.seq in order:
                done(call, int(order.index(call.seq)) + 1)

    def waiting(self, q: QueueState) -> int:
        return len(self.order.get(q.config.name, ()))

    # ---- offers ----

    def claim_soon(self, now: float) -> None:
        if self.claiming:  # a delivery that failed asked again: after this round
            self.again = True
            return
        self.claiming = True
        try:
            self._claim(now)
            while self.again:
                self.again = False
                self._claim(now)
        finally:
            self.claiming = False

    def _claim(self, now: float) -> None:
        desk = self._desk()
        for name, q in desk.queues.items():
            free = self.free.get(name)
            if not q.waiting or not free:
                continue
            model = q.config.model
            agents = [policy.Free(a.id, a.idle_since, a.calls) for a in free.values()]
            open_now = q.config.is_open(now)
            chosen = policy.pairs(_waiting(q), agents, model.strategy, self.rr.get(name, ""), now, open_now)
            if chosen and model.strategy == "round_robin":
                self.rr[name] = chosen[-1][1]
            for call_id, agent_id in chosen:
                desk.deliver(name, call_id, agent_id, now)

    def unclaim(self, queue: str, call_id: str, agent_id: str) -> None:
        return None  # the desk's own objects say who is offered; nothing was marked here

    def release(self, call: Call, agent: Agent) -> None:
        return None  # the call carries its rejections and cool-down; the agent's free-ness follows

    def accept(self, call: Call, agent: Agent, done: Callable[[bool], None]) -> None:
        order = self.order.get(call.queue)
        if order is not None and call.seq in order:
            order.remove(call.seq)
        done(True)

    def end(self, q: QueueState, call: Call, agent: Agent) -> None:
        return None

    def forget(self, call: Call) -> None:
        return None

    # ---- agents ----

    def agent_changed(self, agent: Agent) -> None:
        """Keep the agent in their queues' free lists exactly while they may be offered a call."""
        desk = self._desk()
        logged_in = agent.role == "agent" and desk.agents.get(agent.id) is agent and not agent.removed
        queues = frozenset(n for n in agent.queues if n in desk.queues) if logged_in else frozenset()
        free = logged_in and policy.may_take(agent.status, agent.state) and agent.offer is None
        for name in queues | self.member_of.pop(agent.id, frozenset()):
            if free and name in queues:
                self.free.setdefault(name, {})[agent.id] = agent
            else:
                self.free.get(name, {}).pop(agent.id, None)
        if queues:
            self.member_of[agent.id] = queues

    def login(self, agent: Agent, done: Callable[[str | None], None]) -> None:
        done(None)  # the desk itself keeps an id to one login

    def logout(self, agent: Agent) -> None:
        return None

    # ---- across replicas: none ----

    def relay(self, queue: str, call_id: str, direction: str, kind: str, value: str) -> None:
        raise AssertionError("no call crosses replicas in process")

    # ---- what the queues look like ----

    def summary(self, queue: str) -> Counts | None:
        return None

    def counts(self, queues: list[str], now: float, done: Callable[[dict[str, Counts]], None]) -> None:
        desk = self._desk()
        done({name: desk.local_counts(name, now) for name in queues if name in desk.queues})

    def agent_rows(self, rows: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
        return rows


def _waiting(q: QueueState) -> Iterator[policy.Waiting]:
    """The queue's callers in order, as the policy sees them: only those not being offered (the
    policy skips the others; there may be many ringing at the head of a long queue)."""
    for call in q.waiting.values():
        if call.offered_to is None:
            yield policy.Waiting(call.id, False, call.rejected, call.cooldown, bool(call.callback))
