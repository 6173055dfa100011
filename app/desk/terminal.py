"""The terminal agent's side of the desk, without I/O: desk events as protocol lines, and the
commands of a logged-in agent (AGENT_DESK.md, "Agents over TCP").

app/net/agents.py puts this on a TCP connection (and adds what needs I/O: /login with its password
check off the loop, /logout closing the connection, limits); `hotline test` drives it in process to
script an agent. Answers go out through `out(*lines)`, in order with the events a command causes:
`OK ready` comes before the offer that going ready brings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, cast

from app.desk.core import Agent, Desk, DeskError
from app.desk.events import AgentEvent, CallerSaid, Ended, LoggedOut, Missed, Offer

Out = Callable[..., None]
COMMANDS: Final = ("ready", "break", "accept", "reject", "end", "queue")
_CONTROL: Final = dict.fromkeys([*range(32), 127])


def clean(text: str) -> str:
    """Text from a file (a data table's value, an agent's name) on one protocol line: no newlines,
    no control characters. Lines typed by callers and agents are clean already (the line
    discipline drops control characters)."""
    return text.translate(_CONTROL)


def event_lines(event: AgentEvent) -> list[str]:
    """What an agent's terminal shows for a desk event."""
    kind = type(event)
    if kind is CallerSaid:  # the common one: a line of the conversation
        return [f"CALLER {cast(CallerSaid, event).text}"]
    if kind is Offer:
        o = cast(Offer, event)
        return [f"OFFER {o.call_id} queue={o.queue} waited={o.waited} from={o.peer}"] + [
            f"CONTEXT {o.call_id} {key} {clean(value)}" for key, value in o.context
        ]
    if kind is Missed:
        m = cast(Missed, event)
        return [f"MISSED {m.call_id}", *(["OK break"] if m.on_break else [])]
    if kind is Ended:
        e = cast(Ended, event)
        return [f"ENDED {e.call_id} by={e.by}"]
    if kind is LoggedOut:
        return ["INFO logged out: this agent was removed from desk.yaml"]
    return []  # pragma: no cover - every AgentEvent is listed above


def run(desk: Desk, agent: Agent, command: str | None, rest: str, now: float, out: Out) -> None:
    """One of COMMANDS (without its slash), or chat to the caller when `command` is None."""
    try:
        if command is None:
            desk.agent_line(agent, rest)
        elif command in ("ready", "break"):
            out("OK ready" if command == "ready" else "OK break")  # before any offer the change brings
            desk.set_status(
                agent,
                "available" if command == "ready" else "on_break",
                now,
                rest[:100] if command == "break" else "",
            )
        elif command == "accept":
            call = desk.accept(agent, now)
            out(f"CONNECTED {call.id}")  # caller lines can only come later: they arrive from the network
        elif command == "reject":
            if agent.offer is not None:
                out(f"OK reject {agent.offer.id}")  # before the next offer
            desk.reject(agent, now)
        elif command == "end":
            if agent.call is None:
                raise DeskError("not in a call")
            out(f"ENDED {agent.call.id} by=agent")  # before what ending brings: a removed agent's logout
            desk.end(agent, now, rest[:100])
        elif command == "queue":
            lines = []
            for name in agent.queues:
                if name in desk.queues:
                    waiting, longest, available, busy = desk.queue_summary(name, now)
                    lines.append(
                        f"QUEUE {name} waiting={waiting} longest={longest}s available={available} busy={busy}"
                    )
            out(*(lines or ["INFO you are in no queue"]))
    except DeskError as exc:
        out(f"ERR {exc}")
