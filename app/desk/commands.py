"""An agent's side of the desk, without I/O, in one model with two encodings (docs/agent-desk.md):

- commands are values (`Login`, `Ready`, `Say`, ...): `parse_line` reads a terminal agent's line,
  `parse_json` a console page's JSON message, into the same `Command` (or an `Invalid` with the
  error to answer); `run` carries out the desk's commands for a logged-in agent;
- what the desk says to an agent (app.desk.events) renders as protocol lines (`lines`) for terminal
  agents or as JSON (`as_json`) for the console.

app/net/agents.py puts the lines on a TCP connection and adds what needs I/O (/login with its
password check off the loop, /logout closing the connection, /history, limits); app/web/site.py and
app/web/live.py put the JSON on a WebSocket; `hotline test` drives `run` in process to script an
agent. Answers go out through `out(*messages)`, in order with the events a command causes: `OK
ready` comes before the offer that going ready brings.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, cast

from app.desk.desk import Desk
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
    Status,
)
from app.desk.model import Agent, Counts, DeskError
from app.text import strip_unsafe

Out = Callable[..., None]  # out(*messages: Message)
MAX_TEXT: Final = 1000  # characters of a chat line or a note from a page
MAX_NOTE: Final = 100  # characters of a break reason or a disposition


# ---- the commands, as values --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Login:
    agent_id: str
    password: str


@dataclass(frozen=True, slots=True)
class Logout:
    pass


@dataclass(frozen=True, slots=True)
class Help:
    pass


@dataclass(frozen=True, slots=True)
class History:
    pass


@dataclass(frozen=True, slots=True)
class Ready:
    pass


@dataclass(frozen=True, slots=True)
class Break:
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Accept:
    pass


@dataclass(frozen=True, slots=True)
class Reject:
    pass


@dataclass(frozen=True, slots=True)
class End:
    disposition: str = ""


@dataclass(frozen=True, slots=True)
class Dispose:
    """The disposition of the agent's last call (during wrap-up, or after it until the next call)."""

    text: str


@dataclass(frozen=True, slots=True)
class Queue:
    pass


@dataclass(frozen=True, slots=True)
class Say:
    """A chat line to the connected caller (`:code` sends one of desk.yaml's canned replies)."""

    text: str


@dataclass(frozen=True, slots=True)
class Invalid:
    """Not a command: the error to answer."""

    error: str


Command = Login | Logout | Help | History | Ready | Break | Accept | Reject | End | Dispose | Queue | Say
DeskCommand = Ready | Break | Accept | Reject | End | Dispose | Queue | Say  # what `run` carries out
DESK_COMMANDS: Final = (Ready, Break, Accept, Reject, End, Dispose, Queue, Say)


def _dispose(rest: str) -> Dispose | Invalid:
    text = rest[:MAX_NOTE].strip()
    return Dispose(text) if text else Invalid("usage: /disposition TEXT")


def _login(rest: str) -> Login | Invalid:
    parts = rest.split(None, 1)
    if len(parts) != 2:
        return Invalid("usage: /login ID PASSWORD")
    return Login(parts[0], parts[1].strip())


_WORDS: Final[dict[str, Callable[[str], Command | Invalid]]] = {
    "login": _login,
    "logout": lambda rest: Logout(),
    "help": lambda rest: Help(),
    "history": lambda rest: History(),
    "ready": lambda rest: Ready(),
    "break": lambda rest: Break(rest[:MAX_NOTE]),
    "accept": lambda rest: Accept(),
    "reject": lambda rest: Reject(),
    "end": lambda rest: End(rest[:MAX_NOTE]),
    "disposition": _dispose,
    "queue": lambda rest: Queue(),
}
_JSON: Final = ("ready", "break", "accept", "reject", "end", "disposition", "queue", "history")  # and "say"
_JSON_TEXT: Final = {"break": "reason", "end": "disposition", "disposition": "text"}  # the field of each


def parse_line(line: str) -> Command | Invalid | None:
    """A terminal agent's line: `/word ...` is a command, any other text chat (None: a blank line)."""
    text = line.strip()
    if not text:
        return None
    if not text.startswith("/"):
        return Say(text)
    word, _, rest = text.partition(" ")
    parse = _WORDS.get(word[1:].lower())
    if parse is None:
        return Invalid(f"unknown command: {word[:40]}")
    return parse(rest.strip())


def parse_json(data: str) -> Command | Invalid | None:
    """A console page's message: {"cmd": ready|break|accept|reject|end|disposition|queue|history|say,
    ...} (`reason` of a break, `disposition` of an end, `text` of a disposition or a say; None: a say
    with no text).
    Logging in and out are the page's form and button, not messages."""
    try:
        msg = json.loads(data)
    except ValueError:
        msg = None
    if not isinstance(msg, dict) or not isinstance(msg.get("cmd"), str):
        return Invalid('not a command: send {"cmd": ...}')
    cmd = msg["cmd"]
    if cmd == "say":
        text = page_text(msg.get("text"))
        return Say(text) if text else None
    if cmd not in _JSON:
        return Invalid(f"unknown command: {clean(cmd)[:40]}")
    field = _JSON_TEXT.get(cmd)
    rest = page_text(msg.get(field)) if field is not None else ""
    return _WORDS[cmd](rest)


def page_text(value: object) -> str:
    """Text from a page, as one clean protocol line (no control characters), bounded."""
    return clean(value)[:MAX_TEXT].strip() if isinstance(value, str) else ""


# ---- what the desk says, as lines or JSON ---------------------------------------------------------

# the "type" of each message in the JSON encoding
TYPES: Final[dict[type, str]] = {
    Offer: "offer",
    Missed: "missed",
    Ended: "ended",
    CallerSaid: "caller",
    Status: "status",
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
    if kind is Status:  # no line: OK ready, OFFER, ENDED, MISSED ... say it in the protocol's words
        return []
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


def run(desk: Desk, agent: Agent, command: DeskCommand, now: float, out: Out) -> None:
    """Carry out one of the desk's commands for a logged-in agent; answers and errors through `out`."""
    try:
        kind = type(command)
        if kind is Say:
            say(desk, agent, cast(Say, command).text, out)
        elif kind is Ready or kind is Break:
            what = "ready" if kind is Ready else "break"
            out(Ok(what))  # before any offer the change brings
            reason = cast(Break, command).reason if kind is Break else ""
            desk.set_status(agent, "available" if kind is Ready else "on_break", now, reason)
        elif kind is Accept:
            call = desk.accept(agent, now)
            out(Connected(call.id))  # caller lines can only come later: they arrive from the network
        elif kind is Reject:
            if agent.offer is not None:
                out(Ok("reject", agent.offer.id))  # before the next offer
            desk.reject(agent, now)
        elif kind is End:
            if agent.call is None:
                raise DeskError("not in a call")
            out(Ended(agent.call.id, "agent"))  # before what ending brings: a removed agent's logout
            desk.end(agent, now, cast(End, command).disposition)
        elif kind is Dispose:
            desk.dispose(agent, cast(Dispose, command).text, now)
            out(Ok("disposition"))
        elif kind is Queue:  # read exactly now, on every replica (answered when the store has)
            names = [name for name in agent.queues if name in desk.queues]

            def counted(counts: dict[str, Counts]) -> None:
                infos: list[Message] = [
                    QueueInfo(n, desk.queues[n].config.title, c.waiting, c.longest, c.available, c.busy)
                    for n in names
                    if (c := counts.get(n)) is not None
                ]
                out(*(infos or [Info("you are in no queue")]))

            desk.counts(names, now, counted)
    except DeskError as exc:
        out(Error(str(exc)))


def say(desk: Desk, agent: Agent, text: str, out: Out) -> None:
    """A chat line (stripped, not a command) to the agent's caller; `:code` sends one of desk.yaml's
    canned replies. The agent port calls it directly for the relay's every line."""
    if text[:1] == ":":
        text = desk.config.canned.get(text[1:].strip(), text)
    try:
        desk.agent_line(agent, text)
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
