"""The shared desk's Lua scripts: each carries out one change of a queue atomically (all keys of a
queue in one hash slot). They decide nothing: who is offered to whom is app/desk/policy.py's choice,
which CLAIM applies only if what the policy saw is unchanged (compare-and-set on the very JSON read).
"""

from __future__ import annotations

import hashlib

# KEYS: waiting, calls, agents, free. ARGV: id, replica, peer, context, max_waiting, score ("" = now: a
# new caller, checked against the queue; a score = a caller this replica re-adds after Redis lost it).
# Returns {'ok', score, position, waiting, agents logged in, agents free} or {'busy', reason}.
JOIN = """
local agents = redis.call('HLEN', KEYS[3])
local free = redis.call('ZCARD', KEYS[4])
local n = redis.call('ZCARD', KEYS[1])
local score = ARGV[6]
if score == '' then
  if agents == 0 then return {'busy', 'no_agents'} end
  if n >= tonumber(ARGV[5]) then return {'busy', 'full'} end
  local t = redis.call('TIME')
  score = t[1] .. string.format('%06d', tonumber(t[2]))
elseif redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  return {'ok', score, redis.call('ZRANK', KEYS[1], ARGV[1]) + 1, n, agents, free}
end
redis.call('ZADD', KEYS[1], score, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode({r=ARGV[2], s=score, p=ARGV[3], c=ARGV[4], x=',', oa=''}))
return {'ok', score, redis.call('ZRANK', KEYS[1], ARGV[1]) + 1, redis.call('ZCARD', KEYS[1]), agents, free}
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
return {c.oa or '', c.orr or '', rank and rank + 1 or 0, c.ca or '', c.n or 0, c.m or 0}
"""

# KEYS: waiting, calls, free, rr, agents. ARGV: how many callers from the head to look at.
# What the policy needs to pair callers with agents: {rr, {call id, call JSON, ...}, {agent id,
# agent JSON, ...}} (the head callers in join order, the free agents).
SNAPSHOT = """
local calls = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)) do
  local raw = redis.call('HGET', KEYS[2], id)
  if raw then
    calls[#calls + 1] = id
    calls[#calls + 1] = raw
  end
end
local agents = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  local raw = redis.call('HGET', KEYS[5], id)
  if raw then
    agents[#agents + 1] = id
    agents[#agents + 1] = raw
  end
end
return {redis.call('GET', KEYS[4]) or '', calls, agents}
"""

# KEYS: waiting, calls, free, rr, agents. ARGV: now (s), the new round-robin mark ('' = none), then
# for each pair the policy chose: call id, the call's JSON as read, agent id, the agent's JSON as read.
# A pair is claimed only if both are exactly as the policy saw them (compare-and-set) and the caller
# still waits and the agent is still free: the call is marked offered and the agent leaves the free
# set. Returns a flat list: call id, agent id, agent's replica, call JSON, ...
CLAIM = """
local out = {}
local claimed = false
for i = 3, #ARGV, 4 do
  local id, seen, a, agent_seen = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if redis.call('HGET', KEYS[2], id) == seen and redis.call('ZSCORE', KEYS[1], id)
      and redis.call('ZSCORE', KEYS[3], a) and redis.call('HGET', KEYS[5], a) == agent_seen then
    local c = cjson.decode(seen)
    c.oa = a
    c.n = (c.n or 0) + 1
    c.orr = cjson.decode(agent_seen).r
    c.ot = tonumber(ARGV[1])
    local raw = cjson.encode(c)
    redis.call('HSET', KEYS[2], id, raw)
    redis.call('ZREM', KEYS[3], a)
    claimed = true
    out[#out + 1] = id
    out[#out + 1] = a
    out[#out + 1] = c.orr
    out[#out + 1] = raw
  end
end
if claimed and ARGV[2] ~= '' then redis.call('SET', KEYS[4], ARGV[2]) end
return out
"""

# KEYS: waiting, calls. ARGV: id, agent, agent's replica. The agent answers: compare-and-set on `oa`.
# Returns {the caller's replica, offers made, offers missed}, or nil when the offer is no longer this
# agent's.
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
return {c.r, c.n or 0, c.m or 0}
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
  c.m = (c.m or 0) + 1
end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(c))
return 1
"""

# KEYS: calls, booked. ARGV: id, number, context (JSON), expires (seconds of open hours). A waiting
# caller becomes a queued callback on that number, unless it waits in this queue already (then 0: the
# first keeps its place).
BOOK = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
if redis.call('SADD', KEYS[2], ARGV[2]) == 0 then return 0 end
local c = cjson.decode(raw)
c.p = 'callback'
c.c = ARGV[3]
c.cb = ARGV[2]
c.ex = ARGV[4]
c.oa = ''
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(c))
return 1
"""

# KEYS: waiting, calls, free, agents. ARGV: the replica whose lease lapsed (or that shuts down), and
# who adopts its callbacks ('' when it shuts down itself: they stay, for the next janitor to adopt).
# Removes its callers (but callbacks, adopted) and agents from the queue; returns what the live
# replicas must be told, flat:
# kind, call id, agent id, replica to tell. Kinds: withdrawn (the dead replica's caller was offered to
# a live agent), caller_gone / agent_gone (a connected call lost its other end), requeued (a live
# caller was offered to a dead agent: offered again by the next claim).
REAP = """
local dead = ARGV[1]
local out = {}
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local id, c = all[i], cjson.decode(all[i + 1])
  if c.r == dead and c.cb and not c.ca then
    if c.oa ~= '' and c.orr ~= dead then
      for _, v in ipairs({'withdrawn', id, c.oa, c.orr}) do out[#out + 1] = v end
    end
    c.oa = ''
    if ARGV[2] ~= '' then c.r = ARGV[2] end
    local raw = cjson.encode(c)
    redis.call('HSET', KEYS[2], id, raw)
    if ARGV[2] ~= '' then
      for _, v in ipairs({'adopt', id, raw, ARGV[2]}) do out[#out + 1] = v end
    else
      for _, v in ipairs({'kept', id, '', ''}) do out[#out + 1] = v end
    end
  elseif c.r == dead then
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

SCRIPTS = (JOIN, LEAVE, BOOK, SNAPSHOT, CLAIM, ACCEPT, END, RELEASE, REAP, FORGET_LOGINS, LOGIN, LOGOUT)
SHA = {body: hashlib.sha1(body.encode()).hexdigest() for body in SCRIPTS}  # noqa: S324 (Redis names scripts so)
