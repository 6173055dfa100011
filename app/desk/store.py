"""The shared desk's Redis side: key names, the Lua scripts, and one ordered, pipelined command stream.

Keys (AGENT_DESK.md, "Scale-out"). Every key of a queue carries the hash tag `{q:NAME}`, so Redis
Cluster keeps a queue in one slot and each script touches one slot:

    hotline:{q:NAME}:waiting    sorted set: call id -> join time (µs, Redis's clock); rank = position
    hotline:{q:NAME}:calls      hash: call id -> JSON of the call (below), waiting or connected
    hotline:{q:NAME}:agents     hash: agent id -> JSON of a logged-in agent (status, state, replica)
    hotline:{q:NAME}:free       sorted set: agents available and idle, by the queue's strategy
    hotline:{q:NAME}:rr         round_robin: the agent offered last
    hotline:{q:NAME}:handle     the moving average handle time, seconds
    hotline:{q:NAME}:relay:ID:up / :down   a connected call's lines, caller->agent / agent->caller
    hotline:replica:ID          a replica's lease (PX 3000, renewed every second)
    hotline:replicas            set of the replicas that have held a lease
    hotline:inbox:ID            stream of messages to one replica (offers, withdrawals, connections)
    hotline:logins              hash: agent id -> the replica it is logged in on (at most one)
    hotline:queues              set of the queue names in use (for the janitor)

A call's JSON: r (caller's replica), s (join score), p (peer), c (context, JSON text), x (",id,id,"
agents who rejected it), oa/orr/ot (offered to: agent, its replica, when), cd/cu (cooldown: agent,
until), ca/car (connected: agent, its replica).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

log = structlog.get_logger("hotline.desk")

PREFIX = "hotline:"
LOGINS = PREFIX + "logins"
REPLICAS = PREFIX + "replicas"
QUEUES = PREFIX + "queues"


def queue_key(queue: str, what: str) -> str:
    return f"{PREFIX}{{q:{queue}}}:{what}"


def relay_key(queue: str, call_id: str, direction: str) -> str:
    """direction: "up" (caller -> agent) or "down" (agent -> caller)."""
    return f"{PREFIX}{{q:{queue}}}:relay:{call_id}:{direction}"


def lease_key(replica: str) -> str:
    return f"{PREFIX}replica:{replica}"


def inbox_key(replica: str) -> str:
    return f"{PREFIX}inbox:{replica}"


def queue_keys(queue: str, *what: str) -> list[str]:
    return [queue_key(queue, w) for w in what]


# KEYS: waiting, calls, agents. ARGV: id, replica, peer, context, max_waiting, score ("" = now: a new
# caller, checked against the queue; a score = a caller this replica re-adds after Redis lost it).
JOIN = """
local agents = redis.call('HLEN', KEYS[3])
local n = redis.call('ZCARD', KEYS[1])
local score = ARGV[6]
if score == '' then
  if agents == 0 then return {'busy', 'no_agents'} end
  if n >= tonumber(ARGV[5]) then return {'busy', 'full'} end
  local t = redis.call('TIME')
  score = t[1] .. string.format('%06d', tonumber(t[2]))
elseif redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  return {'ok', score, redis.call('ZRANK', KEYS[1], ARGV[1]) + 1, n, agents}
end
redis.call('ZADD', KEYS[1], score, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode({r=ARGV[2], s=score, p=ARGV[3], c=ARGV[4], x=',', oa=''}))
return {'ok', score, redis.call('ZRANK', KEYS[1], ARGV[1]) + 1, redis.call('ZCARD', KEYS[1]), agents}
"""

# KEYS: waiting, calls. ARGV: id. The caller left (hung up, a key, max_wait): gone from the queue.
# Returns {offered agent, its replica, position (0: not waiting), connected agent} or nil when the
# call was not there.
LEAVE = """
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then return false end
local c = cjson.decode(raw)
local rank = redis.call('ZRANK', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return {c.oa or '', c.orr or '', rank and rank + 1 or 0, c.ca or ''}
"""

# KEYS: waiting, calls, free, rr, agents. ARGV: now (s), strategy, ring_timeout (s), how many callers
# from the head to look at. Pairs waiting callers (in order) with free agents (by the strategy) and
# marks each pair offered, in one step: compare-and-set on the call's `oa`, and the agent leaves the
# free set. An offer older than ring_timeout + 5 s was never delivered (its claimer died): free again.
# Returns a flat list: call id, agent id, agent's replica, call JSON, ...
CLAIM = """
local now = tonumber(ARGV[1])
local free = redis.call('ZRANGE', KEYS[3], 0, -1)
if #free == 0 then return {} end
local out = {}
local stale = tonumber(ARGV[3]) + 5
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[4]) - 1)) do
  if #free == 0 then break end
  local raw = redis.call('HGET', KEYS[2], id)
  if raw then
    local c = cjson.decode(raw)
    if c.oa ~= '' and now - c.ot > stale then c.oa = '' end
    if c.oa == '' then
      local able = {}
      for i, a in ipairs(free) do
        if not string.find(c.x, ',' .. a .. ',', 1, true) and not (c.cd == a and now < c.cu) then
          able[#able + 1] = i
        end
      end
      if #able > 0 then
        local pick = able[1]
        if ARGV[2] == 'round_robin' then
          local last = redis.call('GET', KEYS[4]) or ''
          local best, first = nil, nil
          for _, i in ipairs(able) do
            if not first or free[i] < free[first] then first = i end
            if free[i] > last and (not best or free[i] < free[best]) then best = i end
          end
          pick = best or first
          redis.call('SET', KEYS[4], free[pick])
        end
        local a = table.remove(free, pick)
        redis.call('ZREM', KEYS[3], a)
        local info = redis.call('HGET', KEYS[5], a)
        if info then
          c.oa = a
          c.orr = cjson.decode(info).r
          c.ot = now
          raw = cjson.encode(c)
          redis.call('HSET', KEYS[2], id, raw)
          out[#out + 1] = id
          out[#out + 1] = a
          out[#out + 1] = c.orr
          out[#out + 1] = raw
        end
      end
    end
  end
end
return out
"""

# KEYS: waiting, calls. ARGV: id, agent, agent's replica. The agent answers: compare-and-set on `oa`.
# Returns the caller's replica, or nil when the offer is no longer this agent's.
ACCEPT = """
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then return false end
local c = cjson.decode(raw)
if c.oa ~= ARGV[2] then return false end
redis.call('ZREM', KEYS[1], ARGV[1])
c.oa = ''
c.ca = ARGV[2]
c.car = ARGV[3]
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(c))
return c.r
"""

# KEYS: calls. ARGV: id, agent. The agent's call is over: gone from the queue's calls, if it is still
# this agent's (an accept that lost its compare-and-set must not delete a call another agent took).
END = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if raw and cjson.decode(raw).ca == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
"""

# KEYS: calls. ARGV: id, agent, rejected ("1"/"0"), cooldown until (s, 0 = none). The offer goes back
# (rejected, missed, or the agent turned out busy): only if it is still this agent's.
RELEASE = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local c = cjson.decode(raw)
if c.oa ~= ARGV[2] then return 0 end
c.oa = ''
if ARGV[3] == '1' then c.x = c.x .. ARGV[2] .. ',' end
if tonumber(ARGV[4]) > 0 then
  c.cd = ARGV[2]
  c.cu = tonumber(ARGV[4])
end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(c))
return 1
"""

# KEYS: waiting, calls, free, agents. ARGV: the replica whose lease lapsed (or that shuts down).
# Removes its callers and agents from the queue; returns what the live replicas must be told, flat:
# kind, call id, agent id, replica to tell. Kinds: withdrawn (the dead replica's caller was offered to
# a live agent), caller_gone / agent_gone (a connected call lost its other end), requeued (a live
# caller was offered to a dead agent: offered again by the next claim).
REAP = """
local dead = ARGV[1]
local out = {}
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local id, c = all[i], cjson.decode(all[i + 1])
  if c.r == dead then
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    if c.oa ~= '' and c.orr ~= dead then
      for _, v in ipairs({'withdrawn', id, c.oa, c.orr}) do out[#out + 1] = v end
    end
    if c.ca and c.car ~= dead then
      for _, v in ipairs({'caller_gone', id, c.ca, c.car}) do out[#out + 1] = v end
    end
  else
    if c.oa ~= '' and c.orr == dead then
      c.oa = ''
      redis.call('HSET', KEYS[2], id, cjson.encode(c))
      for _, v in ipairs({'requeued', id, '', c.r}) do out[#out + 1] = v end
    end
    if c.ca and c.car == dead then
      redis.call('HDEL', KEYS[2], id)
      for _, v in ipairs({'agent_gone', id, c.ca, c.r}) do out[#out + 1] = v end
    end
  end
end
local agents = redis.call('HGETALL', KEYS[4])
for i = 1, #agents, 2 do
  if cjson.decode(agents[i + 1]).r == dead then
    redis.call('HDEL', KEYS[4], agents[i])
    redis.call('ZREM', KEYS[3], agents[i])
  end
end
return out
"""

# KEYS: logins. ARGV: the dead replica. Its agents may log in elsewhere.
FORGET_LOGINS = """
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if all[i + 1] == ARGV[1] then redis.call('HDEL', KEYS[1], all[i]) end
end
return 0
"""

# KEYS: logins. ARGV: agent, replica. An agent id is logged in on one replica at a time: returns the
# replica that has it, or nil when it is now this one's.
LOGIN = """
local owner = redis.call('HGET', KEYS[1], ARGV[1])
if owner and owner ~= ARGV[2] then return owner end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return false
"""

# KEYS: logins. ARGV: agent, replica. Logged out: the login is freed if it is still this replica's.
LOGOUT = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
"""

SCRIPTS = (JOIN, LEAVE, CLAIM, ACCEPT, END, RELEASE, REAP, FORGET_LOGINS, LOGIN, LOGOUT)
SHA = {body: hashlib.sha1(body.encode()).hexdigest() for body in SCRIPTS}  # noqa: S324 (Redis names scripts so)

Done = Callable[[Any], None]


class Commands:
    """Every Redis command of this replica but the blocking read, in the order they were asked for,
    sent as one pipeline per turn of the event loop (so a burst of joins costs one round trip). A
    command's answer, or the exception that stopped it, goes to its `done` callback."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.pending: list[tuple[tuple[Any, ...], Done | None]] = []
        self.wake = asyncio.Event()
        self.idle = asyncio.Event()  # nothing queued, nothing in flight
        self.loaded = False  # the scripts are in Redis's script cache (as far as we know)
        self.sent = 0  # commands, for the metrics
        self.failed = 0

    def command(self, *args: Any, done: Done | None = None) -> None:
        self.pending.append((args, done))
        self.wake.set()
        self.idle.clear()

    async def drained(self, timeout: float = 2.0) -> None:
        """Wait until every command asked for so far has had its answer (or `timeout` passed)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.idle.wait(), timeout)

    def script(self, body: str, keys: list[str], args: list[Any], done: Done | None = None) -> None:
        self.command("EVALSHA", SHA[body], len(keys), *keys, *args, done=done)

    async def run(self) -> None:
        while True:
            self.idle.set()
            await self.wake.wait()
            self.idle.clear()
            self.wake.clear()
            while self.pending:
                batch, self.pending = self.pending, []
                results = await self._send([args for args, _ in batch])
                for (_, done), result in zip(batch, results, strict=True):
                    if done is not None:
                        try:
                            done(result)
                        except Exception:  # one callback's bug must not stop the others
                            log.exception("desk_shared_callback_failed")

    async def _send(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """One pipeline, in order. The scripts are loaded at its head the first time and after any
        failure (a restarted Redis has forgotten them): re-running a script that met NOSCRIPT after
        the rest of its batch would put it out of order (an ACCEPT after the same call's HDEL)."""
        self.sent += len(commands)
        load = [] if self.loaded else [("SCRIPT", "LOAD", body) for body in SCRIPTS]
        try:
            results = (await self._pipeline(load + commands))[len(load) :]
            self.loaded = True
            missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
            if missing:  # flushed meanwhile (SCRIPT FLUSH): run those with their text, and reload
                self.loaded = False
                again = await self._pipeline([_eval(commands[i]) for i in missing])
                for i, r in zip(missing, again, strict=True):
                    results[i] = r
        except (RedisError, OSError) as exc:
            self.loaded = False
            results = [exc] * len(commands)
        self.failed += sum(1 for r in results if isinstance(r, Exception))
        return results

    async def _pipeline(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        pipe = self.redis.pipeline(transaction=False)
        for args in commands:
            pipe.execute_command(*args)
        return list(await pipe.execute(raise_on_error=False))


_BY_SHA = {sha: body for body, sha in SHA.items()}


def _eval(args: tuple[Any, ...]) -> tuple[Any, ...]:
    if args[0] == "EVALSHA":
        return ("EVAL", _BY_SHA[args[1]], *args[2:])
    return args
