"""The desk's rules, pure: who may be offered to whom, in what order, and how an agent's state moves.
Inputs in, a decision out: no desk, no store, no clock (`now` is an argument). Both stores follow
these rules: the in-process one (app/desk/queue.py) applies them to its own objects, the Redis one
(app/desk/redis/) reads the shared queue, asks `pairs` and claims exactly the pairs it returns in one
script (compare-and-set), so a rule is changed here and nowhere else.

First come, first served (docs/agent-desk.md): callers are considered in join order. A caller whose offer
an agent missed is offered to another free agent at once, or to that same agent only after
MISS_COOLDOWN; meanwhile that agent is *held* for them: no caller behind them is offered to it. An
agent who rejected a caller is never offered that caller again, and is not held for them.

Strategies pick among the agents a caller may be offered to: `longest_idle` (idle the longest),
`fewest_calls` (fewest answered since login, then longest idle), `round_robin` (by agent id, the next
after the one offered last).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

MISS_COOLDOWN: Final = 5.0  # a missed caller is offered to the same agent again only after this
DEFAULT_HANDLE: Final = 180.0  # the handle time assumed before any call was handled (seconds)
EMA_WEIGHT: Final = 0.25  # weight of the newest call in the moving average handle time (as app_queue)
STRATEGIES: Final = ("longest_idle", "fewest_calls", "round_robin")


@dataclass(frozen=True, slots=True)
class Waiting:
    """A waiting caller as the rules see it."""

    id: str
    offered: bool  # an offer to some agent is ringing
    rejected: frozenset[str] = frozenset()  # agents who rejected this caller
    cooldown: tuple[str, float] | None = None  # (agent id, until) after that agent missed the offer
    callback: bool = False  # a queued callback: offered only while the queue is open


@dataclass(frozen=True, slots=True)
class Free:
    """An agent who may take a call now (available and idle), as the rules see them."""

    id: str
    idle_since: float
    calls: int  # answered since login


def may_take(status: str, state: str) -> bool:
    """Only an available agent who is idle is offered a call."""
    return status == "available" and state == "idle"


def _able(call: Waiting, agent: Free, now: float) -> bool:
    if agent.id in call.rejected:
        return False
    cool = call.cooldown
    return cool is None or cool[0] != agent.id or now >= cool[1]


def pick(strategy: str, able: Sequence[Free], rr_last: str) -> Free:
    """The agent the strategy picks among `able` (not empty)."""
    if strategy == "fewest_calls":
        return min(able, key=lambda a: (a.calls, a.idle_since, a.id))
    if strategy == "round_robin":
        after = [a for a in able if a.id > rr_last]
        return min(after or able, key=lambda a: a.id)
    return min(able, key=lambda a: (a.idle_since, a.id))  # longest_idle


def pairs(
    calls: Iterable[Waiting],
    free: Iterable[Free],
    strategy: str,
    rr_last: str,
    now: float,
    open_now: bool = True,
) -> list[tuple[str, str]]:
    """(call id, agent id) to offer now, callers in join order; callbacks only while the queue is
    open (`open_now`): outside its hours they keep their place and wait. The last pair's agent is the
    new round-robin mark."""
    agents = list(free)
    out: list[tuple[str, str]] = []
    for call in calls:
        if not agents:
            break
        if call.offered or (call.callback and not open_now):
            continue
        able = [a for a in agents if _able(call, a, now)]
        if able:
            chosen = pick(strategy, able, rr_last)
            if strategy == "round_robin":
                rr_last = chosen.id
            out.append((call.id, chosen.id))
            agents.remove(chosen)
        elif call.cooldown is not None and now < call.cooldown[1]:
            # only the agent who missed them is free: held for this caller until the cool-down ends
            agents = [a for a in agents if a.id != call.cooldown[0]]
    return out


# ---- an agent's state (the system's: idle, offered, in_call, wrap_up) -------------------------------

# (state, what happened) -> the next state. Anything else is a bug in the desk, not the agent's doing.
TRANSITIONS: Final[dict[tuple[str, str], str]] = {
    ("idle", "offer"): "offered",
    ("offered", "accept"): "in_call",
    ("offered", "withdraw"): "idle",  # rejected, missed, the caller left, or the offer was lost
    ("in_call", "end"): "wrap_up",
    ("in_call", "end_at_once"): "idle",  # a queue without wrap-up
    ("wrap_up", "wrapped"): "idle",
    ("in_call", "lost"): "idle",  # the accept lost its compare-and-set: there was no call
}


def next_state(state: str, event: str) -> str:
    """The state after `event`; ValueError for a move the table does not allow."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise ValueError(f"an agent in state {state!r} cannot {event!r}") from None


# ---- estimates --------------------------------------------------------------------------------------


def estimate_minutes(position: int, handle_time: float, agents: int) -> int:
    """position × the moving average handle time ÷ agents logged in, in minutes (at least 1)."""
    return max(1, math.ceil(position * handle_time / max(1, agents) / 60.0))


def handle_time(average: float, talked: float) -> float:
    """The moving average handle time after a call of `talked` seconds (weight 1/4 for the newest)."""
    return average * (1 - EMA_WEIGHT) + talked * EMA_WEIGHT
