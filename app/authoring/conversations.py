"""`hotline test`: conversation tests, scripted callers with expected replies, for menu authors.

A file holds `conversations`, each a `name` and `steps`. A step may `send` a line, let `silence`
pass, or have an `agent` type a line, then checks what the menu said during that step: `expect`
(text that must appear, one or a list), `absent` (text that must not), `node` (where the call must
be, in process only), `hangup` (true: the call must end here), `agent_sees` (text an agent's terminal
must have shown). A call that ends where no step said `hangup` fails.

By default the tests run in process on the real engine and the real agent desk (the config's
desk.yaml) with a simulated clock, so silences of minutes take no time; a caller who has sent
nothing is cut off after the server's first-input timeout (FIRST_INPUT, HOTLINE_FIRST_INPUT_TIMEOUT's
default) as on a real server, so a test that passes here passes against one too. A conversation's `agents`
are logged in and ready before the call; nobody else is, so without agents a transfer finds the
queue without agents (busy). With `--server HOST:PORT` they dial a running server over TCP instead
(silences then really wait, and conversations that script agents are skipped).

Lookups with an HTTP source call the real source, unless the file (or a conversation) replaces it
with canned answers: `sources: {billing: {answers: {"13800138000": {...}}, missing: [...],
error: [...]}}`, listed by the value of the source's variables (joined by a space when it has
several), so that a menu's tests need no backend; a value listed nowhere fails the conversation.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from app.desk import commands
from app.desk.call import CallerCall
from app.desk.desk import Desk
from app.desk.events import AgentEvent, Error, Ok
from app.desk.loader import DeskConfig
from app.menu import Graph, Hangup, Say, Session
from app.menu.events import (
    DESK_EVENTS,
    BookCallback,
    Event,
    Lookup,
    LookupResult,
    QueueBusy,
    SaveTicket,
    TicketFailed,
    TicketSaved,
    ToAgent,
    Transfer,
)
from app.menu.schema import Duration
from app.menu.sources import ERROR, FOUND, MISSING, record_of
from app.settings import Settings
from app.yamlfile import Problem, Reporter, read_yaml

TCP_WAIT = 3.0  # seconds to wait for expected text over TCP
FIRST_INPUT: float = Settings.model_fields["first_input_timeout"].default  # a silent caller is cut off
DESK_TICK = 0.5  # simulated seconds between the desk's clock ticks during a silence
CALL_ID = "test"
AgentId = Annotated[str, Field(min_length=1, max_length=32)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class Step(_Model):
    send: str | None = None
    silence: Duration | None = None
    expect: str | list[str] = []
    absent: str | list[str] = []
    node: str | None = None
    hangup: bool = False
    agent: str | None = None  # a line an agent types: /accept, /reject, /end, /ready, /break, or chat
    by: AgentId | None = None  # which of the conversation's agents (default: the first)
    agent_sees: str | list[str] = []

    def expected(self) -> list[str]:
        return [self.expect] if isinstance(self.expect, str) else list(self.expect)

    def unwanted(self) -> list[str]:
        return [self.absent] if isinstance(self.absent, str) else list(self.absent)

    def agent_expected(self) -> list[str]:
        return [self.agent_sees] if isinstance(self.agent_sees, str) else list(self.agent_sees)

    def action(self) -> str:
        if self.send is not None:
            return f"send {self.send!r}"
        if self.agent is not None:
            return f"agent {self.by + ' ' if self.by else ''}types {self.agent!r}"
        if self.silence is not None:
            return f"silence {self.silence:g}s"
        return "(at the start)"


class CannedSource(_Model):
    """Canned answers that replace an HTTP source, by the value of the source's variables: the
    object saved when found, the values that are missing, those that fail (the `error` way)."""

    answers: dict[str, dict[str, Any]] = {}
    missing: list[str] = []
    error: list[str] = []


class Conversation(_Model):
    name: Annotated[str, Field(min_length=1)]
    agents: list[AgentId] = []  # logged in and ready before the call (ids of desk.yaml)
    sources: dict[str, CannedSource] = {}  # over the file's, source by source
    steps: Annotated[list[Step], Field(min_length=1)]


class ConversationFile(_Model):
    sources: dict[str, CannedSource] = {}  # for every conversation of the file
    conversations: Annotated[list[Conversation], Field(min_length=1)]


@dataclass
class Loaded:
    path: str
    conversations: list[Conversation]
    lines: list[list[int]]  # line of each step, per conversation
    problems: list[Problem] = field(default_factory=list)
    sources: dict[str, CannedSource] = field(default_factory=dict)  # the file's canned sources


class _Reporter(Reporter):
    def describe(self, path: tuple[str | int, ...]) -> str:
        words = []
        for i, part in enumerate(path):
            if isinstance(part, int) and i > 0 and path[i - 1] in ("conversations", "steps"):
                words.append(f"{str(path[i - 1])[:-1]} {part + 1}")
            elif part not in ("conversations", "steps"):
                words.append(str(part))
        return " ".join(words) or "the file"


def load(path: Path) -> Loaded:
    """Read one conversation file; problems as path:line:col."""
    reporter = _Reporter(str(path))
    doc = read_yaml(path, str(path), 1 << 20, reporter.problems)
    if doc is None:
        return Loaded(str(path), [], [], reporter.problems)
    reporter.doc = doc
    try:
        parsed = ConversationFile.model_validate(doc.data)
    except pydantic.ValidationError as exc:
        reporter.pydantic_errors(exc, ConversationFile, (), "the conversation file")
        return Loaded(str(path), [], [], reporter.problems)
    for c, conv in enumerate(parsed.conversations):
        for s, step in enumerate(conv.steps):
            here = ("conversations", c, "steps", s)
            actions = sum(x is not None for x in (step.send, step.silence, step.agent))
            if actions > 1:
                reporter.error(
                    here, "a step sends a line, lets silence pass, or has an agent type: one of them"
                )
            if s > 0 and actions == 0:
                reporter.error(here, "only the first step may have neither send, silence nor agent")
            if (step.agent is not None or step.agent_sees or step.by) and not conv.agents:
                reporter.error(here, "this step scripts an agent: list the conversation's agents first")
            if step.by is not None and step.by not in conv.agents:
                reporter.error((*here, "by"), f"agent '{step.by}' is not in this conversation's agents")
    lines = [
        [doc.where(("conversations", c, "steps", s))[0] for s in range(len(conv.steps))]
        for c, conv in enumerate(parsed.conversations)
    ]
    return Loaded(str(path), parsed.conversations, lines, reporter.problems, dict(parsed.sources))


@dataclass
class Failure:
    step: int
    line: int
    action: str
    message: str
    got: str


@dataclass
class Outcome:
    name: str
    failure: Failure | None
    visited: set[str] = field(default_factory=set)
    skipped: str = ""


def _check(step: Step, said: str, ended: bool, node: str | None) -> str | None:
    missing = [t for t in step.expected() if t not in said]
    if missing:
        return "expected: " + " | ".join(repr(t) for t in missing)
    present = [t for t in step.unwanted() if t in said]
    if present:
        return "did not expect: " + " | ".join(repr(t) for t in present)
    if step.node is not None and node != step.node:
        return f"expected the call at node {step.node!r}, it is at {node!r}"
    if step.hangup and not ended:
        return "expected the call to end here; it goes on"
    if ended and not step.hangup:
        return "the call ended here, but the step does not say hangup: true"
    return None


def offline_ticket_id(session: Session, now: float) -> str:
    """The id a ticket gets in process, where nothing is stored: always the day's first number."""
    return f"T{time.strftime('%Y%m%d', time.localtime(now))}-0001"


def answer_offline(session: Session, events: list[Event], now: float) -> list[Event]:
    """In process there is no agent desk and no database: every transfer is answered as when no
    agent is logged in (busy, then the node's on_busy), and every ticket as stored (with a made-up
    id), so menus with transfer and ticket nodes can be walked and tested offline."""
    out = list(events)
    i = 0
    while i < len(out):
        if isinstance(out[i], Transfer):
            out += session.desk_event(QueueBusy("no_agents"), now)
        elif isinstance(out[i], SaveTicket):
            out += session.ticket_result(TicketSaved(offline_ticket_id(session, now)), now)
        i += 1
    return out


class NoCannedAnswer(Exception):
    """A look-up of a replaced source for a value its canned answers do not list."""


# a real source's look-up, to its end: (lookup, seconds after which to call `slow`, slow) -> answer
LiveLookup = Callable[[Lookup, float | None, Callable[[], None]], LookupResult]


def canned_answer(canned: CannedSource, lookup: Lookup) -> LookupResult:
    """The answer a replaced source gives."""
    key = lookup.key
    if key in canned.answers:
        return LookupResult(FOUND, record_of(canned.answers[key]), "canned")
    if key in canned.missing:
        return LookupResult(MISSING, None, "canned")
    if key in canned.error:
        return LookupResult(ERROR, None, "canned")
    raise NoCannedAnswer(
        f"source '{lookup.source.name}' has no canned answer for {key!r}: list it under its "
        "answers, missing or error"
    )


class _Call:
    """One scripted caller and the agents of one conversation, on a real Desk with a simulated clock.
    The engine and the desk are joined by the same CallerCall as on the TCP port (app/desk/call.py)."""

    def __init__(
        self,
        graph: Graph,
        desk_config: DeskConfig,
        agent_ids: list[str],
        now: float,
        canned: Mapping[str, CannedSource] | None = None,
        live: LiveLookup | None = None,
    ) -> None:
        self.now = now
        self.canned = canned or {}
        self.live = live
        self.session = Session(graph, session_id=CALL_ID, caller="127.0.0.1")
        self.desk = Desk(desk_config)
        self.peer = "127.0.0.1:50000"
        self.inbox: list[object] = []  # desk events for the caller, in order
        self.call = CallerCall(self.desk, CALL_ID, self)
        self.seen: dict[str, list[str]] = {}  # agent id -> lines shown during the current step
        self.first_due = now + FIRST_INPUT  # the server's first-input timeout, until the caller sends
        self.agents = {}
        for agent_id in agent_ids:
            self.seen[agent_id] = []
            out = self._screen(agent_id)
            agent = self.desk.login(agent_id, _AgentScreen(out), now)
            self.agents[agent_id] = agent
            commands.run(self.desk, agent, commands.Ready(), now, out)

    def _screen(self, agent_id: str) -> commands.Out:
        """What the agent sees, as a terminal agent's lines."""
        seen = self.seen[agent_id]
        return lambda *messages: seen.extend(line for m in messages for line in commands.lines(m))

    # the CallerLink the desk talks to
    def handoff_context(self) -> tuple[tuple[str, str], ...]:
        return self.session.handoff_context()

    def desk_event(self, event: object) -> None:
        self.inbox.append(event)

    def settle(self, events: list[Event]) -> list[Event]:
        """Act on the engine's events (join, chat, leave) and feed it the desk's answers until quiet."""
        out: list[Event] = []
        while True:
            for ev in events:
                out.append(ev)
                if type(ev) is Transfer:
                    self.call.transfer(ev.queue, self.now)
                elif type(ev) is ToAgent:
                    self.call.say(ev.text)
                elif type(ev) is BookCallback:
                    self.call.book(ev.number, ev.expires, self.now)
                elif type(ev) is SaveTicket:  # stored at once, nowhere: see offline_ticket_id
                    self.inbox.append(TicketSaved(offline_ticket_id(self.session, self.now)))
                elif type(ev) is Lookup:
                    out += self.look_up(ev)
            if self.session.desk is None or self.session.ended:
                self.call.done(self.now)
            if not self.inbox:
                return out
            event = self.inbox.pop(0)
            if type(event) in DESK_EVENTS:
                self.call.heard(event, self.now)
                events = self.session.desk_event(event, self.now)
            elif type(event) in (TicketSaved, TicketFailed):
                events = self.session.ticket_result(event, self.now)
            elif type(event) is LookupResult:
                events = self.session.lookup_result(event, self.now)
            else:
                events = []

    def look_up(self, lookup: Lookup) -> list[Event]:
        """Answer a look-up, canned or from the real source (into the inbox); what the menu says
        meanwhile: the wait prompt, when the real source takes longer than the node lets it."""
        canned = self.canned.get(lookup.source.name)
        if canned is not None:
            self.inbox.append(canned_answer(canned, lookup))
            return []
        if self.live is None:
            raise NoCannedAnswer(f"source '{lookup.source.name}' cannot be asked here")
        said: list[Event] = []
        deadline = self.session.deadline

        def slow() -> None:
            if deadline is not None:
                said.extend(self.session.timeout(deadline))

        self.inbox.append(self.live(lookup, None if deadline is None else deadline - self.now, slow))
        return said

    def type_as_agent(self, agent_id: str, line: str) -> None:
        agent, out = self.agents[agent_id], self._screen(agent_id)
        command = commands.parse_line(line)
        if command is None:
            return
        if type(command) is commands.Logout:
            out(Ok("logout"))
            self.desk.logout(agent, self.now)
        elif isinstance(command, commands.DESK_COMMANDS):
            commands.run(self.desk, agent, command, self.now, out)
        elif type(command) is commands.Invalid:
            out(Error(command.error))
        else:  # /login, /help, /history: not what a conversation test scripts
            out(Error(f"not in a conversation test: {line.strip()[:40]}"))

    def wait(self, seconds: float) -> list[Event]:
        """Let `seconds` pass: the menu's timeouts, the desk's clock and, for a caller who has sent
        nothing yet, the server's first-input timeout, in order."""
        target = self.now + seconds
        events: list[Event] = []
        while self.now < target and not self.session.ended:
            step = min(target, self.now + DESK_TICK)
            if self.first_due and self.first_due <= step:  # as the TCP session: goodbye, hang up
                self.now = self.first_due
                events += self.settle(self.session.hangup("first_input_timeout", self.now))
                continue
            deadline = self.session.deadline
            if deadline is not None and deadline <= step:
                self.now = deadline
                events += self.settle(self.session.timeout(self.now))
                continue
            self.now = step
            self.desk.tick(self.now)
            events += self.settle([])
        self.now = max(self.now, target)
        return events


class _AgentScreen:
    """An agent's terminal in process: the desk's events as the protocol's lines."""

    def __init__(self, out: commands.Out) -> None:
        self.out = out

    def agent_event(self, event: AgentEvent) -> None:
        self.out(event)


def run_in_process(
    graph: Graph,
    conv: Conversation,
    lines: list[int],
    desk: DeskConfig | None = None,
    canned: Mapping[str, CannedSource] | None = None,
    live: LiveLookup | None = None,
) -> Outcome:
    """Run one conversation; `canned`: the file's canned sources (the conversation's own win);
    `live`: how a source that is not replaced is asked (None: it cannot be)."""
    outcome = Outcome(conv.name, None)
    desk = desk or DeskConfig.default()
    unknown = [a for a in conv.agents if a not in desk.agents]
    if unknown:
        outcome.failure = Failure(
            0, lines[0], "(logging in the agents)", f"agent {unknown[0]!r} is not in desk.yaml", ""
        )
        return outcome
    replaced = {**(canned or {}), **conv.sources}
    strays = [name for name in replaced if name not in graph.sources]
    if strays:
        have = ", ".join(sorted(graph.sources)) or "none"
        message = f"the menu has no source {strays[0]!r} to replace (its sources: {have})"
        outcome.failure = Failure(0, lines[0], "(replacing sources)", message, "")
        return outcome
    call = _Call(graph, desk, conv.agents, 1_700_000_000.0, replaced, live)
    session = call.session
    for i, step in enumerate(conv.steps):
        for seen in call.seen.values():
            seen.clear()
        try:
            events = _take(call, conv, i, step)
        except NoCannedAnswer as exc:
            outcome.failure = Failure(i + 1, lines[i], step.action(), str(exc), "")
            return outcome
        outcome.visited.update(session.stats.node_visits)  # every node, however long the call
        said = "\n".join(e.text for e in events if isinstance(e, Say))
        ended = any(isinstance(e, Hangup) for e in events)
        problem = _check(step, said, ended, session.node.name if session.node else None)
        if problem is None:
            shown = call.seen[step.by] if step.by else [line for seen in call.seen.values() for line in seen]
            missing = [t for t in step.agent_expected() if not any(t in line for line in shown)]
            if missing:
                problem = "expected the agent to see: " + " | ".join(repr(t) for t in missing)
                said = "\n".join(f"[agent] {line}" for line in shown)
        if problem is not None:
            outcome.failure = Failure(i + 1, lines[i], step.action(), problem, said)
            return outcome
        if ended:
            break
    return outcome


def _take(call: _Call, conv: Conversation, i: int, step: Step) -> list[Event]:
    """Take step `i`; what the menu said meanwhile."""
    session = call.session
    if i == 0 and step.send is None and step.silence is None and step.agent is None:
        return call.settle(session.start(call.now))
    if i == 0:
        call.settle(session.start(call.now))
    if step.send is not None:
        call.first_due = 0.0  # the caller has said something: no first-input cut-off any more
        return call.settle(session.feed(step.send, call.now))
    if step.agent is not None:
        call.type_as_agent(step.by or conv.agents[0], step.agent)
        return call.settle([])
    return call.wait(step.silence or 0.0)


def run_over_tcp(
    host: str, port: int, conv: Conversation, lines: list[int], encoding: str, canned: bool = False
) -> Outcome:
    """Dial a running server; `canned`: the file replaces sources (then in process only)."""
    outcome = Outcome(conv.name, None)
    if conv.agents:
        outcome.skipped = "it scripts agents: in process only"
        return outcome
    if conv.sources or canned:
        outcome.skipped = "it replaces sources with canned answers: in process only"
        return outcome
    with socket.create_connection((host, port), timeout=10) as sock:
        buffer = b""
        closed = False
        for i, step in enumerate(conv.steps):
            if step.send is not None:
                sock.sendall(step.send.encode(encoding) + b"\r\n")
            start = len(buffer)
            wait = TCP_WAIT + (step.silence or 0.0)
            deadline = time.monotonic() + wait
            want = step.expected()
            while not closed and time.monotonic() < deadline:
                said = buffer[start:].decode(encoding, "replace")
                if want and all(t in said for t in want) and not step.hangup:
                    break
                sock.settimeout(max(0.05, min(0.3, deadline - time.monotonic())))
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    if not want and not step.hangup and step.silence is None:
                        break
                    continue
                if not chunk:
                    closed = True
                    break
                buffer += chunk
            said = buffer[start:].decode(encoding, "replace").replace("\r\n", "\n")
            problem = _check(step.model_copy(update={"node": None}), said, closed, None)
            if problem is not None:
                outcome.failure = Failure(i + 1, lines[i], step.action(), problem, said)
                return outcome
            if closed:
                break
    return outcome


def collect(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(q for q in p.rglob("*.y*ml") if q.is_file())
        else:
            files.append(p)
    return files


def report(outcomes: list[tuple[str, Outcome]], problems: list[Problem], seconds: float, out: Any) -> int:
    """Print pytest-style results; the exit code (1 on any failure or problem)."""
    failed = 0
    for problem in problems:
        out.write(f"{problem}\n")
    skipped = 0
    for path, o in outcomes:
        if o.skipped:
            skipped += 1
            out.write(f"{path}::{o.name} SKIPPED ({o.skipped})\n")
            continue
        if o.failure is None:
            out.write(f"{path}::{o.name} PASSED\n")
            continue
        failed += 1
        f = o.failure
        out.write(f"{path}::{o.name} FAILED\n")
        out.write(f"    step {f.step} ({path}:{f.line}): {f.action}\n")
        out.write(f"    {f.message}\n")
        got = f.got.strip().replace("\n", "\n              ") or "(nothing)"
        out.write(f"    got:      {got}\n")
    passed = len(outcomes) - failed - skipped
    errors = sum(1 for p in problems if p.severity == "error")
    summary = (
        f"{passed} passed, {failed} failed"
        + (f", {skipped} skipped" if skipped else "")
        + (f", {errors} file errors" if errors else "")
    )
    out.write(f"===== {summary} in {seconds:.2f}s =====\n")
    return 1 if failed or errors or not outcomes else 0
