"""The names of the shared desk's keys in Redis.

Keys (docs/agent-desk.md, "Replicas: the desk shared through Redis"). Every key of a queue carries
the hash tag `{q:NAME}`, so Redis Cluster keeps a queue in one slot and each script touches one slot:

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
until), ca/car (connected: agent, its replica). An agent's JSON: r (replica), n (name), s (status),
st (state), ss (since), i (idle since), k (calls answered), c (current call).
"""

from __future__ import annotations

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
