"""`hotline test`: conversation tests, scripted callers with expected replies, for menu authors.

A file holds `conversations`, each a `name` and `steps`. A step may `send` a line or let `silence`
pass, then checks what the menu said during that step: `expect` (text that must appear, one or a
list), `absent` (text that must not), `node` (where the call must be, in process only), `hangup`
(true: the call must end here). A call that ends where no step said `hangup` fails.

By default the tests run in process on the real engine with a simulated clock, so silences of
minutes take no time. With `--server HOST:PORT` they dial a running server over TCP instead
(silences then really wait).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from app.menu import Graph, Hangup, Say, Session
from app.menu.events import Event, QueueBusy, Transfer
from app.menu.schema import Duration
from app.yamlfile import Problem, Reporter, read_yaml

TCP_WAIT = 3.0  # seconds to wait for expected text over TCP


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class Step(_Model):
    send: str | None = None
    silence: Duration | None = None
    expect: str | list[str] = []
    absent: str | list[str] = []
    node: str | None = None
    hangup: bool = False

    def expected(self) -> list[str]:
        return [self.expect] if isinstance(self.expect, str) else list(self.expect)

    def unwanted(self) -> list[str]:
        return [self.absent] if isinstance(self.absent, str) else list(self.absent)

    def action(self) -> str:
        if self.send is not None:
            return f"send {self.send!r}"
        if self.silence is not None:
            return f"silence {self.silence:g}s"
        return "(at the start)"


class Conversation(_Model):
    name: Annotated[str, Field(min_length=1)]
    steps: Annotated[list[Step], Field(min_length=1)]


class ConversationFile(_Model):
    conversations: Annotated[list[Conversation], Field(min_length=1)]


@dataclass
class Loaded:
    path: str
    conversations: list[Conversation]
    lines: list[list[int]]  # line of each step, per conversation
    problems: list[Problem] = field(default_factory=list)


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
            if step.send is not None and step.silence is not None:
                reporter.error(
                    ("conversations", c, "steps", s),
                    "a step either sends a line or lets silence pass, not both",
                )
            if s > 0 and step.send is None and step.silence is None:
                reporter.error(
                    ("conversations", c, "steps", s), "only the first step may have neither send nor silence"
                )
    lines = [
        [doc.where(("conversations", c, "steps", s))[0] for s in range(len(conv.steps))]
        for c, conv in enumerate(parsed.conversations)
    ]
    return Loaded(str(path), parsed.conversations, lines, reporter.problems)


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


def offline_transfers(session: Session, events: list[Event], now: float) -> list[Event]:
    """In process there is no agent desk: every transfer is answered as when no agent is logged in
    (busy, then the node's on_busy), so menus with transfer nodes can be walked and tested offline."""
    out = list(events)
    i = 0
    while i < len(out):
        if isinstance(out[i], Transfer):
            out += session.desk_event(QueueBusy("no_agents"), now)
        i += 1
    return out


def run_in_process(graph: Graph, conv: Conversation, lines: list[int]) -> Outcome:
    now = 1_700_000_000.0
    session = Session(graph, session_id="test", caller="127.0.0.1")
    outcome = Outcome(conv.name, None)
    for i, step in enumerate(conv.steps):
        if i == 0 and step.send is None and step.silence is None:
            events = session.start(now)
        else:
            if i == 0:
                session.start(now)
            if step.send is not None:
                events = offline_transfers(session, session.feed(step.send, now), now)
            else:
                target = now + (step.silence or 0.0)
                events = []
                while session.deadline is not None and session.deadline <= target and not session.ended:
                    now = session.deadline
                    events += session.timeout(now)
                now = target
        outcome.visited.update(session.stats.node_visits)  # every node, however long the call
        said = "\n".join(e.text for e in events if isinstance(e, Say))
        ended = any(isinstance(e, Hangup) for e in events)
        problem = _check(step, said, ended, session.node.name if session.node else None)
        if problem is not None:
            outcome.failure = Failure(i + 1, lines[i], step.action(), problem, said)
            return outcome
        if ended:
            break
    return outcome


def run_over_tcp(host: str, port: int, conv: Conversation, lines: list[int], encoding: str) -> Outcome:
    outcome = Outcome(conv.name, None)
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
    for path, o in outcomes:
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
    passed = len(outcomes) - failed
    errors = sum(1 for p in problems if p.severity == "error")
    summary = f"{passed} passed, {failed} failed" + (f", {errors} file errors" if errors else "")
    out.write(f"===== {summary} in {seconds:.2f}s =====\n")
    return 1 if failed or errors or not outcomes else 0
