"""`hotline chat`: walk the menu in the terminal, offline, with the real engine and a simulated clock.

Lines typed are fed to the engine as a caller's; what the engine says is printed as a caller would
see it. Beside it (dimmed on a terminal, or always with --trace) the node the call is at and the
variables saved so far. Commands start with '/': /wait [SECONDS] lets silence pass (to the next
deadline by default) without sleeping, /vars, /node, /help, /quit. Works with a pipe on stdin too.
Lookups with an HTTP source ask the real source (in real time: the wait prompt comes after a
second of waiting), and say what they asked and what came back beside the prompts.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from app.authoring.conversations import answer_offline
from app.menu import Graph, Hangup, Notice, Say, Session, Transfer
from app.menu.events import Event, Lookup, SaveTicket

if TYPE_CHECKING:
    from app.net.sources import Blocking

HELP = """commands: /wait [SECONDS]  let silence pass (default: until the next timeout)
          /vars              show saved variables
          /node              show where the call is
          /quit              hang up
anything else is typed as the caller"""


class Chat:
    """One offline call; `run()` reads lines from `stdin` until the call ends or input does."""

    def __init__(self, graph: Graph, *, out: TextIO, trace: bool, dim: bool) -> None:
        self.graph = graph
        self.out = out
        self.trace = trace
        self.dim = dim
        self.now = time.time()
        self.session = Session(graph, session_id="chat", caller="127.0.0.1", trace=trace)
        self.live: Blocking | None = None  # made at the first look-up of an HTTP source

    def show(self, events: list[Event]) -> None:
        events = answer_offline(self.session, events, self.now)
        answered: list[Event] = []
        for event in events:
            if isinstance(event, Say):
                self.out.write(event.text + "\n")
            elif isinstance(event, Hangup):
                self.note(f"call ended: {event.reason}")
            elif isinstance(event, Transfer):
                self.note(f"transfer to queue '{event.queue}' (offline: no agent desk, answered as busy)")
            elif isinstance(event, SaveTicket):
                self.note("ticket (offline: nothing is stored, the number is made up)")
            elif isinstance(event, Lookup):  # the last event of its list: the engine waits for it
                answered = self.look_up(event)
            elif isinstance(event, Notice) and (self.trace or event.level in ("warning", "error")):
                fields = " ".join(f"{k}={v}" for k, v in event.fields.items())
                self.note(f"{event.level}: {event.event} {fields}".rstrip())
        if answered:
            self.show(answered)
            return
        if not self.session.ended and (self.trace or self.dim):
            self.note(self.state())
        self.out.flush()

    def look_up(self, lookup: Lookup) -> list[Event]:
        """Ask the real source; print the wait prompt if it is slow; what the menu says next."""
        source = lookup.source
        self.note(f"look-up: {source.name}, {source.method} {source.shown(lookup.url)}")
        if self.live is None:
            from app.net.sources import Blocking  # noqa: PLC0415 - aiohttp only for menus with sources

            self.live = Blocking(self._failed)
        deadline = self.session.deadline

        def slow() -> None:
            if deadline is not None:
                self.show(self.session.timeout(deadline))

        answer = self.live.fetch(lookup, None if deadline is None else deadline - self.now, slow)
        why = f" ({answer.reason})" if answer.reason else ""
        self.note(f"look-up: {source.name} answered {answer.outcome}{why} in {answer.seconds:.3f} s")
        return self.session.lookup_result(answer, self.now)

    def _failed(self, event: str, fields: dict[str, Any]) -> None:
        self.note(f"{event} " + " ".join(f"{k}={v}" for k, v in fields.items()))

    def close(self) -> None:
        if self.live is not None:
            self.live.close()
            self.live = None

    def state(self) -> str:
        s = self.session
        node = s.node.name if s.node else "-"
        saved = ", ".join(f"{k}={v!r}" for k, v in s.vars.items()) or "none"
        wait = f", timeout in {s.deadline - self.now:g}s" if s.deadline is not None else ""
        return f"[{node}] vars: {saved}{wait}"

    def note(self, text: str) -> None:
        self.out.write(f"\x1b[2m  {text}\x1b[0m\n" if self.dim else f"  {text}\n")

    def command(self, line: str) -> bool:
        """Run a /command; False to stop."""
        name, _, arg = line[1:].partition(" ")
        if name == "wait":
            deadline = self.session.deadline
            if arg.strip():
                try:
                    self.now += float(arg)
                except ValueError:
                    self.note("usage: /wait [SECONDS]")
                    return True
            elif deadline is not None:
                self.now = max(self.now, deadline)
            self.show(self.session.timeout(self.now))
        elif name == "vars":
            self.note(", ".join(f"{k}={v!r}" for k, v in self.session.vars.items()) or "no variables saved")
        elif name == "node":
            self.note(self.state())
        elif name in ("quit", "exit", "q"):
            self.show(self.session.hangup("caller", self.now))
            return False
        else:
            self.note(HELP)
        return True

    def run(self, stdin: TextIO, *, echo: bool) -> int:
        try:
            return self._run(stdin, echo=echo)
        finally:
            self.close()

    def _run(self, stdin: TextIO, *, echo: bool) -> int:
        self.show(self.session.start(self.now))
        while not self.session.ended:
            line = stdin.readline()
            if not line:
                self.show(self.session.hangup("eof", self.now))
                break
            line = line.rstrip("\r\n")
            if echo:
                self.out.write(f"> {line}\n")
            if line.startswith("/") and len(line) > 1:
                if not self.command(line):
                    break
                continue
            self.show(self.session.feed(line, self.now))
        return 0


def run_chat(graph: Graph, *, trace: bool) -> int:
    tty = sys.stdout.isatty()
    chat = Chat(graph, out=sys.stdout, trace=trace, dim=tty and not trace)
    if sys.stdin.isatty():
        chat.note("offline chat with the menu; /help for commands")
    return chat.run(sys.stdin, echo=not sys.stdin.isatty())
