"""The Redis store: the desk's queues shared by replicas through one Redis (HOTLINE_REDIS_URL;
docs/agent-desk.md, "Replicas: the desk shared through Redis"). The same interface as the
in-process store (app/desk/store.py).

How this works: each queue's waiting callers (by join time), logged-in and free agents, offers and
connections live in Redis (keys: keys.py). Every change is a command on one ordered pipeline
(pipeline.py: one round trip per loop turn), so the desk's methods stay synchronous and the answers
come back as callbacks, in order.

- A caller joins with the JOIN script (position = rank by join time, across replicas). A claim reads
  the head of the queue and the free agents (SNAPSHOT), asks app/desk/policy.py for the pairs, and
  claims exactly those with CLAIM, a compare-and-set on the JSON the policy saw; the offer goes to
  the agent's replica (its inbox stream, or directly when it is this one), whose desk checks the
  agent is still free (else the claim is given back) and rings them.
- /accept is a compare-and-set (ACCEPT) on the offer; the caller's replica hears `connected` in its
  inbox. From then on the call's lines go through two streams, up (caller to agent) and down, read
  by one XREAD per replica; the end of a call is the last entry of its stream, so nothing is lost or
  reordered. A call whose two ends are on one replica never touches Redis after the accept.
- Each replica renews a lease every second (PX 3000). Every replica's janitor reaps a replica whose
  lease lapsed (REAP, once per dead replica by a SET NX lock): its callers and agents leave the
  shared queues, agents it was offering to hear ENDED, the other ends of its calls hear that they
  ended. A summary of each queue is read once a second for the board and the metrics; /queue reads
  the queue exactly when asked (`counts`).
- Redis away: commands fail at once, new transfers are refused (`unavailable`, logged once as
  `desk_shared_unavailable`), calls within one replica go on. Back: redis-py reconnects on the next
  command; a replica that finds its lease gone has its desk put its agents and waiting callers back
  (`Desk.resync`).
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
from collections.abc import Callable
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from app.desk import policy
from app.desk.model import Agent, Call, Counts, QueueState, SharedHealth
from app.desk.redis.keys import (
    LOGINS,
    PREFIX,
    QUEUES,
    REPLICAS,
    inbox_key,
    lease_key,
    queue_key,
    queue_keys,
    relay_key,
)
from app.desk.redis.pipeline import Commands
from app.desk.redis.scripts import (
    ACCEPT,
    BOOK,
    CLAIM,
    END,
    FORGET_LOGINS,
    JOIN,
    LEAVE,
    LOGIN,
    LOGOUT,
    REAP,
    RELEASE,
    SHA,
    SNAPSHOT,
)
from app.desk.store import Joined, Left, Owner
from app.logs import without_password

log = structlog.get_logger("hotline.desk")

LEASE_MS = 3000  # a replica's lease lives this long unless renewed (docs/agent-desk.md: at most 3 s)
RENEW_EVERY = 1.0  # seconds between renewals, janitor rounds and queue summaries
CLAIM_SCAN = 64  # callers from the head of a queue one claim looks at
STALE_OFFER = 5.0  # an offer older than ring_timeout + this was never delivered (its claimer died)
STREAM_MAX = 10_000  # entries kept in a replica's inbox / a call's stream (approximate trim)
RELAY_TTL = 86_400  # a call's streams expire a day after the call started, should both replicas die
GONE_FOR = 30.0  # seconds a withdrawn call id is remembered, so a late offer of it is dropped
BLOCK_MS = 1000
CLOSE_WAIT = 2.0  # seconds close() waits for the reader and for redis-py to close its connections


def replica_name() -> str:
    """This process's name among replicas: host, pid and a random part (a restart is a new replica)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def _failed(result: object) -> bool:
    return isinstance(result, Exception)


class RedisStore:
    """The desk's queues in Redis, shared with other replicas; see the module's docstring."""

    def __init__(self, url: str, replica: str = "", clock: Callable[[], float] = time.time) -> None:
        self.replica = replica or replica_name()
        self.clock = clock  # the desk's time: what it passes as `now` (tests pass a simulated one)
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
        self.desk: Owner | None = None
        self.streams: dict[str, str] = {inbox_key(self.replica): "0-0"}  # what the reader reads, from where
        self.readers: dict[str, tuple[str, str, str]] = {}  # relay stream -> (queue, call id, direction)
        self.summaries: dict[str, Counts] = {}  # queue -> the whole shared queue, as of the last look
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

    def bind(self, desk: Owner) -> None:
        self.desk = desk

    def _desk(self) -> Owner:
        assert self.desk is not None, "a store is bound to its desk first"
        return self.desk

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
        """After the desk's shutdown(): this replica's callers and agents leave the shared state at
        once (the others need not wait for the lease to lapse), then the connection closes."""
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

    def health(self) -> SharedHealth:
        return SharedHealth(self.up, self.commands.sent, self.commands.failed, self.reaped_total)

    # ---- callers --------------------------------------------------------------------------------

    def join(self, q: QueueState, call: Call, done: Callable[[Joined | str], None]) -> None:
        self._send_join(q, call, "", lambda result: self._joined(call, result, done))

    def rejoin(self, q: QueueState, call: Call) -> None:
        self._send_join(q, call, str(call.seq))

    def _send_join(
        self, q: QueueState, call: Call, score: str, done: Callable[[Any], None] | None = None
    ) -> None:
        """JOIN: a new caller (score ""), or one put back at their join time after Redis lost them.
        Agents' changes still waiting for this turn's flush go first: an agent told `OK ready` counts
        for a caller who arrives in the same turn of the loop (uvloop may read that caller's key
        before it runs the flush it scheduled)."""
        self._write_agents()
        context = json.dumps(call.link.handoff_context(), ensure_ascii=False)
        self.commands.script(
            JOIN,
            queue_keys(call.queue, "waiting", "calls", "agents", "free"),
            [call.id, self.replica, call.link.peer, context, q.config.model.max_waiting, score],
            done=done,
        )

    def _joined(self, call: Call, result: Any, done: Callable[[Joined | str], None]) -> None:
        if _failed(result):
            self._down(result)
            done("unavailable")
        elif result[0] != "ok":
            done(str(result[1]))
        else:
            _, score, position, waiting, agents, free = result
            call.seq = int(score)
            done(Joined(int(position), int(waiting), int(agents), int(free)))

    def book(self, call: Call, number: str, context: str, done: Callable[[bool], None]) -> None:
        def booked(result: Any) -> None:
            if _failed(result):
                self._down(result)
            done(result == 1)

        keys = [queue_key(call.queue, "calls"), queue_key(call.queue, "booked")]
        self.commands.script(BOOK, keys, [call.id, number, context, call.expires], done=booked)

    def unbook(self, call: Call) -> None:
        self.commands.command("SREM", queue_key(call.queue, "booked"), call.callback)

    def leave(self, call: Call, by: str, done: Callable[[Left | None], None]) -> None:
        self.commands.script(
            LEAVE,
            queue_keys(call.queue, "waiting", "calls"),
            [call.id],
            done=lambda result: self._left(call, by, result, done),
        )

    def _left(self, call: Call, by: str, result: Any, done: Callable[[Left | None], None]) -> None:
        if _failed(result):
            self._down(result)
        if not isinstance(result, list):
            done(None)
            return
        agent, replica, position, connected = result[0], result[1], int(result[2]), result[3]
        offers, missed = int(result[4]), int(result[5])
        if agent and replica != self.replica:
            self._tell(replica, t="withdrawn", q=call.queue, c=call.id, a=agent, by=by)
        if connected:  # answered elsewhere before we heard of it: that call is over too
            self.relay(call.queue, call.id, "up", "e", "caller")
        done(Left(position, bool(connected), offers, missed))

    def positions(self, calls: list[Call], done: Callable[[Call, int], None]) -> None:
        """One ZRANK each, in the next pipeline."""
        for call in calls:
            if call.seq:
                key = queue_key(call.queue, "waiting")
                self.commands.command("ZRANK", key, call.id, done=functools.partial(self._ranked, call, done))

    @staticmethod
    def _ranked(call: Call, done: Callable[[Call, int], None], rank: Any) -> None:
        if isinstance(rank, int):
            done(call, rank + 1)

    def waiting(self, q: QueueState) -> int:
        summary = self.summaries.get(q.config.name)
        return summary.waiting if summary is not None else len(q.waiting)

    # ---- offers ---------------------------------------------------------------------------------

    def claim_soon(self, now: float) -> None:
        """Claims run after this turn's agent changes are written: one per queue."""
        self.claims = True
        self._soon()

    def _soon(self) -> None:
        if not self.flushing:
            self.flushing = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self.flushing = False
        self._write_agents()
        if self.claims and not self.stopping:
            self.claims = False
            for name, q in self._desk().queues.items():
                self.commands.script(
                    SNAPSHOT,
                    queue_keys(name, "waiting", "calls", "free", "rr", "agents"),
                    [CLAIM_SCAN],
                    done=functools.partial(self._pick, name, q),
                )

    def _pick(self, name: str, q: QueueState, result: Any) -> None:
        """The policy's pairs from what SNAPSHOT read; CLAIM applies them if nothing changed since."""
        if _failed(result):
            self._down(result)
            return
        rr, calls, agents = result
        if not calls or not agents:
            return
        now = self.clock()
        model = q.config.model
        stale = model.ring_timeout + STALE_OFFER
        waiting: list[policy.Waiting] = []
        seen: dict[str, str] = {}
        for call_id, raw in zip(calls[::2], calls[1::2], strict=True):
            c = json.loads(raw)
            offered = bool(c.get("oa")) and now - float(c.get("ot", 0)) <= stale
            cooldown = (str(c["cd"]), float(c["cu"])) if c.get("cd") else None
            rejected = frozenset(x for x in str(c.get("x", "")).split(",") if x)
            waiting.append(policy.Waiting(call_id, offered, rejected, cooldown, bool(c.get("cb"))))
            seen[call_id] = raw
        free: list[policy.Free] = []
        for agent_id, raw in zip(agents[::2], agents[1::2], strict=True):
            a = json.loads(raw)
            free.append(policy.Free(agent_id, float(a.get("i", 0.0)), int(a.get("k", 0))))
            seen["\0" + agent_id] = raw
        chosen = policy.pairs(waiting, free, model.strategy, str(rr), now, q.config.is_open(now))
        if not chosen:
            return
        args: list[Any] = [repr(now), chosen[-1][1] if model.strategy == "round_robin" else ""]
        for call_id, agent_id in chosen:
            args += [call_id, seen[call_id], agent_id, seen["\0" + agent_id]]
        self.commands.script(
            CLAIM,
            queue_keys(name, "waiting", "calls", "free", "rr", "agents"),
            args,
            done=functools.partial(self._claimed, name),
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
        """An offer claimed for one of our agents: the desk rings them, or gives the claim back."""
        desk = self._desk()
        now = self.clock()
        info = json.loads(raw)
        if info["r"] == self.replica or call_id in self.gone:  # ours (or withdrawn: not found)
            desk.deliver(name, call_id, agent_id, now)
            return
        context = tuple((str(k), str(v)) for k, v in json.loads(info["c"]))
        desk.deliver(
            name, desk.remote_caller(name, call_id, int(info["s"]), info["p"], context), agent_id, now
        )

    def unclaim(self, queue: str, call_id: str, agent_id: str) -> None:
        self.commands.script(RELEASE, [queue_key(queue, "calls")], [call_id, agent_id, "0", 0])

    def release(self, call: Call, agent: Agent) -> None:
        cooldown = call.cooldown[1] if call.cooldown and call.cooldown[0] == agent.id else 0.0
        rejected = "1" if agent.id in call.rejected else "0"
        self.commands.script(
            RELEASE, [queue_key(call.queue, "calls")], [call.id, agent.id, rejected, cooldown]
        )

    def accept(self, call: Call, agent: Agent, done: Callable[[bool], None]) -> None:
        remote = call.id in self._desk().remote
        self.commands.script(
            ACCEPT,
            queue_keys(call.queue, "waiting", "calls"),
            [call.id, agent.id, self.replica],
            done=lambda replica: self._accepted(agent, call, replica, remote, done),
        )
        if remote:  # before any line or /end of the agent's can be sent
            self._open_relay(call.queue, call.id)

    def _accepted(
        self, agent: Agent, call: Call, replica: Any, remote: bool, done: Callable[[bool], None]
    ) -> None:
        if isinstance(replica, list):  # accepted: [caller's replica, offers, missed]
            replica, offers, missed = str(replica[0]), int(replica[1]), int(replica[2])
            if remote:  # tell the caller's replica (even if the agent has ended already: it reads that)
                if agent.call is call:
                    self._read_relay(call.queue, call.id, "up")
                self._tell(
                    replica,
                    t="connected",
                    q=call.queue,
                    c=call.id,
                    a=agent.id,
                    n=agent.name,
                    k=str(offers),
                    m=str(missed),
                )
            done(True)
            return
        if remote:
            self.commands.command(
                "DEL", relay_key(call.queue, call.id, "up"), relay_key(call.queue, call.id, "down")
            )
        if _failed(replica):
            self._down(replica)
            if not remote:
                done(True)  # both ends here: the call goes on without Redis
                return
        done(False)

    def end(self, q: QueueState, call: Call, agent: Agent) -> None:
        name = call.queue
        self._unread(name, call.id, "up")  # the streams go when the other side has read the end
        self.commands.script(END, [queue_key(name, "calls")], [call.id, agent.id])
        self.commands.command("SET", queue_key(name, "handle"), repr(q.handle_time))

    def forget(self, call: Call) -> None:
        self._unread(call.queue, call.id, "down")
        self.commands.command("HDEL", queue_key(call.queue, "calls"), call.id)

    # ---- agents ---------------------------------------------------------------------------------

    def agent_changed(self, agent: Agent) -> None:
        if agent.role == "agent":
            self.dirty.add(agent)
            self._soon()

    def _write_agents(self) -> None:
        dirty, self.dirty = self.dirty, set()
        for agent in dirty:
            self._write_agent(agent)

    def _write_agent(self, agent: Agent) -> None:
        desk = self._desk()
        logged_in = desk.agents.get(agent.id) is agent and not agent.removed
        free = logged_in and policy.may_take(agent.status, agent.state) and agent.offer is None
        entry = json.dumps(
            {
                "r": self.replica,
                "n": agent.name,
                "s": agent.status,
                "st": agent.state,
                "ss": agent.state_since,
                "i": agent.idle_since,
                "k": agent.calls,
                "c": current.id if (current := agent.call or agent.offer) is not None else "",
            },
            ensure_ascii=False,
        )
        member_of = frozenset(n for n in agent.queues if n in desk.queues) if logged_in else frozenset()
        for name in member_of | self.written.pop(agent.id, frozenset()):
            agents, free_key = queue_keys(name, "agents", "free")
            if name not in member_of:  # logged out, or taken off this queue in desk.yaml
                self.commands.command("HDEL", agents, agent.id)
                self.commands.command("ZREM", free_key, agent.id)
                continue
            self.commands.command("HSET", agents, agent.id, entry)
            if free:
                self.commands.command("ZADD", free_key, agent.idle_since, agent.id)
            else:
                self.commands.command("ZREM", free_key, agent.id)
        if member_of:
            self.written[agent.id] = member_of

    def login(self, agent: Agent, done: Callable[[str | None], None]) -> None:
        self.commands.script(
            LOGIN,
            [LOGINS],
            [agent.id, self.replica],
            done=lambda owner: done(owner if isinstance(owner, str) else None),
        )

    def logout(self, agent: Agent) -> None:
        self.commands.script(LOGOUT, [LOGINS], [agent.id, self.replica])

    # ---- the relay ------------------------------------------------------------------------------

    def relay(self, queue: str, call_id: str, direction: str, kind: str, value: str) -> None:
        self.commands.command(
            "XADD",
            relay_key(queue, call_id, direction),
            "NOMKSTREAM",
            "MAXLEN",
            "~",
            STREAM_MAX,
            "*",
            kind,
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
        now = self.clock()
        if "l" in fields:
            self._desk().relayed(name, call_id, direction, fields["l"], None, now)
        elif "e" in fields:  # the other side's last word: nobody writes to either stream any more
            self._unread(name, call_id, direction)
            self.commands.command("DEL", relay_key(name, call_id, "up"), relay_key(name, call_id, "down"))
            self._desk().relayed(name, call_id, direction, None, fields["e"], now)

    def _message(self, fields: dict[str, str]) -> None:
        kind = fields.get("t")
        desk = self._desk()
        now = self.clock()
        if kind == "offer":
            self._deliver(fields["q"], fields["c"], fields["a"], fields["raw"])
        elif kind == "withdrawn":
            if not desk.withdrawn(fields["c"], fields["a"], fields["by"], now):
                self.gone[fields["c"]] = now + GONE_FOR  # the offer may still be on its way
        elif kind == "connected":
            name, call_id = fields["q"], fields["c"]
            counts = (int(fields.get("k", 0)), int(fields.get("m", 0)))
            if desk.connected(name, call_id, fields["a"], fields["n"], counts, now):
                self._read_relay(name, call_id, "down")
            else:
                self.relay(name, call_id, "up", "e", "caller")  # gone meanwhile: that call is over

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
            now = self.clock()
            self.gone = {k: v for k, v in self.gone.items() if v > now}
            self._desk().dispatch(now)
            await asyncio.sleep(RENEW_EVERY)

    async def _renew(self) -> None:
        if await self.redis.set(lease_key(self.replica), "1", px=LEASE_MS, xx=True):
            return
        await self.redis.set(lease_key(self.replica), "1", px=LEASE_MS)
        await self.redis.sadd(REPLICAS, self.replica)
        queues = self._desk().queues
        if queues:
            await self.redis.sadd(QUEUES, *queues)
        if self.leased:
            desk = self._desk()
            log.warning(
                "desk_shared_resync", replica=self.replica, agents=len(desk.agents), callers=len(desk.calls)
            )
            desk.resync(self.clock())
        self.leased = True

    async def _janitor(self) -> None:
        members: Any = await self.redis.smembers(REPLICAS)
        others: list[str] = [r for r in members if r != self.replica]
        if not others:
            return
        pipe = self.redis.pipeline(transaction=False)
        for r in others:
            pipe.exists(lease_key(r))
        for r, alive in zip(others, await pipe.execute(), strict=True):
            lock = f"{PREFIX}reaping:{r}"  # one janitor reaps it
            if not alive and await self.redis.set(lock, self.replica, nx=True, px=10_000):
                await self._reap(r)

    async def _reap(self, dead: str) -> None:
        """Take a replica that is gone out of every queue; tell the live ones what it leaves behind."""
        desk = self._desk()
        known: Any = await self.redis.smembers(QUEUES)
        names: set[str] = set(desk.queues) | set(known)
        callers = kept = 0
        adopter = "" if dead == self.replica else self.replica  # shutting down: others adopt ours later
        for name in sorted(names):
            keys = queue_keys(name, "waiting", "calls", "free", "agents")
            actions = await self._script(REAP, keys, [dead, adopter])
            for i in range(0, len(actions), 4):
                kind, call_id, agent_id, replica = actions[i : i + 4]
                callers += 1
                if kind == "withdrawn":
                    if replica != self.replica:
                        self._tell(replica, t="withdrawn", q=name, c=call_id, a=agent_id, by="caller")
                    elif not desk.withdrawn(call_id, agent_id, "caller", self.clock()):
                        self.gone[call_id] = self.clock() + GONE_FOR
                elif kind == "caller_gone":
                    self.relay(name, call_id, "up", "e", "caller")
                elif kind == "agent_gone":
                    self.relay(name, call_id, "down", "e", "agent")
                elif kind == "adopt":  # agent_id holds the callback's JSON
                    info = json.loads(agent_id)
                    context = tuple((str(k), str(v)) for k, v in json.loads(info["c"]) if k != "callback")
                    expires = float(info.get("ex") or 86400.0)
                    desk.adopt(name, call_id, int(info["s"]), str(info["cb"]), context, expires, self.clock())
                elif kind == "kept":
                    kept += 1
        await self._script(FORGET_LOGINS, [LOGINS], [dead])
        if not kept:  # callbacks left behind: the replica stays known until a live one adopts them
            await self.redis.srem(REPLICAS, dead)
        await self.redis.delete(inbox_key(dead))
        if dead != self.replica:
            self.reaped_total += 1
            log.warning("replica_reaped", replica=dead, calls=callers)
        desk.dispatch(self.clock())

    async def _script(self, body: str, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self.redis.evalsha(SHA[body], len(keys), *keys, *args)
        except NoScriptError:
            return await self.redis.eval(body, len(keys), *keys, *args)

    def _summary_reads(self, names: list[str]) -> list[tuple[Any, ...]]:
        reads: list[tuple[Any, ...]] = []
        for name in names:
            waiting, agents, handle = queue_keys(name, "waiting", "agents", "handle")
            reads += [
                ("ZCARD", waiting),
                ("ZRANGE", waiting, 0, 0, "WITHSCORES"),
                ("HGETALL", agents),
                ("GET", handle),
            ]
        return reads

    def _summed(self, names: list[str], results: list[Any], now: float) -> dict[str, Counts]:
        """The queues' counts from what `_summary_reads` read; remembered as the latest summaries."""
        desk = self._desk()
        everyone: dict[str, dict[str, Any]] = {}
        out: dict[str, Counts] = {}
        for i, name in enumerate(names):
            count, head, agents, handle = results[4 * i : 4 * i + 4]
            if any(_failed(r) for r in (count, head, agents, handle)):
                continue
            head = _pairs(head)
            longest = int(now - float(head[0][1]) / 1e6) if head else 0
            if isinstance(agents, list):
                agents = dict(zip(agents[::2], agents[1::2], strict=True))
            states = {agent_id: json.loads(entry) for agent_id, entry in agents.items()}
            for agent_id, state in states.items():
                everyone.setdefault(agent_id, {**state, "queues": []})["queues"].append(name)
            available = sum(1 for a in states.values() if policy.may_take(a["s"], a["st"]))
            busy = sum(1 for a in states.values() if a["st"] in ("offered", "in_call"))
            on_break = sum(1 for a in states.values() if a["s"] == "on_break")
            out[name] = self.summaries[name] = Counts(
                int(count), max(0, longest), available, busy, len(states), on_break
            )
            if handle and name in desk.queues:
                desk.queues[name].handle_time = float(handle)
        if len(out) == len(names):
            self.everyone = everyone
        return out

    async def _summarise(self) -> None:
        """Each queue's whole shared picture, once a second: for the board, the metrics, estimates."""
        names = list(self._desk().queues)
        pipe = self.redis.pipeline(transaction=False)
        for args in self._summary_reads(names):
            pipe.execute_command(*args)
        results = await pipe.execute(raise_on_error=False)
        self._summed(names, list(results), self.clock())

    def summary(self, queue: str) -> Counts | None:
        return self.summaries.get(queue)

    def counts(self, queues: list[str], now: float, done: Callable[[dict[str, Counts]], None]) -> None:
        """Read now, in order after this replica's own changes (written first)."""
        self._write_agents()
        reads = self._summary_reads(queues)
        results: list[Any] = [None] * len(reads)
        left = [len(reads)]

        def arrived(i: int, result: Any) -> None:
            results[i] = result
            left[0] -= 1
            if left[0] == 0:
                counted = self._summed(queues, results, self.clock())
                if any(_failed(r) for r in results):
                    self._down(next(r for r in results if _failed(r)))
                done(counted)

        if not reads:
            done({})
        for i, args in enumerate(reads):
            self.commands.command(*args, done=functools.partial(arrived, i))

    def agent_rows(self, rows: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
        """This replica's rows with their replica, and the other replicas' agents as of the last
        summary (each with the replica it is logged in on)."""
        desk = self._desk()
        for row in rows:
            row["replica"] = self.replica
        for agent_id, a in self.everyone.items():
            if agent_id not in desk.agents and a["r"] != self.replica:
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

    # ---- Redis away and back --------------------------------------------------------------------

    def _down(self, exc: object) -> None:
        if self.up:
            self.up = False
            log.warning("desk_shared_unavailable", redis=without_password(self.url), error=str(exc))

    def _restored(self) -> None:
        if not self.up:
            self.up = True
            log.info("desk_shared_restored", redis=without_password(self.url))


def _pairs(head: Any) -> list[tuple[str, float]]:
    """ZRANGE ... WITHSCORES as (member, score), whether redis-py parsed it or not."""
    if not head:
        return []
    if isinstance(head[0], (list, tuple)):
        return [(str(m), float(s)) for m, s in head]
    return [(str(head[i]), float(head[i + 1])) for i in range(0, len(head), 2)]
