"""Where a queue lives: the interface of the desk's two stores, in this process (app/desk/queue.py)
and in Redis shared by replicas (app/desk/redis/). The desk (app/desk/desk.py) is written once
against it.

Every method that has an answer gives it to a callback: the local store calls it at once, before the
method returns; the Redis store after its round trip. Either way answers come in the order the
methods were called, so the desk's code reads the same for both. What a store learns by itself (an
offer it claimed for an agent of this process, what another replica said) it hands to the desk's
methods `deliver`, `withdrawn`, `connected`, `relayed` and `resync`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from app.desk.model import Agent, Call, Counts, QueueState, SharedHealth


@dataclass(frozen=True, slots=True)
class Joined:
    """A caller is in the queue: their place (1: next), the queue's length, agents logged in, and
    agents free (available and idle) at that moment: a caller whose place is within them is about to
    be offered, so no estimate is said to them."""

    position: int
    waiting: int
    agents: int
    free: int = 0


@dataclass(frozen=True, slots=True)
class Left:
    """A waiting caller left the queue: where they stood (0: unknown), and whether an agent on
    another replica had answered them meanwhile (then it was not an abandon)."""

    position: int
    answered_elsewhere: bool = False
    offers: int | None = None  # offers made and missed, when the store counts them (Redis)
    missed: int = 0


class Owner(Protocol):
    """What a store reads of its desk and hands it (app/desk/desk.py's Desk provides it)."""

    queues: dict[str, QueueState]
    agents: dict[str, Agent]  # logged in here
    calls: dict[str, Call]  # this process's callers
    remote: dict[str, Call]  # other replicas' callers offered to / talking with our agents

    def deliver(self, name: str, call: Call | str, agent_id: str, now: float) -> None: ...

    def remote_caller(
        self, queue: str, call_id: str, seq: int, peer: str, context: tuple[tuple[str, str], ...]
    ) -> Call: ...

    def withdrawn(self, call_id: str, agent_id: str, by: str, now: float) -> bool: ...

    def connected(
        self, name: str, call_id: str, agent_id: str, agent_name: str, counts: tuple[int, int], now: float
    ) -> bool: ...

    def relayed(
        self, name: str, call_id: str, direction: str, line: str | None, end: str | None, now: float
    ) -> None: ...

    def resync(self, now: float) -> None: ...

    def adopt(
        self,
        name: str,
        call_id: str,
        seq: int,
        number: str,
        context: tuple[tuple[str, str], ...],
        expires: float,
        now: float,
    ) -> None: ...

    def dispatch(self, now: float) -> None: ...

    def local_counts(self, name: str, now: float) -> Counts: ...


class Store(Protocol):
    """The queue's side of the desk; see the module's docstring."""

    replica: str  # this process's name among replicas ("" in process)

    def bind(self, desk: Owner) -> None:
        """The desk the store hands what it learns by itself."""

    async def start(self) -> None: ...

    async def close(self) -> None:
        """After the desk's shutdown: this process's callers and agents leave the queue."""

    def health(self) -> SharedHealth | None: ...

    # ---- callers ----

    def join(self, q: QueueState, call: Call, done: Callable[[Joined | str], None]) -> None:
        """Put a caller at the end of the queue (sets `call.seq`), or refuse them with the reason
        (no_agents, full, unavailable)."""

    def rejoin(self, q: QueueState, call: Call) -> None:
        """Put back a caller the store lost (Redis restarted), at their join time."""

    def book(self, call: Call, number: str, context: str, done: Callable[[bool], None]) -> None:
        """A waiting caller becomes a queued callback on `number` (`context`: what the agent will see,
        JSON); False when that number waits in the queue already (it keeps its first place)."""

    def unbook(self, call: Call) -> None:
        """A callback is over (served, expired): its number may be booked again."""

    def leave(self, call: Call, by: str, done: Callable[[Left | None], None]) -> None:
        """A waiting caller leaves (by the caller, or max_wait: the server); an offer of theirs to an
        agent of another replica is withdrawn there."""

    def positions(self, calls: list[Call], done: Callable[[Call, int], None]) -> None:
        """Each waiting caller's place in the whole queue (1: next)."""

    def waiting(self, q: QueueState) -> int:
        """Callers waiting in the whole queue (with Redis: as of the last look)."""

    # ---- offers ----

    def claim_soon(self, now: float) -> None:
        """Pair waiting callers with free agents by the policy, soon (at once in process), and hand
        the desk each pair whose agent is here (`Desk.deliver`)."""

    def unclaim(self, queue: str, call_id: str, agent_id: str) -> None:
        """A claimed pair the desk could not ring: the caller may be offered again."""

    def release(self, call: Call, agent: Agent) -> None:
        """An offer is over without an answer (rejected, missed, the agent left): the caller may be
        offered again (never to an agent who rejected them; after the cool-down to one who missed)."""

    def accept(self, call: Call, agent: Agent, done: Callable[[bool], None]) -> None:
        """The agent answers: compare-and-set on the offer; False when it was gone meanwhile."""

    def end(self, q: QueueState, call: Call, agent: Agent) -> None:
        """A connected call is over (the queue's handle time has been updated)."""

    def forget(self, call: Call) -> None:
        """A call across replicas ended on our side: stop following it."""

    # ---- agents ----

    def agent_changed(self, agent: Agent) -> None:
        """The agent's status, state or queues changed (or they logged in or out)."""

    def login(self, agent: Agent, done: Callable[[str | None], None]) -> None:
        """The agent id is this process's now, or the replica that has it already."""

    def logout(self, agent: Agent) -> None: ...

    # ---- across replicas ----

    def relay(self, queue: str, call_id: str, direction: str, kind: str, value: str) -> None:
        """A line (kind "l") or the end (kind "e") of a call whose other end is on another replica."""

    # ---- what the queues look like ----

    def summary(self, queue: str) -> Counts | None:
        """The whole queue as of the last look (None: this process is the whole queue)."""

    def counts(self, queues: list[str], now: float, done: Callable[[dict[str, Counts]], None]) -> None:
        """The queues exactly now, this process's own last changes counted."""

    def agent_rows(self, rows: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
        """The board's agent table (this process's rows given), with other replicas' agents."""
