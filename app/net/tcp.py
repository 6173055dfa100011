"""One caller's TCP session: an asyncio Protocol that drives one coroutine from accept to close.

How this works: the session is a plain coroutine (`_run`) that loops "take the next input, feed the
engine, write the events". It is not wrapped in a Task: `data_received` resumes it directly with
`coro.send(line)`, so a line costs no Task step and no Future. When the coroutine awaits something
asynchronous (an asyncio Future: a timer, the agent queue), `_resume` sees the Future it yields and
resumes the coroutine from the Future's done-callback, as a Task would; input arriving meanwhile
waits in `_pending`. Every log line of a session goes through `_log`, which adds `session_id` and
`peer`: the coroutine is not a Task, so a contextvars Context would have to be entered on every
resume, and storing a bound logger per session costs memory on every idle caller.

Time belongs here, not to the engine: one lazily re-armed timer per session fires at the engine's
deadline. Output is bounded: when the client stops reading, reading from it pauses; past
`max_output` bytes queued it is cut off.
"""

from __future__ import annotations

import asyncio
import collections
import os
import time
import types
from collections.abc import Coroutine, Generator
from typing import TYPE_CHECKING, Any, Final, cast

import structlog

from app.menu.engine import Session
from app.menu.events import Hangup, Notice, Say, Transfer
from app.net.telnet import INTERRUPT, OVERFLOW, LineDiscipline, Signal, encode_text

if TYPE_CHECKING:
    from app.server import Hub

log = structlog.get_logger("hotline.session")

LINE_TOO_LONG: Final = "您的输入过长,已忽略,请重新输入。"
BUSY: Final = "抱歉,当前来电较多,线路繁忙,请稍后再拨。"
TOO_FAST: Final = "您输入得太快了,部分输入已被忽略,请稍后再试。"

TIMEOUT: Final = Signal("<timeout>")
EOF: Final = Signal("<eof>")
SHUTDOWN: Final = Signal("<shutdown>")
NO_INPUT: Final = Signal("<no input>")
_HANGUP_REASONS: Final[dict[str, str]] = {
    INTERRUPT: "interrupt",
    EOF: "eof",
    SHUTDOWN: "shutdown",
    NO_INPUT: "first_input_timeout",
}
_WAIT: Final = object()  # what the coroutine yields while it waits for input
_CACHE_MAX: Final = 4096


@types.coroutine
def _next_input() -> Generator[Any, Any, str]:
    line: str = yield _WAIT
    return line


class CallerSession(asyncio.Protocol):
    """The protocol and the driver of one caller's session coroutine."""

    __slots__ = (
        "_address",
        "_coro",
        "_discipline",
        "_ended_logged",
        "_first_deadline",
        "_line_last",
        "_line_tokens",
        "_pending",
        "_started",
        "_throttled_at",
        "_timer",
        "_timer_when",
        "_waiting",
        "engine",
        "hub",
        "peer",
        "session_id",
        "transport",
    )

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.transport: asyncio.Transport | None = None
        self._coro: Coroutine[Any, Any, None] | None = None
        self._pending: collections.deque[str] | None = None
        self._waiting = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0
        self._ended_logged = False
        self._address: str | None = None

    # -- asyncio callbacks ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        hub = self.hub
        settings = hub.settings
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        if len(hub.sessions) >= settings.max_sessions:
            self._refuse(transport, "max_sessions")
            return
        same_address = hub.per_address.get(address, 0)
        if same_address >= settings.max_sessions_per_address:
            self._refuse(transport, "max_sessions_per_address")
            return
        hub.per_address[address] = same_address + 1
        self._address = address
        self.transport = transport
        hub.sessions.add(self)
        hub.sessions_total += 1
        transport.set_write_buffer_limits(high=min(64 * 1024, settings.max_output // 2))
        self.session_id = os.urandom(5).hex()
        self._started = time.time()
        self._first_deadline = self._started + settings.first_input_timeout
        self._line_tokens = hub.line_burst
        self._line_last = time.monotonic()
        self._throttled_at = 0.0
        self._discipline = LineDiscipline(max_line=settings.max_line, encoding=settings.encoding)
        self.engine = Session(
            hub.graph,
            session_id=self.session_id,
            caller=address,
            trace=hub.trace,
            stats=hub.stats,
        )
        self._log("info", "session_started", menu=hub.graph.name)
        self._coro = self._run()
        self._resume(None)

    def data_received(self, data: bytes) -> None:
        if self._coro is None:
            return
        discipline = self._discipline
        items = discipline.feed(data)
        if discipline.reply:
            self._write(bytes(discipline.reply))
            discipline.reply.clear()
        for item in items:
            if type(item) is str:  # a line, not a Signal: counts against the caller's line rate
                self._first_deadline = 0.0
                now = time.monotonic()
                hub = self.hub
                tokens = self._line_tokens + (now - self._line_last) * hub.line_rate
                self._line_last = now
                if tokens < 1.0:
                    self._line_tokens = tokens
                    self._too_fast(now)
                    continue
                self._line_tokens = (hub.line_burst if tokens > hub.line_burst else tokens) - 1.0
            self._deliver(item)

    def eof_received(self) -> bool:
        if self._coro is None:
            return False
        for item in self._discipline.flush():
            self._deliver(item)
        self._deliver(EOF)
        return True  # keep the transport open so that the answers and the goodbye still go out

    def connection_lost(self, exc: Exception | None) -> None:
        hub = self.hub
        hub.sessions.discard(self)
        address = self._address
        if address is not None:
            self._address = None
            left = hub.per_address.get(address, 1) - 1
            if left > 0:
                hub.per_address[address] = left
            else:
                hub.per_address.pop(address, None)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        coro, self._coro = self._coro, None
        if coro is not None:
            coro.close()
            self._log_end("disconnected")
        self.transport = None

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()  # do not take more input from a caller who does not read

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    # -- called by the server -------------------------------------------------------------------

    def shutdown(self) -> None:
        """The server is stopping: say goodbye and close as soon as the coroutine can."""
        self._deliver(SHUTDOWN)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- the coroutine and its driver -------------------------------------------------------------

    async def _run(self) -> None:
        engine = self.engine
        pending_say = self._emit
        pending_say(engine.start(time.time()))
        trace = self.hub.trace
        while not engine.ended:
            self._arm_timer()
            pending = self._pending
            item = pending.popleft() if pending else await _next_input()
            if type(item) is str:
                if trace:
                    node = engine.node
                    shown = "***" if node is not None and node.sensitive else item
                    self._log("debug", "input", node=node.name if node else None, input=shown)
                pending_say(engine.feed(item, time.time()))
            elif item is TIMEOUT:
                pending_say(engine.timeout(time.time()))
            elif item is OVERFLOW:
                self._write(self._encode(LINE_TOO_LONG))
            else:
                pending_say(engine.hangup(_HANGUP_REASONS[item], time.time()))

    def _resume(self, value: Any) -> None:
        coro = self._coro
        if coro is None:
            return
        try:
            yielded = coro.send(value)
        except StopIteration:
            self._coro = None
            self._close()
            return
        except Exception:  # a bug must cost this caller a polite line, never the server or a traceback
            self._coro = None
            self._log("exception", "session_crashed")
            self._log_end("crashed")
            self._write(self._encode(self.engine.graph.error.template.source))
            self._close()
            return
        if yielded is _WAIT:
            self._waiting = True
        elif asyncio.isfuture(yielded):  # awaiting a Future: resume when it is done, as a Task would
            yielded._asyncio_future_blocking = False
            yielded.add_done_callback(self._future_done)
        else:  # pragma: no cover - a programming error in the session body
            raise RuntimeError(f"session coroutine yielded {yielded!r}")

    def _future_done(self, _future: asyncio.Future[Any]) -> None:
        self._resume(None)

    def _deliver(self, item: str) -> None:
        if self._coro is None:
            return
        if self._waiting and not self._pending:
            self._waiting = False
            self._resume(item)
            return
        pending = self._pending
        if pending is None:
            pending = self._pending = collections.deque()
        pending.append(item)

    # -- time --------------------------------------------------------------------------------------

    def _arm_timer(self) -> None:
        deadline = self.engine.deadline
        first = self._first_deadline
        if first and (deadline is None or first < deadline):
            deadline = first
        if deadline is None:
            return
        loop = asyncio.get_running_loop() if self._timer is None else None
        when_in = deadline - time.time()
        if self._timer is not None:
            if self._timer_when - time.monotonic() <= when_in + 0.001:
                return  # fires earlier than needed; _on_timer re-arms for the rest
            self._timer.cancel()
            loop = asyncio.get_running_loop()
        assert loop is not None
        self._timer_when = time.monotonic() + when_in
        self._timer = loop.call_later(max(when_in, 0.0), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._coro is None:
            return
        now = time.time()
        first = self._first_deadline
        if first and now >= first:  # connected but never said anything
            self._first_deadline = 0.0
            self.hub.refuse(self.peer, "first_input_timeout")
            self._deliver(NO_INPUT)
            return
        deadline = self.engine.deadline
        if deadline is not None and now >= deadline:
            self._deliver(TIMEOUT)
        elif self._waiting:
            self._arm_timer()

    def _too_fast(self, now: float) -> None:
        """Lines over the caller's rate are ignored; say so at most once a second."""
        if now - self._throttled_at >= 1.0:
            self._throttled_at = now
            self.hub.refuse(self.peer, "lines_per_second")
            self._write(self._encode(TOO_FAST))

    def _refuse(self, transport: asyncio.Transport, reason: str) -> None:
        self.hub.refuse(self.peer, reason)
        transport.write(encode_text(BUSY, self.hub.settings.encoding))
        transport.close()

    # -- output ------------------------------------------------------------------------------------

    def _emit(self, events: list[Any]) -> None:
        chunks: list[bytes] = []
        hangup: Hangup | None = None
        for ev in events:
            kind = type(ev)
            if kind is Say:
                chunks.append(self._encode(ev.text))
            elif kind is Hangup:
                hangup = ev
            elif kind is Notice:
                self._log(ev.level, ev.event, **ev.fields)
            elif kind is Transfer:
                self._log("debug", "transfer_requested", queue=ev.queue, node=ev.node)
        if chunks:
            self._write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        if hangup is not None:
            self._log_end(hangup.reason)
            self._close()

    def _encode(self, text: str) -> bytes:
        cache = self.hub.encoded
        data = cache.get(text)
        if data is None:
            data = encode_text(text, self.hub.settings.encoding)
            if len(cache) >= _CACHE_MAX:
                cache.clear()
            cache[text] = data
        return data

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(data)
        if transport.get_write_buffer_size() > self.hub.settings.max_output:
            self.hub.refuse(self.peer, "slow_reader")
            self._log_end("slow_reader")
            transport.abort()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _log_end(self, reason: str) -> None:
        if self._ended_logged:
            return
        self._ended_logged = True
        engine = self.engine
        self.hub.durations.observe(time.time() - self._started)
        self._log(
            "info",
            "session_ended",
            reason=reason,
            duration=round(time.time() - self._started, 3),
            nodes=engine.visits,
            path=engine.path[-20:],
        )

    def _log(self, level: str, event: str, **fields: Any) -> None:
        getattr(log, level)(event, session_id=self.session_id, peer=self.peer, **fields)
