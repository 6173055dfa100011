"""An agent's side of the desk, without I/O: the commands of a logged-in agent, and what the desk says
to an agent in its two encodings (AGENT_DESK.md): protocol lines for terminal agents, JSON for the
browser console. One model (app.desk.events), two encodings; the desk's core knows neither.

app/net/agents.py puts the lines on a TCP connection (and adds what needs I/O: /login with its
password check off the loop, /logout closing the connection, limits); app/web/console.py puts the
JSON on a WebSocket; `hotline test` drives `run` in process to script an agent. Answers go out
through `out(*messages)`, in order with the events a command causes: `OK ready` comes before the
offer that going ready brings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Final, cast

from app.desk.core import Agent, Desk, DeskError
from app.desk.events import (
    CallerSaid,
    Connected,
    Ended,
    Error,
    HistoryLine,
    Info,
    LoggedOut,
    Message,
    Missed,
    Offer,
    Ok,
    QueueInfo,
)
from app.text import strip_unsafe

Out = Callable[..., None]  # out(*messages: Message)
COMMANDS: Final = ("ready", "break", "accept", "reject", "end", "queue")
# the "type" of each message in the JSON encoding
TYPES: Final[dict[type, str]] = {
    Offer: "offer",
    Missed: "missed",
    Ended: "ended",
    CallerSaid: "caller",
    LoggedOut: "logged_out",
    Ok: "ok",
    Connected: "connected",
    Error: "error",
    Info: "info",
    QueueInfo: "queue",
    HistoryLine: "history",
}


def clean(text: str) -> str:
    """Text on one protocol line, safe to show: no newlines, no C0/C1 controls, no bidirectional
    overrides (app.text.UNSAFE). For text from files (a data table's value, an agent's name), from
    a page, and from records an older hotline wrote; lines typed by callers and terminal agents
    are clean already (the line discipline cleans them as they arrive)."""
    return strip_unsafe(text)


def lines(message: Message) -> list[str]:
    """A message as the lines a terminal agent sees."""
    kind = type(message)
    if kind is CallerSaid:  # the common one: a line of the conversation
        return [f"CALLER {cast(CallerSaid, message).text}"]
    if kind is Offer:
        o = cast(Offer, message)
        return [f"OFFER {o.call_id} queue={o.queue} waited={o.waited} from={o.peer}"] + [
            f"CONTEXT {o.call_id} {key} {clean(value)}" for key, value in o.context
        ]
    if kind is Missed:
        m = cast(Missed, message)
        return [f"MISSED {m.call_id}", *(["OK break"] if m.on_break else [])]
    if kind is Ended:
        e = cast(Ended, message)
        return [f"ENDED {e.call_id} by={e.by}"]
    if kind is LoggedOut:
        if cast(LoggedOut, message).reason == "elsewhere":
            return ["ERR already logged in elsewhere"]
        return ["INFO logged out: this agent was removed from desk.yaml"]
    if kind is Ok:
        k = cast(Ok, message)
        return [f"OK {k.what} {k.detail}" if k.detail else f"OK {k.what}"]
    if kind is Connected:
        return [f"CONNECTED {cast(Connected, message).call_id}"]
    if kind is Error:
        return [f"ERR {cast(Error, message).text}"]
    if kind is Info:
        return [f"INFO {cast(Info, message).text}"]
    if kind is QueueInfo:
        q = cast(QueueInfo, message)
        counts = f"waiting={q.waiting} longest={q.longest}s available={q.available} busy={q.busy}"
        return [f"QUEUE {q.queue} {counts}"]
    h = cast(HistoryLine, message)
    who = f"{h.direction}/{h.agent}" if h.agent else h.direction
    return [f"HISTORY {h.call_id} {who} {clean(h.text.replace(chr(10), ' / '))}"]


def as_json(message: Message) -> dict[str, Any]:
    """A message as the browser console's JSON object: {"type": ..., and the model's fields}."""
    out: dict[str, Any] = {"type": TYPES[type(message)]}
    for f in dataclasses.fields(message):
        out[f.name] = getattr(message, f.name)
    if type(message) is Offer:  # the context as CONTEXT lines show it (a shared desk's may be older)
        out["context"] = [(key, clean(value)) for key, value in message.context]
    return out


def run(desk: Desk, agent: Agent, command: str | None, rest: str, now: float, out: Out) -> None:
    """One of COMMANDS (without its slash), or chat to the caller when `command` is None. A chat
    line that is `:code` of one of desk.yaml's canned replies sends that reply."""
    try:
        if command is None:
            if rest[:1] == ":":
                rest = desk.config.canned.get(rest[1:].strip(), rest)
            desk.agent_line(agent, rest)
        elif command in ("ready", "break"):
            out(Ok(command))  # before any offer the change brings
            desk.set_status(
                agent,
                "available" if command == "ready" else "on_break",
                now,
                rest[:100] if command == "break" else "",
            )
        elif command == "accept":
            call = desk.accept(agent, now)
            out(Connected(call.id))  # caller lines can only come later: they arrive from the network
        elif command == "reject":
            if agent.offer is not None:
                out(Ok("reject", agent.offer.id))  # before the next offer
            desk.reject(agent, now)
        elif command == "end":
            if agent.call is None:
                raise DeskError("not in a call")
            out(Ended(agent.call.id, "agent"))  # before what ending brings: a removed agent's logout
            desk.end(agent, now, rest[:100])
        elif command == "queue":
            infos: list[Message] = [*queue_infos(desk, agent, now)]
            out(*(infos or [Info("you are in no queue")]))
    except DeskError as exc:
        out(Error(str(exc)))


def queue_infos(desk: Desk, agent: Agent, now: float) -> list[QueueInfo]:
    """The agent's queues now: waiting, longest wait, agents available and busy."""
    infos = []
    for name in agent.queues:
        q = desk.queues.get(name)
        if q is not None:
            waiting, longest, available, busy = desk.queue_summary(name, now)
            infos.append(QueueInfo(name, q.config.title, waiting, longest, available, busy))
    return infos
