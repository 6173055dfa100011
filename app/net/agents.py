"""Terminal agents on HOTLINE_AGENT_PORT (10087): the line protocol of AGENT_DESK.md, over TCP.

Every line the server sends starts with an upper-case word (HELLO, OK, ERR, OFFER, CONTEXT, MISSED,
CONNECTED, ENDED, CALLER, QUEUE, INFO). Commands start with `/`; any other line is chat to the
connected caller. The same line discipline as callers (UTF-8, telnet-clean, line limit, a line rate),
and the same output bound: an agent who stops reading is cut off, which logs them out, and a caller
they were talking to hears `ended`.

Passwords are checked off the event loop (scrypt is slow on purpose), with the same answer for an
unknown id and a wrong password; failures are counted per address over the last minute
(`LoginGuard`), and the 5th closes the connection. Two connections cannot log in as one agent: the
second is refused (`ERR already logged in elsewhere`) and the first keeps working.
"""

from __future__ import annotations

import asyncio
import collections
import sys
import time
from typing import TYPE_CHECKING, Any, Final, cast

import structlog

from app.desk import protocol
from app.desk.core import Agent, DeskError
from app.desk.events import AgentEvent, CallerSaid, Error, HistoryLine, Info, LoggedOut, Message
from app.desk.passwords import DUMMY_HASH, verify_password
from app.desk.protocol import clean
from app.net.telnet import INTERRUPT, OVERFLOW, LineDiscipline, encode_text

if TYPE_CHECKING:
    from app.records import Recorder
    from app.server import Hub

log = structlog.get_logger("hotline.agent")

HELLO: Final = "HELLO hotline agent desk: /login ID PASSWORD"
MAX_FAILURES: Final = 5  # failed logins per address per WINDOW; the 5th closes the connection
WINDOW: Final = 60.0
HISTORY_LINES: Final = 20
HELP: Final = (
    "INFO /login ID PASSWORD   log in (then on break)",
    "INFO /ready               take calls",
    "INFO /break [reason]      no new calls",
    "INFO /accept  /reject     answer or pass on the offered caller",
    "INFO /end [disposition]   end the call (wrap-up follows)",
    "INFO /queue               your queues: waiting, longest wait, agents",
    "INFO /history             the last lines of the offered or connected call",
    "INFO /logout              log out and close",
    "INFO any other line in a call is sent to the caller",
)


class LoginGuard:
    """Failed logins per address over the last WINDOW seconds (a success does not reset them)."""

    def __init__(self, limit: int = MAX_FAILURES, window: float = WINDOW) -> None:
        self.limit = limit
        self.window = window
        self.failures: dict[str, collections.deque[float]] = {}

    def _recent(self, address: str, now: float) -> collections.deque[float] | None:
        times = self.failures.get(address)
        if times is None:
            return None
        while times and now - times[0] >= self.window:
            times.popleft()
        if not times:
            del self.failures[address]
            return None
        return times

    def blocked(self, address: str, now: float) -> bool:
        times = self._recent(address, now)
        return times is not None and len(times) >= self.limit

    def failed(self, address: str, now: float) -> bool:
        """Count a failure; True when this one reached the limit."""
        if len(self.failures) >= 10_000:  # bounded under a flood from many addresses
            for addr in list(self.failures):
                self._recent(addr, now)
        times = self._recent(address, now) or self.failures.setdefault(address, collections.deque())
        times.append(now)
        return len(times) >= self.limit


class AgentConnection(asyncio.Protocol):
    """One terminal agent's connection."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.transport: asyncio.Transport | None = None
        self.agent: Agent | None = None
        self.address = ""
        self.peer = ""
        self._discipline = LineDiscipline(max_line=hub.settings.max_line, encoding=hub.settings.encoding)
        self._pending: collections.deque[str] = collections.deque()
        self._checking = False  # a password check is running off the loop; later lines wait
        self._line_due = 0.0
        self._throttled_at = 0.0
        self._closed = False
        self._paused = False

    # -- asyncio callbacks -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.address = sys.intern(str(peer[0])) if isinstance(peer, tuple) else str(peer)
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.transport.set_write_buffer_limits(high=min(64 * 1024, self.hub.settings.max_output // 2))
        self.hub.agent_connections.add(self)
        self._line_due = time.time()
        self.send(HELLO)

    def data_received(self, data: bytes) -> None:
        discipline = self._discipline
        items = discipline.feed(data)
        if discipline.reply:
            self._write(bytes(discipline.reply))
            discipline.reply = b""
        now = time.time()
        rate = self.hub.line_rate
        for item in items:
            if self._closed:
                return
            if item is INTERRUPT:
                self.close("interrupt")
                return
            if item is OVERFLOW:
                self.send("ERR line too long, ignored")
                continue
            due = self._line_due
            if due - now > rate.tolerance:
                if now - self._throttled_at >= 1.0:
                    self._throttled_at = now
                    self.hub.refuse(self.peer, "agent_lines_per_second")
                    self.send("ERR too fast, line ignored")
                continue
            self._line_due = max(due, now) + rate.interval
            if self._checking or self._pending:
                if len(self._pending) < 100:
                    self._pending.append(item)
                continue
            self._line(item)

    def eof_received(self) -> bool:
        for item in self._discipline.flush():
            if not self._closed and type(item) is str:
                self._line(item)
        self.close("eof")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._closed = True
        self.hub.agent_connections.discard(self)
        self._log_out("disconnected")

    def pause_writing(self) -> None:
        self._paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    # -- the desk's events -----------------------------------------------------------------------

    def agent_event(self, event: AgentEvent) -> None:
        if type(event) is CallerSaid:  # the relay's every line, without building a list
            self.send(f"CALLER {event.text}")
            return
        self.send(*protocol.lines(event))
        if type(event) is LoggedOut:
            self.agent = None  # the desk has logged them out already
            self.close(event.reason)

    # -- commands --------------------------------------------------------------------------------

    def _line(self, line: str) -> None:
        text = line.strip()
        if not text:
            return
        agent = self.agent
        if not text.startswith("/"):
            if agent is None:
                self.send("ERR not logged in: /login ID PASSWORD")
            else:
                protocol.run(self.hub.desk, agent, None, text, 0.0, self.emit)
            return
        word, _, rest = text.partition(" ")
        command = word[1:].lower()
        local = _LOCAL.get(command)
        if local is None and command not in protocol.COMMANDS:
            self.send(f"ERR unknown command: {word[:40]}")
        elif command not in ("login", "help") and agent is None:
            self.send("ERR not logged in: /login ID PASSWORD")
        elif local is not None:
            local(self, rest.strip())
        else:
            assert agent is not None
            protocol.run(self.hub.desk, agent, command, rest.strip(), time.time(), self.emit)

    def _login(self, rest: str) -> None:
        hub = self.hub
        now = time.time()
        if hub.login_guard.blocked(self.address, now):
            self.send("ERR too many attempts")
            self.close("login_blocked")
            return
        if self.agent is not None:
            self.send("ERR already logged in")
            return
        parts = rest.split(None, 1)
        if len(parts) != 2:
            self.send("ERR usage: /login ID PASSWORD")
            return
        agent_id, password = parts[0], parts[1].strip()
        model = hub.desk.config.agents.get(agent_id)
        stored = model.password_hash if model is not None else DUMMY_HASH
        self._checking = True
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(hub.executor, verify_password, password, stored)
        future.add_done_callback(lambda f: self._checked(agent_id, model is not None and f.result()))

    def _checked(self, agent_id: str, ok: bool) -> None:
        self._checking = False
        if self._closed:
            return
        hub = self.hub
        now = time.time()
        if not ok or agent_id not in hub.desk.config.agents:
            hub.login_failed_total += 1
            log.warning("login_failed", peer=self.peer)
            if hub.login_guard.failed(self.address, now):
                self.send("ERR too many attempts")
                self.close("login_blocked")
                return
            self.send("ERR login failed")
        else:
            try:
                self.agent = hub.desk.login(agent_id, self, now)
            except DeskError as exc:
                self.send(f"ERR {exc}")
            else:
                self.send(f"OK login {agent_id} {clean(self.agent.name)}")
        while self._pending and not self._checking and not self._closed:
            self._line(self._pending.popleft())

    def _history(self, rest: str) -> None:
        """HISTORY CALL_ID DIRECTION TEXT lines: the call's transcript so far, its last HISTORY_LINES."""
        assert self.agent is not None
        send_history(self.hub, self.agent, HISTORY_LINES, self.emit)

    def _logout(self, rest: str) -> None:
        self.send("OK logout")
        self.close("logout")

    def _help(self, rest: str) -> None:
        self.send(*HELP)

    # -- output and closing ----------------------------------------------------------------------

    def send(self, *lines: str) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        encoding = self.hub.settings.encoding
        if len(lines) == 1:  # the relay's every line
            transport.write(encode_text(lines[0], encoding))
        else:
            transport.write(b"".join(encode_text(line, encoding) for line in lines))
        if self._paused and transport.get_write_buffer_size() > self.hub.settings.max_output:
            self.hub.refuse(self.peer, "agent_slow_reader")
            self._log_out("slow_reader")
            transport.abort()

    def emit(self, *messages: Message) -> None:
        self.send(*(line for message in messages for line in protocol.lines(message)))

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self, reason: str) -> None:
        self._log_out(reason)
        self._closed = True
        if self.transport is not None:
            self.transport.close()

    def _log_out(self, reason: str) -> None:
        agent, self.agent = self.agent, None
        if agent is not None:
            self.hub.desk.logout(agent, time.time())


def send_history(hub: Hub, agent: Agent, count: int, out: protocol.Out) -> None:
    """The last `count` transcript lines of the agent's offered or connected call, as HistoryLine
    messages through `out` once read (off the loop's path), or an Error or Info saying why not.
    The terminal desk's /history and the browser console's {"cmd": "history"}."""
    call = agent.call or agent.offer
    records = hub.records
    if call is None:
        out(Error("not in a call"))
    elif records is None or not hub.settings.transcripts:
        out(Error("no transcripts are kept"))
    else:
        task = asyncio.get_running_loop().create_task(_read_history(records, call.id, count, out))
        hub.tasks.add(task)
        task.add_done_callback(hub.tasks.discard)


async def _read_history(records: Recorder, call_id: str, count: int, out: protocol.Out) -> None:
    try:
        lines = await records.last_lines(call_id, count)
    except Exception:  # the database is unwell: the agent gets an answer, the log the reason
        log.exception("history_failed", call_id=call_id)
        out(Error("the history cannot be read now"))
        return
    found: list[Message] = [HistoryLine(call_id, who, by, text) for who, by, text in lines]
    out(*(found or [Info(f"no history for {call_id}")]))


_LOCAL: dict[str, Any] = {  # the commands that need the connection; the rest are app.desk.protocol's
    "login": AgentConnection._login,
    "logout": AgentConnection._logout,
    "history": AgentConnection._history,
    "help": AgentConnection._help,
}
