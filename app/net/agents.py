"""Terminal agents on HOTLINE_AGENT_PORT (10087): the line protocol of docs/agent-desk.md, over TCP.

Every line the server sends starts with an upper-case word (HELLO, OK, ERR, OFFER, CONTEXT, MISSED,
CONNECTED, ENDED, CALLER, QUEUE, INFO). Commands start with `/`; any other line is chat to the
connected caller. The same line discipline as callers (UTF-8, telnet-clean, line limit, a line rate),
and the same output bound: an agent who stops reading is cut off, which logs them out, and a caller
they were talking to hears `ended`.

Logins go through the gate both doors share (app/desk/logins.py): the same answer for an unknown id
and a wrong password, the lock-out decided before the check (the 5th failure in a minute closes the
connection, and the address is refused until the minute has passed), one check in flight per address,
a bounded queue of checks (`ERR busy` past it). Two connections cannot log in as one agent: the
second is refused (`ERR already logged in elsewhere`) and the first keeps working.

The door itself (README.md, "The doors"): at most `max_agent_connections` connections in all (past
it a new one is closed at once), at most UNAUTHENTICATED_PER_ADDRESS not yet logged in from one
address (`ERR busy`, closed), and LOGIN_DEADLINE seconds to log in. Behind a load balancer
(HOTLINE_PROXY_PROTOCOL) the PROXY header comes first and the limits count the agent's own address.
"""

from __future__ import annotations

import asyncio
import collections
import sys
import time
from typing import TYPE_CHECKING, Final, Protocol, cast

import structlog

from app.desk import commands
from app.desk.commands import clean
from app.desk.events import AgentEvent, CallerSaid, LoggedOut, Message, Status
from app.desk.history import send_history
from app.desk.logins import Verdict
from app.desk.model import Agent, DeskError
from app.net import proxy
from app.net.telnet import INTERRUPT, OVERFLOW, LineDiscipline, encode_text

if TYPE_CHECKING:
    from app.desk.desk import Desk
    from app.desk.logins import LoginGate
    from app.net.rates import Rate
    from app.records import Recorder
    from app.settings import Settings

log = structlog.get_logger("hotline.agent")

HELLO: Final = "HELLO hotline agent desk: /login ID PASSWORD"
LOGIN_DEADLINE: Final = 30.0  # seconds from connecting to logging in
UNAUTHENTICATED_PER_ADDRESS: Final = 10  # connections from one address not (yet) logged in
LOGIN_ANSWERS: Final = {
    Verdict.FAILED: "ERR login failed",
    Verdict.LOCKED: "ERR too many attempts",
    Verdict.BUSY: "ERR busy",
    Verdict.THROTTLED: "ERR too many logins from this address, try again later",
}
HISTORY_LINES: Final = 20
HELP: Final = (
    "INFO /login ID PASSWORD   log in (then on break)",
    "INFO /ready               take calls",
    "INFO /break [reason]      no new calls",
    "INFO /accept  /reject     answer or pass on the offered caller",
    "INFO /end [disposition]   end the call (wrap-up follows)",
    "INFO /disposition TEXT    after a call: record (or replace) its disposition",
    "INFO /queue               your queues: waiting, longest wait, agents",
    "INFO /history             the last lines of the offered or connected call",
    "INFO /logout              log out and close",
    "INFO any other line in a call is sent to the caller",
)


class AgentHub(Protocol):
    """What a terminal agent's connection uses of the server (app/server.py's Hub provides it)."""

    settings: Settings
    desk: Desk
    logins: LoginGate
    records: Recorder | None
    agent_connections: set[AgentConnection]
    agents_unauthenticated: dict[str, int]
    proxy_from: frozenset[str]
    line_rate: Rate
    tasks: set[asyncio.Task[None]]

    def refuse(self, peer: str, reason: str, quiet: bool = False) -> None: ...


class AgentConnection(asyncio.Protocol):
    """One terminal agent's connection."""

    def __init__(self, hub: AgentHub) -> None:
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
        self._counted = False  # among the address's connections not logged in
        self._deadline: asyncio.TimerHandle | None = None  # the login deadline
        self._proxy: bytes | None = None  # the PROXY header so far, while it is awaited

    # -- asyncio callbacks -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        hub = self.hub
        settings = hub.settings
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.address = sys.intern(str(peer[0])) if isinstance(peer, tuple) else str(peer)
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        if len(hub.agent_connections) >= settings.max_agent_connections:
            hub.refuse(self.peer, "agent_connections")
            self._closed = True
            self.transport.abort()
            return
        hub.agent_connections.add(self)
        self.transport.set_write_buffer_limits(high=min(64 * 1024, settings.max_output // 2))
        self._deadline = asyncio.get_running_loop().call_later(LOGIN_DEADLINE, self._login_timeout)
        if settings.proxy_protocol:  # the load balancer says who the agent is first
            if self.address not in hub.proxy_from:
                hub.refuse(self.peer, "proxy_untrusted")
                self.close("proxy_untrusted")
                return
            self._proxy = b""
            return
        self._greet()

    def _greet(self) -> None:
        """The agent's own address is known: its limit, then HELLO."""
        hub = self.hub
        waiting = hub.agents_unauthenticated.get(self.address, 0)
        if waiting >= UNAUTHENTICATED_PER_ADDRESS:
            hub.refuse(self.peer, "agent_connections_per_address")
            self.send("ERR busy")
            self.close("busy")
            return
        hub.agents_unauthenticated[self.address] = waiting + 1
        self._counted = True
        self._line_due = time.time()
        self.send(HELLO)

    def _proxy_header(self, data: bytes) -> None:
        buf = self._proxy = (self._proxy or b"") + data
        result = proxy.parse(buf)
        if type(result) is proxy.Incomplete:
            return
        self._proxy = None
        if type(result) is proxy.Invalid:
            self.hub.refuse(self.peer, "proxy_header")
            self.close("proxy_header")
            return
        header = cast(proxy.Header, result)
        if header.address is not None:  # else the balancer's own check
            self.address = sys.intern(header.address)
            self.peer = f"{header.address}:{header.port}"
        self._greet()
        if not self._closed and len(buf) > header.length:
            self.data_received(buf[header.length :])

    def _login_timeout(self) -> None:
        self._deadline = None
        if self.agent is None and not self._closed:
            self.hub.refuse(self.peer, "agent_login_timeout")
            self.send("ERR login timeout")
            self.close("login_timeout")

    def _done_waiting(self) -> None:
        """Logged in, or closing: no longer among the address's connections waiting to log in."""
        if self._counted:
            self._counted = False
            left = self.hub.agents_unauthenticated.get(self.address, 1) - 1
            if left > 0:
                self.hub.agents_unauthenticated[self.address] = left
            else:
                self.hub.agents_unauthenticated.pop(self.address, None)
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def data_received(self, data: bytes) -> None:
        if self._proxy is not None:
            self._proxy_header(data)
            return
        if self._closed:
            return
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
        if self._proxy is not None:
            self.close("eof")
            return False
        for item in self._discipline.flush():
            if not self._closed and type(item) is str:
                self._line(item)
        self.close("eof")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._closed = True
        self._done_waiting()  # or never will: either way no longer waiting
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
        if type(event) is Status:  # for pages: the protocol's own lines say it to a terminal
            return
        self.send(*commands.lines(event))
        if type(event) is LoggedOut:
            self.agent = None  # the desk has logged them out already
            self.close(event.reason)

    # -- commands --------------------------------------------------------------------------------

    def _line(self, line: str) -> None:
        text = line.strip()
        if text and text[0] != "/" and self.agent is not None:  # chat: the relay's every line
            commands.say(self.hub.desk, self.agent, text, self.emit)
            return
        command = commands.parse_line(line)
        if command is None:
            return
        kind = type(command)
        agent = self.agent
        if kind is commands.Invalid:
            self.send(f"ERR {cast(commands.Invalid, command).error}")
        elif kind is commands.Login:
            self._login(cast(commands.Login, command))
        elif kind is commands.Help:
            self.send(*HELP)
        elif agent is None:
            self.send("ERR not logged in: /login ID PASSWORD")
        elif kind is commands.Logout:
            self.send("OK logout")
            self.close("logout")
        elif kind is commands.History:
            hub = self.hub
            transcripts = hub.records if hub.settings.transcripts else None
            send_history(transcripts, agent, HISTORY_LINES, self.emit, hub.tasks)
        else:
            commands.run(self.hub.desk, agent, cast(commands.DeskCommand, command), time.time(), self.emit)

    def _login(self, command: commands.Login) -> None:
        if self.agent is not None:
            self.send("ERR already logged in")
            return
        self._checking = True  # later lines wait for the answer
        task = asyncio.get_running_loop().create_task(self._check(command.agent_id, command.password))
        self.hub.tasks.add(task)
        task.add_done_callback(self.hub.tasks.discard)

    async def _check(self, agent_id: str, password: str) -> None:
        hub = self.hub
        try:
            verdict = await hub.logins.check(
                hub.desk.config.agents, self.address, agent_id, password, "agent_port"
            )
        finally:
            self._checking = False
        if self._closed:
            return
        if verdict is Verdict.OK:
            try:
                self.agent = hub.desk.login(agent_id, self, time.time())
            except DeskError as exc:
                self.send(f"ERR {exc}")
            else:
                self._done_waiting()
                self.send(f"OK login {agent_id} {clean(self.agent.name)}")
        else:
            self.send(LOGIN_ANSWERS[verdict])
            if verdict is Verdict.LOCKED:
                self.close("login_blocked")
                return
        while self._pending and not self._checking and not self._closed:
            self._line(self._pending.popleft())

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
        self.send(*(line for message in messages for line in commands.lines(message)))

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self, reason: str) -> None:
        self._done_waiting()
        self._log_out(reason)
        self._closed = True
        if self.transport is not None:
            self.transport.close()

    def _log_out(self, reason: str) -> None:
        agent, self.agent = self.agent, None
        if agent is not None:
            self.hub.desk.logout(agent, time.time())
