"""The agent desk shared by replicas through Redis (HOTLINE_REDIS_URL; AGENT_DESK.md, "Scale-out").

How this works: the in-process Desk (app.desk.core) still runs this replica's agents (status, state,
ring timeouts, wrap-up) and callers (their links, max_wait); what replicas share lives in Redis
(app.desk.store): each queue's waiting callers by join time, its logged-in and free agents, offers,
connections. Every change is a command on one ordered pipeline (store.Commands); the desk's methods
stay synchronous and their answers come back as callbacks.

- A caller joins with the JOIN script (position = rank by join time, across replicas). Any replica
  runs CLAIM when something changed: it pairs the head callers with free agents by the strategy and
  marks both in one step; the offer goes to the agent's replica (its inbox stream, or directly when it
  is this one), which checks the agent is still free (else RELEASE) and rings them.
- /accept is a compare-and-set (ACCEPT) on the offer; the caller's replica hears `connected` in its
  inbox. From then on the call's lines go through two streams, up (caller to agent) and down, read by
  one XREAD per replica; the end of a call is the last entry of its stream, so nothing is lost or
  reordered. A call whose two ends are on one replica never touches Redis after the accept.
- The other end is a link like any other: RemoteCaller (a CallerLink) and RemoteAgent (an AgentLink)
  write to the streams, so the core's code for lines and endings is the same.
- Each replica renews a lease every second (PX 3000). Every replica's janitor reaps a replica whose
  lease lapsed (REAP, once per dead replica by a SET NX lock): its callers and agents leave the shared
  queues, agents it was offering to hear ENDED, the other ends of its calls hear that they ended.
- Redis away: commands fail at once, new transfers take `on_busy` (logged once as
  `desk_shared_unavailable`), calls within one replica go on. Back: redis-py reconnects on the next
  command; a replica that finds its lease gone puts its agents and waiting callers back (same join
  time) and ends its calls that crossed replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import secrets
import socket
import time
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from app.desk import store
from app.desk.core import Agent, Call, CallerLink, Desk, Log, QueueState, SharedHealth
from app.desk.events import AgentEvent, CallerSaid, Ended, LoggedOut
from app.desk.loader import DeskConfig
from app.desk.store import (
    ACCEPT,
    CLAIM,
    END,
    FORGET_LOGINS,
    JOIN,
    LEAVE,
    LOGIN,
    LOGINS,
    LOGOUT,
    QUEUES,
    REAP,
    RELEASE,
    REPLICAS,
    Commands,
    inbox_key,
    lease_key,
    queue_key,
    queue_keys,
    relay_key,
)
from app.logs import without_password
from app.menu.events import (
    AgentConnected,
    AgentLine,
    CallEnded,
    DeskEvent,
    QueueBusy,
)

log = structlog.get_logger("hotline.desk")

LEASE_MS = 3000  # a replica's lease lives this long unless renewed (AGENT_DESK.md: at most 3 s)
RENEW_EVERY = 1.0  # seconds between renewals, janitor rounds and queue summaries
CLAIM_SCAN = 64  # callers from the head of a queue one claim looks at
STREAM_MAX = 10_000  # entries kept in a replica's inbox / a call's stream (approximate trim)
RELAY_TTL = 86_400  # a call's streams expire a day after the call started, should both replicas die
GONE_FOR = 30.0  # seconds a withdrawn call id is remembered, so a late offer of it is dropped
BLOCK_MS = 1000
CLOSE_WAIT = 2.0  # seconds close() waits for the reader and for redis-py to close its connections


def replica_name() -> str:
    """This process's name among replicas: host, pid and a random part (a restart is a new replica)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class RemoteCaller:
    """A caller on another replica, as the agent's replica sees them (a CallerLink): what the desk
    tells the caller goes down the call's stream."""

    __slots__ = ("call_id", "context", "desk", "peer", "queue")

    def __init__(
        self, desk: SharedDesk, queue: str, call_id: str, peer: str, context: tuple[tuple[str, str], ...]
    ) -> None:
        self.desk = desk
        self.queue = queue
        self.call_id = call_id
        self.peer = peer
        self.context = context

    def handoff_context(self) -> tuple[tuple[str, str], ...]:
        return self.context

    def desk_event(self, event: DeskEvent) -> None:
        if isinstance(event, AgentLine):
            self.desk.relay(self.queue, self.call_id, "down", "l", event.text)
        elif isinstance(event, CallEnded):
            self.desk.relay(self.queue, self.call_id, "down", "e", event.by)
        # AgentConnected: the caller's replica hears it from the accept itself (its inbox)


class RemoteAgent:
    """An agent on another replica, as the caller's replica sees them (an AgentLink)."""

    __slots__ = ("call_id", "desk", "queue")

    def __init__(self, desk: SharedDesk, queue: str, call_id: str) -> None:
        self.desk = desk
        self.queue = queue
        self.call_id = call_id

    def agent_event(self, event: AgentEvent) -> None:
        if isinstance(event, CallerSaid):
            self.desk.relay(self.queue, self.call_id, "up", "l", event.text)
        elif isinstance(event, Ended):
            self.desk.relay(self.queue, self.call_id, "up", "e", event.by)


def _failed(result: object) -> bool:
    return isinstance(result, Exception)


class SharedDesk(Desk):
    """The Desk with its queues in Redis. Same methods, same events; see the module's docstring."""

    def __init__(self, config: DeskConfig, log_: Log, url: str, replica: str = "") -> None:
        super().__init__(config, log_)
        self.replica = replica or replica_name()
        self.url = url
        self.redis: Redis = Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=2.0,
            socket_timeout=BLOCK_MS / 1000 + 4.0,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self.commands = Commands(self.redis)
        self.remote: dict[str, Call] = {}  # callers on other replicas offered to / talking with our agents
        self.streams: dict[str, str] = {inbox_key(self.replica): "0-0"}  # what the reader reads, from where
        self.readers: dict[str, tuple[str, str, str]] = {}  # relay stream -> (queue, call id, whose side)
        # queue -> (waiting, longest wait, available, busy, logged in), whole shared queue
        self.summaries: dict[str, tuple[int, int, int, int, int]] = {}
        self.everyone: dict[str, dict[str, Any]] = {}  # agent id -> shared entry, every replica's
        self.gone: dict[str, float] = {}  # call ids withdrawn before their offer arrived -> until
        self.dirty: set[Agent] = set()  # agents whose shared entry is to be written
        self.written: dict[str, frozenset[str]] = {}  # agent id -> the queues their entry is in
        self.flushing = False
        self.claims = False  # a claim round is due at the next flush
        self.leased = False  # holds a lease (renewed in time since it was taken)
        self.up = True  # Redis answered the last time we asked
        self.reaped_total = 0
        self.stopping = False  # close() has begun: the reader stops after its current read
        self.tasks: list[asyncio.Task[None]] = []  # the command stream, the reader, the lease
        self.reader: asyncio.Task[None] | None = None

    # ---- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self.reader = asyncio.create_task(self._read(), name="desk-reader")
        self.tasks = [
            asyncio.create_task(self.commands.run(), name="desk-commands"),
            self.reader,
            asyncio.create_task(self._maintain(), name="desk-lease"),
        ]
        log.info("desk_shared", replica=self.replica, redis=without_password(self.url))

    async def close(self) -> None:
        """After shutdown(): this replica's callers and agents leave the shared state at once (the
        others need not wait for the lease to lapse), then the connection closes."""
        if not self.tasks:  # never started (the server stopped before it could)
            await self.redis.aclose()
            return
        await self.commands.drained()  # what shutdown() asked for goes first
        self.stopping = True
        self._tell(self.replica, t="wake")  # the reader returns from its blocking read, and stops
        with contextlib.suppress(TimeoutError, RedisError, OSError):  # a Redis that does not answer:
            await asyncio.wait_for(self._reap(self.replica), 2 * CLOSE_WAIT)  # the lease lapses instead
        await self.commands.drained()  # and what the reaping tells the other replicas
        with contextlib.suppress(RedisError, OSError):
            await self.redis.delete(lease_key(self.replica), inbox_key(self.replica))
        # Bounded: redis-py can hang cancelling a blocking read or closing its sockets (redis-py #2579,
        # #3941), and a replica that does not stop holds up a rolling upgrade.
        for task in self.tasks:
            if task is not self.reader:  # the reader ends by itself
                task.cancel()
        await asyncio.wait(self.tasks, timeout=CLOSE_WAIT)
        for task in self.tasks:
            task.cancel()
        with contextlib.suppress(TimeoutError, RedisError, OSError):
            await asyncio.wait_for(self.redis.aclose(), CLOSE_WAIT)

    def shared_health(self) -> SharedHealth:
        return SharedHealth(self.up, self.commands.sent, self.commands.failed, self.reaped_total)

    def shutdown(self) -> None:
        for call in list(self.calls.values()):
            agent = call.agent
            if agent is not None and isinstance(agent.link, RemoteAgent):
                agent.link.agent_event(Ended(call.id, "server"))
        super().shutdown()

    # ---- callers --------------------------------------------------------------------------------

    def logged_in(self, queue: str) -> int:
        summary = self.summaries.get(queue)
        return summary[4] if summary is not None else super().logged_in(queue)

    def join(self, queue: str, call_id: str, link: CallerLink, now: float) -> bool:
        q = self._open_queue(queue, link, now)
        if q is None:
            return False
        call = Call(call_id, queue, 0, now, link)
        self.calls[call_id] = call
        q.waiting[call_id] = call  # this replica's waiting callers, in join order (for max_wait)
        self._send_join(q, call, "", lambda result: self._joined(q, call, result, now))
        return True

    def _send_join(self, q: QueueState, call: Call, score: str, done: store.Done | None = None) -> None:
        """JOIN: a new caller (score ""), or one put back at their join time after Redis lost them."""
        context = json.dumps(call.link.handoff_context(), ensure_ascii=False)
        self.commands.script(
            JOIN,
            queue_keys(call.queue, "waiting", "calls", "agents"),
            [call.id, self.replica, call.link.peer, context, q.config.model.max_waiting, score],
            done=done,
        )

    def _joined(self, q: QueueState, call: Call, result: Any, now: float) -> None:
        if self.calls.get(call.id) is not call:
            return  # gone already; its LEAVE came after the JOIN
        failed = _failed(result)
        if failed or result[0] != "ok":
            if failed:
                self._down(result)
            reason = "unavailable" if failed else str(result[1])
            self.calls.pop(call.id, None)
            q.waiting.pop(call.id, None)
            q.count("busy")
            self.log("queue_busy", queue=q.config.name, reason=reason)
            call.link.desk_event(QueueBusy(reason))
            return
        _, score, position, waiting, agents = result
        call.seq = int(score)
        q.timeline.sample(now, int(waiting))
        self.log("queue_entered", queue=q.config.name, call_id=call.id, position=int(position))
        self._announce(q, call, int(position), int(agents), int(waiting))
        if not q.next_announce:
            q.next_announce = now + q.config.model.announce_every
        self.dispatch(now)

    def _announce_all(self, q: QueueState) -> None:
        """Positions are ranks in the shared queue: one ZRANK each, in the next pipeline."""
        name = q.config.name
        key = queue_key(name, "waiting")
        for call in list(q.waiting.values()):
            if call.seq:
                self.commands.command("ZRANK", key, call.id, done=functools.partial(self._ranked, q, call))

    def _ranked(self, q: QueueState, call: Call, rank: Any) -> None:
        if isinstance(rank, int) and q.waiting.get(call.id) is call:
            summary = self.summaries.get(q.config.name)
            waiting = summary[0] if summary is not None else len(q.waiting)
            self._announce(q, call, rank + 1, self.logged_in(q.config.name), waiting)

    def leave(self, call_id: str, now: float) -> None:
        call = self.calls.pop(call_id, None)
        if call is None:
            return
        q = self.queues[call.queue]
        agent = call.agent
        if agent is not None:  # connected
            agent.link.agent_event(Ended(call.id, "caller"))
            if isinstance(agent.link, RemoteAgent):
                call.agent = None
                self._unread(call.queue, call.id, "down")
                self.commands.command("HDEL", queue_key(call.queue, "calls"), call.id)
            else:
                self._completed(q, call, agent, "caller", now)
            return
        self._gone_from_queue(q, call, now, "caller")

    def _timed_out(self, q: QueueState, call: Call, now: float) -> None:
        self.calls.pop(call.id, None)
        self._gone_from_queue(q, call, now, "server")
        call.link.desk_event(QueueBusy("max_wait"))

    def _gone_from_queue(self, q: QueueState, call: Call, now: float, by: str) -> None:
        """A waiting caller of this replica leaves: hung up (by=caller) or max_wait (by=server)."""
        offered = self._withdraw(call, now, release=False)
        self._unqueue(q, call)
        if offered is not None:
            offered.link.agent_event(Ended(call.id, by))
        self.commands.script(
            LEAVE,
            queue_keys(call.queue, "waiting", "calls"),
            [call.id],
            done=lambda result: self._left(q, call, result, now, by),
        )

    def _left(self, q: QueueState, call: Call, result: Any, now: float, by: str) -> None:
        if _failed(result):
            self._down(result)
        position = 0
        if isinstance(result, list):
            agent, replica, position, connected = result[0], result[1], int(result[2]), result[3]
            if agent and replica != self.replica:
                self._tell(replica, t="withdrawn", q=call.queue, c=call.id, a=agent, by=by)
            if connected:  # answered elsewhere before we heard of it: that call is over too
                self.relay(call.queue, call.id, "up", "e", "caller")
                return  # answered, not abandoned: the agent's replica logs how it ended
        waited = round(now - call.joined)
        if by == "caller":
            q.count("abandoned")
            q.today.abandon(now)
            self.log("queue_abandoned", queue=call.queue, call_id=call.id, position=position, waited=waited)
        else:
            q.count("timeout")
            q.today.time_out(now)
            self.log("queue_timeout", queue=call.queue, call_id=call.id, waited=waited)
        self.dispatch(now)

    def _unqueue(self, q: QueueState, call: Call) -> None:
        q.waiting.pop(call.id, None)

    # ---- agents ---------------------------------------------------------------------------------

    def login(self, agent_id: str, link: Any, now: float) -> Agent:
        agent = super().login(agent_id, link, now)
        self._claim_login(agent)
        return agent

    def _claim_login(self, agent: Agent) -> None:
        def done(owner: Any) -> None:
            if isinstance(owner, str) and self.agents.get(agent.id) is agent:
                self.log("agent_logged_in_elsewhere", agent=agent.id, replica=owner)
                self.logout(agent, time.time(), release=False)
                agent.link.agent_event(LoggedOut("elsewhere"))

        self.commands.script(LOGIN, [LOGINS], [agent.id, self.replica], done=done)

    def logout(self, agent: Agent, now: float, release: bool = True) -> None:
        was = self.agents.get(agent.id) is agent
        super().logout(agent, now)
        if was and release:
            self.commands.script(LOGOUT, [LOGINS], [agent.id, self.replica])

    def accept(self, agent: Agent, now: float) -> Call:
        call = super().accept(agent, now)
        self.commands.script(
            ACCEPT,
            queue_keys(call.queue, "waiting", "calls"),
            [call.id, agent.id, self.replica],
            done=lambda replica: self._accepted(agent, call, replica),
        )
        if isinstance(call.link, RemoteCaller):  # before any line or /end of the agent's can be sent
            self._open_relay(call.queue, call.id)
        return call

    def _holds(self, call: Call) -> bool:
        if isinstance(call.link, RemoteCaller):
            return self.remote.get(call.id) is call
        return super()._holds(call)

    def _accepted(self, agent: Agent, call: Call, replica: Any) -> None:
        remote = isinstance(call.link, RemoteCaller)
        if isinstance(replica, str):
            if remote:  # tell the caller's replica (even if the agent has ended already: it reads that)
                if agent.call is call:
                    self._read_relay(call.queue, call.id, "up")
                self._tell(replica, t="connected", q=call.queue, c=call.id, a=agent.id, n=agent.name)
            return
        if remote:
            self.commands.command(
                "DEL", relay_key(call.queue, call.id, "up"), relay_key(call.queue, call.id, "down")
            )
        if _failed(replica):
            self._down(replica)
            if not remote:
                return  # both ends here: the call goes on without Redis
        if agent.call is not call:
            return
        # the offer was gone (the caller left, or its replica died) before the answer reached Redis
        now = time.time()
        self.log("accept_lost", queue=call.queue, call_id=call.id, agent=agent.id)
        agent.link.agent_event(Ended(call.id, "caller"))
        if not remote and self.calls.pop(call.id, None) is not None:
            call.link.desk_event(CallEnded("agent"))
        self._completed(self.queues[call.queue], call, agent, "caller", now)

    def _withdraw(self, call: Call, now: float, release: bool = True) -> Agent | None:
        agent = super()._withdraw(call, now)
        if agent is not None:
            if isinstance(call.link, RemoteCaller) and call.agent is None:
                self.remote.pop(call.id, None)
            if release:
                cooldown = call.cooldown[1] if call.cooldown and call.cooldown[0] == agent.id else 0.0
                rejected = "1" if agent.id in call.rejected else "0"
                self.commands.script(
                    RELEASE, [queue_key(call.queue, "calls")], [call.id, agent.id, rejected, cooldown]
                )
        return agent

    def _completed(
        self, q: QueueState, call: Call, agent: Agent, by: str, now: float, disposition: str = ""
    ) -> None:
        super()._completed(q, call, agent, by, now, disposition)
        name = call.queue
        if self.remote.pop(call.id, None) is not None:
            self._unread(name, call.id, "up")  # the streams go when the other side has read the end
        self.commands.script(END, [queue_key(name, "calls")], [call.id, agent.id])
        self.commands.command("SET", queue_key(name, "handle"), repr(q.handle_time))

    # ---- shared agent state ---------------------------------------------------------------------

    def _mark(self, agent: Agent) -> None:
        super()._mark(agent)
        self._dirty(agent)

    def _enrol(self, agent: Agent, member: bool) -> None:
        super()._enrol(agent, member)
        self._dirty(agent)

    def _dirty(self, agent: Agent) -> None:
        if agent.role == "agent" and not isinstance(agent.link, RemoteAgent):
            self.dirty.add(agent)
            self._soon()

    def dispatch(self, now: float) -> None:
        """Claims run in Redis: after this turn's agent changes are written, one CLAIM per queue."""
        self.claims = True
        self._soon()

    def _soon(self) -> None:
        if not self.flushing:
            self.flushing = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self.flushing = False
        dirty, self.dirty = self.dirty, set()
        for agent in dirty:
            self._write_agent(agent)
        if self.claims and not self.closed:
            self.claims = False
            now = time.time()
            for name, q in self.queues.items():
                self._claim(name, q, now)

    def _write_agent(self, agent: Agent) -> None:
        logged_in = self.agents.get(agent.id) is agent and not agent.removed
        free = logged_in and agent.status == "available" and agent.state == "idle" and agent.offer is None
        entry = json.dumps(
            {
                "r": self.replica,
                "n": agent.name,
                "s": agent.status,
                "st": agent.state,
                "ss": agent.state_since,
                "c": current.id if (current := agent.call or agent.offer) is not None else "",
            },
            ensure_ascii=False,
        )
        member_of = frozenset(n for n in agent.queues if n in self.queues) if logged_in else frozenset()
        for name in member_of | self.written.pop(agent.id, frozenset()):
            agents, free_key = queue_keys(name, "agents", "free")
            if name not in member_of:  # logged out, or taken off this queue in desk.yaml
                self.commands.command("HDEL", agents, agent.id)
                self.commands.command("ZREM", free_key, agent.id)
                continue
            self.commands.command("HSET", agents, agent.id, entry)
            if free:
                self.commands.command("ZADD", free_key, self._score(self.queues[name], agent), agent.id)
            else:
                self.commands.command("ZREM", free_key, agent.id)
        if member_of:
            self.written[agent.id] = member_of

    @staticmethod
    def _score(q: QueueState, agent: Agent) -> float:
        strategy = q.config.model.strategy
        if strategy == "fewest_calls":
            return agent.calls * 1e10 + agent.idle_since
        if strategy == "round_robin":
            return 0.0  # the script picks by id
        return agent.idle_since

    # ---- offers ---------------------------------------------------------------------------------

    def _claim(self, name: str, q: QueueState, now: float) -> None:
        model = q.config.model
        self.commands.script(
            CLAIM,
            queue_keys(name, "waiting", "calls", "free", "rr", "agents"),
            [repr(now), model.strategy, model.ring_timeout, CLAIM_SCAN],
            done=lambda result: self._claimed(name, result),
        )

    def _claimed(self, name: str, result: Any) -> None:
        if _failed(result):
            self._down(result)
            return
        for i in range(0, len(result), 4):
            call_id, agent_id, replica, raw = result[i : i + 4]
            if replica == self.replica:
                self._deliver(name, call_id, agent_id, raw)
            else:
                self._tell(replica, t="offer", q=name, c=call_id, a=agent_id, raw=raw)

    def _deliver(self, name: str, call_id: str, agent_id: str, raw: str) -> None:
        """An offer claimed for one of our agents: ring them if they are still free, else give it back."""
        now = time.time()
        q = self.queues.get(name)
        agent = self.agents.get(agent_id)
        info = json.loads(raw)
        call: Call | None = None
        if info["r"] == self.replica:
            call = self.calls.get(call_id)
            if call is not None and (call.agent is not None or call.offered_to is not None):
                call = None
        elif call_id not in self.gone and q is not None:
            context = tuple((str(k), str(v)) for k, v in json.loads(info["c"]))
            link = RemoteCaller(self, name, call_id, info["p"], context)
            call = Call(call_id, name, int(info["s"]), int(info["s"]) / 1e6, link)
        free = agent is not None and agent.status == "available" and agent.state == "idle"
        if q is None or call is None or agent is None or not free or agent.offer is not None:
            self.commands.script(RELEASE, [queue_key(name, "calls")], [call_id, agent_id, "0", 0])
            if agent is not None:
                self._dirty(agent)  # the claim took them out of the free set: put back what is true
            self.dispatch(now)
            return
        if isinstance(call.link, RemoteCaller):
            self.remote[call_id] = call
        self._offer(q, call, agent, now)

    def _withdrawn(self, call_id: str, agent_id: str, by: str) -> None:
        """The caller of an offer to one of our agents left (or their replica died)."""
        now = time.time()
        call = self.remote.get(call_id)
        agent = self.agents.get(agent_id)
        if call is None or agent is None or agent.offer is not call:
            self.gone[call_id] = now + GONE_FOR  # the offer may still be on its way
            return
        self.remote.pop(call_id, None)
        super()._withdraw(call, now)
        agent.link.agent_event(Ended(call_id, by))
        self.dispatch(now)

    def _connected(self, name: str, call_id: str, agent_id: str, agent_name: str) -> None:
        """An agent on another replica answered our caller."""
        now = time.time()
        call = self.calls.get(call_id)
        q = self.queues.get(name)
        if call is None or q is None or call.agent is not None:
            self.relay(name, call_id, "up", "e", "caller")  # gone meanwhile: that call is over
            return
        self._unqueue(q, call)
        stub = Agent(agent_id, agent_name, (), "agent", RemoteAgent(self, name, call_id), now)
        stub.call = call
        call.agent = stub
        call.connected_at = now
        self._read_relay(name, call_id, "down")
        call.link.desk_event(AgentConnected(agent_id, agent_name))

    # ---- the relay ------------------------------------------------------------------------------

    def relay(self, queue: str, call_id: str, direction: str, field: str, value: str) -> None:
        self.commands.command(
            "XADD",
            relay_key(queue, call_id, direction),
            "NOMKSTREAM",
            "MAXLEN",
            "~",
            STREAM_MAX,
            "*",
            field,
            value,
        )

    def _open_relay(self, queue: str, call_id: str) -> None:
        for direction in ("up", "down"):
            key = relay_key(queue, call_id, direction)
            self.commands.command("XADD", key, "*", "o", "1")
            self.commands.command("EXPIRE", key, RELAY_TTL)

    def _read_relay(self, queue: str, call_id: str, direction: str) -> None:
        key = relay_key(queue, call_id, direction)
        self.streams[key] = "0-0"
        self.readers[key] = (queue, call_id, direction)
        self._tell(self.replica, t="wake")  # the reader is blocked on the old list of streams

    def _unread(self, queue: str, call_id: str, direction: str) -> None:
        key = relay_key(queue, call_id, direction)
        self.streams.pop(key, None)
        self.readers.pop(key, None)

    def _tell(self, replica: str, **fields: str) -> None:
        args: list[Any] = [inbox_key(replica), "MAXLEN", "~", STREAM_MAX, "*"]
        for k, v in fields.items():
            args += [k, v]
        self.commands.command("XADD", *args)

    async def _read(self) -> None:
        """The one blocking read of this replica: its inbox and the streams of its calls across replicas."""
        while not self.stopping:
            try:
                streams: Any = dict(self.streams)
                reply: Any = await self.redis.xread(streams, count=500, block=BLOCK_MS)
            except (RedisError, OSError) as exc:
                self._down(exc)
                await asyncio.sleep(0.5)
                continue
            for key, entries in reply or ():
                for entry_id, fields in entries:
                    if key in self.streams:
                        self.streams[key] = entry_id
                    try:
                        self._received(key, fields)
                    except Exception:  # a bug with one message must not stop the reader
                        log.exception("desk_shared_message_failed", stream=key)

    def _received(self, key: str, fields: dict[str, str]) -> None:
        where = self.readers.get(key)
        if where is None:
            if key == inbox_key(self.replica):
                self._message(fields)
            return
        name, call_id, direction = where
        if "l" in fields:
            if direction == "up":  # a caller's line for our agent
                call = self.remote.get(call_id)
                if call is not None and call.agent is not None:
                    call.agent.link.agent_event(CallerSaid(call_id, fields["l"]))
            else:
                call = self.calls.get(call_id)
                if call is not None and call.agent is not None:
                    call.link.desk_event(AgentLine(fields["l"]))
        elif "e" in fields:  # the other side's last word: nobody writes to either stream any more
            self._unread(name, call_id, direction)
            self.commands.command("DEL", relay_key(name, call_id, "up"), relay_key(name, call_id, "down"))
            if direction == "up":
                self._caller_ended(name, call_id, fields["e"])
            else:
                self._agent_ended(call_id)

    def _caller_ended(self, name: str, call_id: str, by: str) -> None:
        call = self.remote.get(call_id)
        if call is None or call.agent is None:
            return
        agent = call.agent
        agent.link.agent_event(Ended(call_id, by))
        self._completed(self.queues[name], call, agent, by, time.time())

    def _agent_ended(self, call_id: str) -> None:
        call = self.calls.get(call_id)
        if call is None or call.agent is None or not isinstance(call.agent.link, RemoteAgent):
            return
        self.calls.pop(call_id, None)
        call.agent = None
        call.link.desk_event(CallEnded("agent"))

    def _message(self, fields: dict[str, str]) -> None:
        kind = fields.get("t")
        if kind == "offer":
            self._deliver(fields["q"], fields["c"], fields["a"], fields["raw"])
        elif kind == "withdrawn":
            self._withdrawn(fields["c"], fields["a"], fields["by"])
        elif kind == "connected":
            self._connected(fields["q"], fields["c"], fields["a"], fields["n"])

    # ---- leases, the janitor, summaries ---------------------------------------------------------

    async def _maintain(self) -> None:
        while True:
            try:
                await self._renew()
                await self._janitor()
                await self._summarise()
                self._restored()
            except (RedisError, OSError) as exc:
                self._down(exc)
            except Exception:
                log.exception("desk_shared_maintenance_failed")
            now = time.time()
            self.gone = {k: v for k, v in self.gone.items() if v > now}
            self.dispatch(now)
            await asyncio.sleep(RENEW_EVERY)

    async def _renew(self) -> None:
        if await self.redis.set(lease_key(self.replica), "1", px=LEASE_MS, xx=True):
            return
        await self.redis.set(lease_key(self.replica), "1", px=LEASE_MS)
        await self.redis.sadd(REPLICAS, self.replica)
        if self.queues:
            await self.redis.sadd(QUEUES, *self.queues)
        if self.leased:
            self._resync()
        self.leased = True

    def _resync(self) -> None:
        """Our lease lapsed (Redis restarted or was away too long) and others may have reaped us: put
        our agents and waiting callers back, and end what crossed replicas (the other end heard so)."""
        now = time.time()
        log.warning(
            "desk_shared_resync", replica=self.replica, agents=len(self.agents), callers=len(self.calls)
        )
        for call in list(self.calls.values()):
            agent = call.agent
            if agent is not None and isinstance(agent.link, RemoteAgent):
                self._unread(call.queue, call.id, "down")
                self.calls.pop(call.id, None)
                call.agent = None
                call.link.desk_event(CallEnded("agent"))
            elif agent is None and call.seq:
                self._send_join(self.queues[call.queue], call, str(call.seq))
        for agent in list(self.agents.values()):
            held = agent.call or agent.offer
            if held is not None and isinstance(held.link, RemoteCaller):
                agent.link.agent_event(Ended(held.id, "caller"))
                if agent.offer is held:
                    self.remote.pop(held.id, None)
                    super()._withdraw(held, now)
                else:
                    self._completed(self.queues[held.queue], held, agent, "caller", now)
            self._claim_login(agent)
            self._dirty(agent)

    async def _janitor(self) -> None:
        members: Any = await self.redis.smembers(REPLICAS)
        others: list[str] = [r for r in members if r != self.replica]
        if not others:
            return
        pipe = self.redis.pipeline(transaction=False)
        for r in others:
            pipe.exists(lease_key(r))
        for r, alive in zip(others, await pipe.execute(), strict=True):
            lock = f"{store.PREFIX}reaping:{r}"  # one janitor reaps it
            if not alive and await self.redis.set(lock, self.replica, nx=True, px=10_000):
                await self._reap(r)

    async def _reap(self, dead: str) -> None:
        """Take a replica that is gone out of every queue; tell the live ones what it leaves behind."""
        known: Any = await self.redis.smembers(QUEUES)
        names: set[str] = set(self.queues) | set(known)
        callers = 0
        for name in sorted(names):
            actions = await self._script(REAP, queue_keys(name, "waiting", "calls", "free", "agents"), [dead])
            for i in range(0, len(actions), 4):
                kind, call_id, agent_id, replica = actions[i : i + 4]
                callers += 1
                if kind == "withdrawn":
                    if replica == self.replica:
                        self._withdrawn(call_id, agent_id, "caller")
                    else:
                        self._tell(replica, t="withdrawn", q=name, c=call_id, a=agent_id, by="caller")
                elif kind == "caller_gone":
                    self.relay(name, call_id, "up", "e", "caller")
                elif kind == "agent_gone":
                    self.relay(name, call_id, "down", "e", "agent")
        await self._script(FORGET_LOGINS, [LOGINS], [dead])
        await self.redis.srem(REPLICAS, dead)
        await self.redis.delete(inbox_key(dead))
        if dead != self.replica:
            self.reaped_total += 1
            log.warning("replica_reaped", replica=dead, calls=callers)
        self.dispatch(time.time())

    async def _script(self, body: str, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self.redis.evalsha(store.SHA[body], len(keys), *keys, *args)
        except NoScriptError:
            return await self.redis.eval(body, len(keys), *keys, *args)

    async def _summarise(self) -> None:
        """Each queue's whole shared picture, once a second: for /queue, the board, estimates."""
        names = list(self.queues)
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            waiting, agents, handle = queue_keys(name, "waiting", "agents", "handle")
            pipe.zcard(waiting)
            pipe.zrange(waiting, 0, 0, withscores=True)
            pipe.hgetall(agents)
            pipe.get(handle)
        results = await pipe.execute()
        now = time.time()
        everyone: dict[str, dict[str, Any]] = {}
        for i, name in enumerate(names):
            count, head, agents, handle = results[4 * i : 4 * i + 4]
            longest = int(now - head[0][1] / 1e6) if head else 0
            states = {agent_id: json.loads(entry) for agent_id, entry in agents.items()}
            for agent_id, state in states.items():
                everyone.setdefault(agent_id, {**state, "queues": []})["queues"].append(name)
            available = sum(1 for a in states.values() if a["s"] == "available" and a["st"] == "idle")
            busy = sum(1 for a in states.values() if a["st"] in ("offered", "in_call"))
            self.summaries[name] = (int(count), max(0, longest), available, busy, len(states))
            if handle:
                self.queues[name].handle_time = float(handle)
        self.everyone = everyone

    def agent_rows(self, now: float) -> list[dict[str, Any]]:
        """This replica's agents and supervisors, and the other replicas' agents as of the last
        summary (each with the replica it is logged in on)."""
        rows = super().agent_rows(now)
        for row in rows:
            row["replica"] = self.replica
        for agent_id, a in self.everyone.items():
            if agent_id not in self.agents and a["r"] != self.replica:
                rows.append(
                    {
                        "id": agent_id,
                        "name": a["n"],
                        "role": "agent",
                        "status": a["s"],
                        "state": a["st"],
                        "since": int(now - a["ss"]),
                        "call": a["c"] or None,
                        "queues": a["queues"],
                        "replica": a["r"],
                    }
                )
        return sorted(rows, key=lambda row: str(row["id"]))

    def queue_summary(self, name: str, now: float) -> tuple[int, int, int, int]:
        summary = self.summaries.get(name)
        if summary is None:
            return super().queue_summary(name, now)
        return summary[:4]

    # ---- Redis away and back --------------------------------------------------------------------

    def _down(self, exc: object) -> None:
        if self.up:
            self.up = False
            log.warning("desk_shared_unavailable", redis=without_password(self.url), error=str(exc))

    def _restored(self) -> None:
        if not self.up:
            self.up = True
            log.info("desk_shared_restored", redis=without_password(self.url))
