"""The desk's contract, run unchanged against both stores: the in-process one, and the Redis one on a
real redis-server (with a simulated clock: the store's time is the desk's). Random joins, leaves,
logins, readies, accepts, rejects, ends, drops, reloads and ticks: no caller is ever offered to two
agents, no agent holds two offers, first come first served holds at every offer, no waiting caller
is lost, and the store's queue and free agents agree with the desk's own view."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import uvloop
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from app.desk.desk import Desk
from app.desk.events import Missed, Offer
from app.desk.loader import DeskConfig, QueueConfig
from app.desk.model import Agent, DeskError
from app.desk.policy import MISS_COOLDOWN
from app.desk.queue import LocalStore
from app.desk.redis import RedisStore
from app.desk.redis.keys import queue_key
from app.desk.schema import AgentModel, QueueModel
from app.menu.events import CallEnded, QueueBusy, QueueClosed, QueuePosition
from tests.servers import RedisServer

T0 = 1_800_000_000.0
R = TypeVar("R")
REDIS: list[RedisServer] = []  # the module's redis-server, for the machines (which take no fixtures)


@pytest.fixture(scope="module", autouse=True)
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    REDIS.append(server)
    yield server
    REDIS.clear()
    server.stop()


def config(n_agents: int = 4, **queue: Any) -> DeskConfig:
    model = QueueModel(**queue)
    agents = {
        str(1000 + i): AgentModel(id=str(1000 + i), name=f"a{i}", password_hash="x", queues=["default"])
        for i in range(1, n_agents + 1)
    }
    return DeskConfig({"default": QueueConfig("default", model, None)}, agents)


class Link:
    """Records what the desk tells one caller or agent; an agent's link checks, at every offer, that
    no caller ahead of the offered one could have been offered to this agent instead."""

    def __init__(self, harness: Harness | None = None, agent_id: str = "") -> None:
        self.events: list[Any] = []
        self.peer = "127.0.0.1:1"
        self.harness = harness
        self.agent_id = agent_id

    def handoff_context(self) -> tuple[tuple[str, str], ...]:
        return (("path", "main>agent"),)

    def desk_event(self, event: Any) -> None:
        self.events.append(event)

    def agent_event(self, event: Any) -> None:
        self.events.append(event)
        if isinstance(event, Offer) and self.harness is not None:
            self.harness.first_come_first_served(event.call_id, self.agent_id)


class Harness:
    """One desk over one kind of store; `step` runs a desk call and lets the store settle."""

    def __init__(self, kind: str, desk_config: DeskConfig) -> None:
        self.kind = kind
        self.now = T0
        self.unfair: list[str] = []  # offers that broke first come, first served
        self.loop: asyncio.AbstractEventLoop | None = None
        store: LocalStore | RedisStore
        if kind == "redis":
            REDIS[0].flush()
            self.loop = uvloop.new_event_loop()
            store = RedisStore(REDIS[0].url, "contract", clock=lambda: self.now)
        else:
            store = LocalStore()
        self.store = store
        self.desk = Desk(desk_config, store=store)
        self.run(self.desk.start())

    def run(self, coro: Any) -> Any:
        if self.loop is None:  # the in-process store: a loop of its own for the moment
            return asyncio.run(coro)
        return self.loop.run_until_complete(coro)

    def step(self, fn: Callable[[], R]) -> R:
        if self.loop is None:
            return fn()

        async def stepped() -> R:
            result = fn()
            await self.settle()
            return result

        return self.loop.run_until_complete(stepped())

    async def settle(self) -> None:
        """Until the store has nothing queued, nothing in flight and no callback left to run."""
        store = self.store
        assert isinstance(store, RedisStore)
        quiet = 0
        for _ in range(500):
            await asyncio.sleep(0)
            busy = store.flushing or store.commands.pending or not store.commands.idle.is_set()
            if busy:
                quiet = 0
                await store.commands.drained(2.0)
            else:
                quiet += 1
                if quiet >= 3:
                    return
        raise AssertionError("the store did not settle")

    def close(self) -> None:
        if self.loop is not None:
            self.step(lambda: self.desk.shutdown(self.now))  # in the loop, as the server does
            self.loop.run_until_complete(self.desk.close())
            self.loop.close()

    # ---- the store's view, to hold against the desk's ----

    def waiting_ids(self) -> list[str]:
        if isinstance(self.store, RedisStore):
            ids: list[str] = self.run(self.store.redis.zrange(queue_key("default", "waiting"), 0, -1))
            return ids
        by_seq = {c.seq: c.id for c in self.desk.calls.values()}
        return [by_seq[s] for s in self.store.order.get("default", ())]

    def free_ids(self) -> set[str]:
        if isinstance(self.store, RedisStore):
            return set(self.run(self.store.redis.zrange(queue_key("default", "free"), 0, -1)))
        return set(self.store.free.get("default", {}))

    def first_come_first_served(self, call_id: str, agent_id: str) -> None:
        """At an offer of `call_id` to `agent_id`: every caller ahead of it is being offered to
        someone, or rejected this agent (a cool-down holds the agent for that caller instead).
        Noted, not raised: the Redis store runs this inside its callbacks, which log and go on."""
        for call in self.desk.queues["default"].waiting.values():
            if call.id == call_id:
                return
            if call.offered_to is None and agent_id not in call.rejected:
                self.unfair.append(f"{agent_id} offered {call_id} while {call.id} (ahead) waits unoffered")


class DeskMachine(RuleBasedStateMachine):
    kind = "local"

    def __init__(self) -> None:
        super().__init__()
        self.full = config(ring_timeout=5, wrap_up=2, max_wait=120, max_waiting=50)
        self.h = Harness(self.kind, self.full)
        self.d = self.h.desk
        self.n = 0
        self.gone: set[str] = set()  # callers who hung up, timed out or finished
        self.callers: dict[str, Link] = {}

    def teardown(self) -> None:
        self.h.close()

    @rule()
    def join(self) -> None:
        self.n += 1
        cid = f"c{self.n}"
        link = Link()
        self.callers[cid] = link
        self.h.step(lambda: self.d.join("default", cid, link, self.h.now))
        if cid not in self.d.calls:
            self.gone.add(cid)

    @rule(i=st.integers(0, 60))
    def leave(self, i: int) -> None:
        cid = f"c{i}"
        if cid in self.d.calls:
            self.h.step(lambda: self.d.leave(cid, self.h.now))
            self.gone.add(cid)

    @rule(i=st.integers(1, 4), status=st.sampled_from(["available", "on_break"]))
    def login_or_status(self, i: int, status: str) -> None:
        aid = str(1000 + i)
        if aid not in self.d.agents and aid not in self.d.config.agents:
            return  # removed by a reload: cannot log in

        def act() -> None:
            agent = self.d.agents.get(aid) or self.d.login(aid, Link(self.h, aid), self.h.now)
            self.d.set_status(agent, status, self.h.now)

        self.h.step(act)

    @rule(keep=st.sets(st.integers(1, 4)))
    def reload(self, keep: set[int]) -> None:
        """desk.yaml reloaded with only some of the agents: the others go after their call."""
        agents = {aid: a for aid, a in self.full.agents.items() if int(aid) - 1000 in keep}
        self.h.step(lambda: self.d.configure(DeskConfig(self.d.config.queues, agents), self.h.now))

    @rule(i=st.integers(1, 4), what=st.sampled_from(["accept", "reject", "end", "logout"]))
    def act(self, i: int, what: str) -> None:
        agent = self.d.agents.get(str(1000 + i))
        if agent is None:
            return

        def act() -> None:
            try:
                if what == "logout":
                    self.d.logout(agent, self.h.now)
                else:
                    getattr(self.d, what)(agent, self.h.now)
            except DeskError:
                pass

        self.h.step(act)

    @rule(seconds=st.floats(0.1, 30))
    def tick(self, seconds: float) -> None:
        self.h.now += seconds
        self.h.step(lambda: self.d.tick(self.h.now))

    @invariant()
    def one_offer_each(self) -> None:
        offered = [a.offer.id for a in self.d.agents.values() if a.offer is not None]
        assert len(offered) == len(set(offered))
        for a in self.d.agents.values():
            if a.offer is not None:
                assert a.state == "offered" and a.offer.offered_to is a and a.call is None
            if a.state == "offered":
                assert a.offer is not None
        for call in self.d.calls.values():
            if call.offered_to is not None:
                assert call.offered_to.offer is call

    @invariant()
    def first_come_first_served(self) -> None:
        assert not self.h.unfair

    @invariant()
    def the_store_agrees(self) -> None:
        q = self.d.queues["default"]
        members = {a.id for a in self.d.agents.values() if a.role == "agent" and "default" in a.queues}
        assert set(q.agents) == members
        free = {
            a.id
            for a in self.d.agents.values()
            if a.id in members and not a.removed and a.status == "available" and a.state == "idle"
        }
        assert self.h.free_ids() == free
        assert self.h.waiting_ids() == list(q.waiting)  # join order, whatever the store

    @invariant()
    def nobody_lost(self) -> None:
        q = self.d.queues["default"]
        connected = {a.call.id for a in self.d.agents.values() if a.call is not None}
        assert set(self.d.calls) == set(q.waiting) | connected
        for cid, link in self.callers.items():
            ended = any(isinstance(e, QueueBusy | QueueClosed | CallEnded) for e in link.events)
            # every caller is waiting, talking, or was told why not (or left by themselves)
            assert (cid in self.d.calls) or ended or cid in self.gone


class RedisDeskMachine(DeskMachine):
    kind = "redis"


DeskMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
RedisDeskMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=40, deadline=None)
test_desk_contract_in_process = DeskMachine.TestCase
test_desk_contract_on_redis = RedisDeskMachine.TestCase


# ---- the defects found by trying it, on both stores ------------------------------------------------


@pytest.fixture(params=["local", "redis"])
def harness(request: pytest.FixtureRequest) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(**queue: Any) -> Harness:
        made.append(Harness(request.param, config(**queue)))
        return made[-1]

    yield make
    for h in made:
        h.close()


def _ready(h: Harness, agent_id: str) -> tuple[Agent, Link]:
    link = Link(h, agent_id)

    def act() -> Agent:
        agent = h.desk.login(agent_id, link, h.now)
        h.desk.set_status(agent, "available", h.now)
        return agent

    return h.step(act), link


def test_a_missed_offer_holds_the_agent_for_that_caller_first_come_first_served(
    harness: Callable[..., Harness],
) -> None:
    """Two callers wait; the only ready agent misses the first's offer: the agent is not offered the
    second meanwhile (it is held for the first), and gets the first again after the cool-down."""
    h = harness(ring_timeout=15, wrap_up=0)
    first, second = Link(), Link()
    agent, link = _ready(h, "1001")
    h.step(lambda: h.desk.join("default", "first", first, h.now))
    h.now += 1
    h.step(lambda: h.desk.join("default", "second", second, h.now))
    assert [e.call_id for e in link.events if isinstance(e, Offer)] == ["first"]
    h.now += 15  # the ring timeout passes
    h.step(lambda: h.desk.tick(h.now))
    assert [e.call_id for e in link.events if isinstance(e, Missed)] == ["first"]
    assert agent.state == "idle" and agent.offer is None  # free, but held for the first caller
    for _ in range(4):
        h.now += 1
        h.step(lambda: h.desk.tick(h.now))
        assert [e.call_id for e in link.events if isinstance(e, Offer)] == ["first"]
    h.now += MISS_COOLDOWN
    h.step(lambda: h.desk.tick(h.now))
    assert [e.call_id for e in link.events if isinstance(e, Offer)] == ["first", "first"]
    other, other_link = _ready(h, "1002")  # a second agent takes the second caller at once
    assert [e.call_id for e in other_link.events if isinstance(e, Offer)] == ["second"]
    assert other.offer is not None and any(isinstance(e, QueuePosition) for e in second.events)
    assert not h.unfair


def test_queue_counts_are_exact_when_asked(harness: Callable[..., Harness]) -> None:
    """/queue counts every caller waiting and the asking agent's own last change at once (a replica
    used to answer from a summary refreshed each second)."""
    h = harness(ring_timeout=15, wrap_up=0)
    agent, _ = _ready(h, "1001")
    h.step(lambda: h.desk.set_status(agent, "on_break", h.now))
    for i in range(2):
        h.step(lambda i=i: h.desk.join("default", f"c{i}", Link(), h.now))
    counted: list[Any] = []
    h.step(lambda: h.desk.counts(["default"], h.now, counted.append))
    assert counted[-1]["default"].waiting == 2 and counted[-1]["default"].available == 0
    h.step(lambda: h.desk.set_status(agent, "available", h.now))
    h.step(lambda: h.desk.accept(agent, h.now))
    h.step(lambda: h.desk.counts(["default"], h.now, counted.append))
    assert (counted[-1]["default"].waiting, counted[-1]["default"].busy) == (1, 1)
