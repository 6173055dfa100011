"""One caller's TCP session: an asyncio Protocol that drives one coroutine from accept to close.

How this works: the session is one generator-based coroutine (`_run`, a `types.coroutine`) that loops
"take the next input, feed the engine, write the events". It is not wrapped in a Task:
`data_received` resumes it directly with `coro.send(line)` (`_deliver`) and it receives the line
from a plain `yield`, so a line costs no Task step, no Future and no awaitable object. It waits on
nothing but its next input: everything asynchronous (the silence timer, the agent desk, a ticket
being stored, an HTTP look-up: app/net/sources.py) comes back to it as input, through `_deliver`,
in order with the caller's lines; what arrives while it is busy waits in `_pending`.

The common keypress is the fast path: a read such as b"1\r\n" is found in the line discipline's
table of short reads (`hub.keys`), checked against the caller's line rate (GCRA: one due time), sent into the
coroutine, which asks `Session.press` for the one prompt it leads to and writes that prompt's
pre-encoded bytes straight to the transport. Anything else takes the general path (`feed`, `_emit`).

Time belongs here, not to the engine: the hub's shared timer heap (`timers.py`) calls back at the
engine's deadline. Output is bounded: when the client stops reading, reading from it pauses; past
`max_output` bytes queued it is cut off.

Memory matters (thousands of idle callers): per session there is this object, the coroutine, the
line discipline and the engine state, and nothing else: no Task, no TimerHandle, no per-wait
object, and the peer and session id strings are only made when a log line needs them. Every log
line goes through `_log`, which adds `session_id` and `peer`.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import os
import sys
import time
import types
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Final, Protocol, cast

import structlog

from app.desk.call import CallerCall
from app.menu.engine import Session, mask
from app.menu.events import (
    DESK_EVENTS,
    AgentLine,
    BookCallback,
    Hangup,
    Lookup,
    LookupResult,
    Notice,
    SaveTicket,
    Say,
    Score,
    TicketFailed,
    TicketSaved,
    ToAgent,
    Transfer,
)
from app.menu.nodes import WaitNode
from app.menu.templates import value_text
from app.net import proxy
from app.net.telnet import INTERRUPT, OVERFLOW, LineDiscipline, Signal, encode_text, whole_line
from app.records import NewTicket, RecordError
from app.records.recorder import MAX_CALL_BYTES, TRUNCATED

if TYPE_CHECKING:
    from app.desk.desk import Desk
    from app.desk.tallies import Histogram
    from app.menu import Graph
    from app.menu.engine import Stats
    from app.net.rates import Rate
    from app.net.sources import Lookups
    from app.net.timers import Timers
    from app.records import Recorder
    from app.settings import Settings

log = structlog.get_logger("hotline.session")

LINE_TOO_LONG: Final = "您的输入过长,已忽略,请重新输入。"
BUSY: Final = "抱歉,当前来电较多,线路繁忙,请稍后再拨。"
TOO_FAST: Final = "您输入得太快了,部分输入已被忽略,请稍后再试。"

TIMEOUT: Final = Signal("\0timeout")
EOF: Final = Signal("\0eof")
SHUTDOWN: Final = Signal("\0shutdown")
NO_INPUT: Final = Signal("\0no input")
_HANGUP_REASONS: Final[dict[str, str]] = {
    INTERRUPT: "interrupt",
    EOF: "eof",
    SHUTDOWN: "shutdown",
    NO_INPUT: "first_input_timeout",
}
_WAIT: Final = object()  # what the coroutine yields while it waits for input
_CACHE_MAX: Final = 4096
PROXY_TIMEOUT: Final = 5.0  # seconds a load balancer has to send its PROXY header
# session ids: unique across restarts (the start second, then random bits), cheap to hold
_RUN_PREFIX: Final = f"{int(time.time()):x}{os.urandom(2).hex()}"
_COUNTER = itertools.count(1)

_clock = time.time  # one global lookup per read instead of two


class ProxyWait:
    """A connection from the load balancer before its PROXY header has come in whole."""

    __slots__ = ("buf", "timer", "transport")

    def __init__(self, transport: asyncio.Transport, expire: Any) -> None:
        self.transport = transport
        self.buf = b""
        self.timer = asyncio.get_running_loop().call_later(PROXY_TIMEOUT, expire)


class CallerHub(Protocol):
    """What a caller's session uses of the server (app/server.py's Hub provides it)."""

    settings: Settings
    graph: Graph  # the current menu: a reload swaps it, a session keeps the one it started on
    desk: Desk
    records: Recorder | None
    lookups: Lookups  # HTTP look-ups of `lookup` nodes with a source
    sessions: set[CallerSession]
    per_address: dict[str, int]
    proxy_waits: dict[CallerSession, ProxyWait]
    proxy_from: frozenset[str]
    encoded: dict[str, bytes]
    keys: dict[bytes, list[str]]
    line_rate: Rate
    timers: Timers
    tasks: set[asyncio.Task[None]]
    stats: Stats
    trace: bool
    sessions_total: int
    durations: Histogram

    def refuse(self, peer: str, reason: str, quiet: bool = False) -> None: ...


class CallerSession(asyncio.Protocol):
    """The protocol and the driver of one caller's session coroutine."""

    __slots__ = (
        "_address",
        "_call",
        "_clear",
        "_coro",
        "_cut",
        "_discipline",
        "_ended_logged",
        "_first_deadline",
        "_kept",
        "_line_due",
        "_now",
        "_paused",
        "_pending",
        "_port",
        "_rec",
        "_started",
        "_throttled_at",
        "_timer_due",
        "_waiting",
        "engine",
        "hub",
        "transport",
    )

    def __init__(self, hub: CallerHub) -> None:
        self.hub = hub
        self.transport: asyncio.Transport | None = None
        self._coro: Generator[Any, Any, None] | None = None
        self._pending: collections.deque[str] | None = None
        self._waiting = False
        self._paused = False
        self._clear = False  # output can go straight to the transport: open, not closing, not paused
        self._timer_due = 0.0
        self._ended_logged = False
        self._address: str | None = None
        self._port = 0
        self._call: CallerCall | None = None  # made once the caller reaches a transfer node
        self._rec: Recorder | None = None  # where this call's transcript goes (None: not kept)
        self._kept = 0  # characters of transcript kept for this call
        self._cut = 0  # transcript lines not kept: past MAX_CALL_BYTES

    @property
    def peer(self) -> str:
        return f"{self._address}:{self._port}"

    @property
    def session_id(self) -> str:
        return self.engine.session_id

    @property
    def alive(self) -> bool:
        return self._coro is not None

    # -- asyncio callbacks ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        hub = self.hub
        settings = hub.settings
        peer = transport.get_extra_info("peername")
        address, port = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else (str(peer), 0)
        address = sys.intern(address)  # one string per calling address, not one per call
        self._address, self._port = address, port
        if settings.proxy_protocol:  # a load balancer first says who the caller is
            if address not in hub.proxy_from:
                self._refuse(transport, "proxy_untrusted")
                return
            # waiting for the header: kept on the hub, not in a slot every session would carry
            hub.proxy_waits[self] = ProxyWait(transport, self._proxy_timeout)
            return
        self._begin(transport)

    def _begin(self, transport: asyncio.Transport) -> None:
        """The call starts: limits by the caller's address, the session, the greeting."""
        hub = self.hub
        settings = hub.settings
        address = self._address
        assert address is not None
        if len(hub.sessions) >= settings.max_sessions:
            self._refuse(transport, "max_sessions")
            return
        same_address = hub.per_address.get(address, 0)
        if same_address >= settings.max_sessions_per_address:
            self._refuse(transport, "max_sessions_per_address")
            return
        hub.per_address[address] = same_address + 1
        self.transport = transport
        self._clear = True
        hub.sessions.add(self)
        hub.sessions_total += 1
        transport.set_write_buffer_limits(high=min(64 * 1024, settings.max_output // 2))
        now = self._now = self._started = time.time()
        self._first_deadline = now + settings.first_input_timeout
        self._line_due = now  # line rate, as GCRA: when the next line is due at the steady rate
        self._throttled_at = 0.0
        self._discipline: LineDiscipline | None = None  # made when a read needs one (data_received)
        session_id = f"{_RUN_PREFIX}{next(_COUNTER):x}"
        self.engine = Session(
            hub.graph, session_id=session_id, caller=address, trace=hub.trace, stats=hub.stats
        )
        if settings.transcripts and hub.records is not None:
            self._rec = hub.records
            hub.records.call_started(session_id, now, address)
        self._log("info", "session_started", menu=hub.graph.name)
        self._coro = self._run()
        self._resume(None)

    def data_received(self, data: bytes) -> None:
        if self._coro is None:
            wait = self.hub.proxy_waits.get(self)
            if wait is not None:
                self._proxy_header(wait, data)
            return
        # A key pressed alone with nothing pending: the line discipline's own shortcut, looked up here.
        discipline = self._discipline  # None: between lines, nothing to remember (most callers)
        items = self.hub.keys.get(data) if discipline is None or discipline.idle else None
        if items is None:
            if discipline is None:
                settings = self.hub.settings
                items = whole_line(data, settings.encoding, settings.max_line)
                if items is None:  # a partial line, telnet commands, editing keys: the discipline's work
                    discipline = LineDiscipline(max_line=settings.max_line, encoding=settings.encoding)
                    self._discipline = discipline
            if discipline is not None:
                items = discipline.feed(data)
                if discipline.reply:
                    self._write(bytes(discipline.reply))
                    discipline.reply = b""
                if discipline.spent:
                    self._discipline = None
            if not items:
                return
        now = self._now = _clock()
        rate = self.hub.line_rate
        for item in items:
            due = self._line_due  # the line rate: over it, lines are ignored (signals still go through)
            if due - now > rate.tolerance and type(item) is str:  # a burst ahead of the steady rate
                self._too_fast(now)
                continue
            self._line_due = (due if due > now else now) + rate.interval  # not max(): cheaper
            if self._waiting:  # _deliver and _resume inline: the coroutine takes the line now
                # the relay's every line: to the agent now, as _run would (the coroutine waits on:
                # a line of conversation changes none of its state)
                engine = self.engine
                if engine.desk is not None and type(item) is str and not self.hub.trace and self._chat(item):
                    continue
                self._waiting = False
                try:
                    self._coro.send(item)
                except BaseException as exc:  # sorted out in _stopped
                    self._stopped(exc)
                else:
                    self._waiting = True  # it only ever yields to wait for input
            else:
                self._deliver(item)

    def eof_received(self) -> bool:
        if self._coro is None:
            return False
        self._now = time.time()
        if self._discipline is not None:
            for item in self._discipline.flush():
                self._deliver(item)
        self._deliver(EOF)
        return True  # keep the transport open so that the answers and the goodbye still go out

    def connection_lost(self, exc: Exception | None) -> None:
        if self._coro is None and (wait := self.hub.proxy_waits.pop(self, None)) is not None:
            wait.timer.cancel()  # gone before its PROXY header
            return
        hub = self.hub
        hub.sessions.discard(self)
        self._clear = False
        if self.transport is not None:
            self.transport = None
            address = self._address
            left = hub.per_address.get(address, 1) - 1  # type: ignore[arg-type]
            if left > 0:
                hub.per_address[address] = left  # type: ignore[index]
            else:
                hub.per_address.pop(address, None)  # type: ignore[arg-type]
        if self._timer_due:
            self._timer_due = 0.0
            hub.timers.forget()
        coro, self._coro = self._coro, None
        self._waiting = False  # (data_received resumes the coroutine when this says so)
        hub.lookups.cancel(self)  # hung up during a look-up: it is cancelled
        if self._call is not None:
            self._call.done(time.time())  # hung up while waiting or talking
        if coro is not None:
            coro.close()
            self._log_end("disconnected")

    def pause_writing(self) -> None:
        self._paused = True
        self._clear = False
        if self.transport is not None:
            self.transport.pause_reading()  # do not take more input from a caller who does not read

    def resume_writing(self) -> None:
        self._paused = False
        if self.transport is not None and not self.transport.is_closing():
            self._clear = True
            self.transport.resume_reading()

    # -- behind a load balancer: the PROXY protocol header -----------------------------------------

    def _proxy_header(self, wait: ProxyWait, data: bytes) -> None:
        """Bytes before the call starts: the balancer's PROXY header (v1 or v2), then the caller's."""
        wait.buf += data
        result = proxy.parse(wait.buf)
        if type(result) is proxy.Incomplete:
            return
        wait.timer.cancel()
        del self.hub.proxy_waits[self]
        if type(result) is proxy.Invalid:
            self.hub.refuse(self.peer, "proxy_header")  # counted and logged once per address
            wait.transport.close()  # not a balancer speaking the protocol: no caller to greet
            return
        header = cast(proxy.Header, result)
        if header.address is not None:  # else LOCAL / UNKNOWN: the balancer's own check
            self._address, self._port = sys.intern(header.address), header.port or 0
        self._begin(wait.transport)
        rest = wait.buf[header.length :]
        if rest and self._coro is not None:
            self.data_received(rest)

    def _proxy_timeout(self) -> None:
        wait = self.hub.proxy_waits.pop(self, None)
        if wait is not None:
            self.hub.refuse(self.peer, "proxy_header")
            wait.transport.close()

    # -- called by the server -------------------------------------------------------------------

    def shutdown(self) -> None:
        """The server is stopping: say goodbye and close as soon as the coroutine can."""
        self._now = time.time()
        self._deliver(SHUTDOWN)

    def abort(self) -> None:
        self._clear = False
        if self.transport is not None:
            self.transport.abort()

    # -- the coroutine and its driver -------------------------------------------------------------

    @types.coroutine
    def _run(self) -> Generator[Any, Any, None]:
        # Few locals: the frame keeps every one for the whole call, and idle callers are many
        # (a rendered, secret or bounded step's record, and the trace, are methods of their own).
        engine = self.engine
        self._emit(engine.start(self._now))
        trace = self.hub.trace
        encoded = self.hub.encoded
        encoding = self.hub.settings.encoding
        rec = self._rec
        item: Any  # a line (str), or a signal or desk event from _deliver
        while not engine.ended:
            # (a deadline of None: nothing times out, talking to an agent, unless a first line is due)
            if not 0.0 < self._timer_due <= (engine.deadline or 0.0) and (
                engine.deadline is not None or self._first_deadline
            ):
                self._arm_timer()  # else: an entry fires at or before the deadline; it re-arms then
            pending = self._pending
            if pending:
                item = pending.popleft()
                if not pending:
                    self._pending = None  # a waiting caller keeps no empty deque
            else:
                item = yield _WAIT
            kind = type(item)
            if kind is str:  # a line (a Signal is a str subclass)
                if engine.desk is not None and not trace and self._chat(item):
                    continue  # a line of the conversation with an agent, relayed
                node = engine.node
                say = engine.press(item, self._now)  # a step with no handler's work: one Say
                if say is not None:
                    if rec is not None:  # the key and the screen, in one entry
                        kept = self._kept + len(item) + len(say.text)
                        if node.wait.secret or kept > MAX_CALL_BYTES or self._cut:  # type: ignore[union-attr]  # press: set
                            self._record_step(rec, node, item, say)  # type: ignore[arg-type]  # masked, bounded
                        else:  # the common step: a fixed screen (numbered), or a rendered one (masked)
                            self._kept = kept
                            rec.entries.extend(  # as rec.step does, without the call
                                (
                                    engine.session_id,
                                    self._now,
                                    node.name,  # type: ignore[union-attr]
                                    item,
                                    engine.node.name,  # type: ignore[union-attr]  # press: set
                                    self._masked(say.text) if say.fresh and engine.vars else say.text,
                                    say.fresh,  # the kind: RENDERED (True) or FIXED
                                )
                            )
                    if self._clear:
                        data = encode_text(say.text, encoding) if say.fresh else encoded.get(say.text)
                        if data is not None:
                            self.transport.write(data)  # type: ignore[union-attr]  # _clear: open, below the high-water mark
                            continue
                    self._emit([say], record=False)
                    continue
                if rec is not None:
                    self._note("caller", mask(item) if engine.masked_input else item)
                if trace:
                    self._trace_input(item)
                self._emit(engine.feed_line(item, self._now))
            elif kind is AgentLine:  # the relay's every line the other way
                self._agent_said(item)
                item = None  # a waiting caller's frame keeps no event alive
            elif item is TIMEOUT:
                self._emit(engine.timeout(self._now))
            elif kind in DESK_EVENTS:
                if self._call is not None:
                    self._call.heard(item, self._now)
                self._emit(engine.desk_event(item, self._now))
                item = None  # a waiting caller's frame keeps no event alive
            elif kind is TicketSaved or kind is TicketFailed:
                self._emit(engine.ticket_result(item, self._now))
            elif kind is LookupResult:
                self._emit(engine.lookup_result(item, self._now))
            elif item is OVERFLOW:
                self._note("system", LINE_TOO_LONG)
                self._write(self._encode(LINE_TOO_LONG))
            else:
                self._emit(engine.hangup(_HANGUP_REASONS[item], self._now))

    def _record_step(self, rec: Recorder, node: WaitNode, key: str, say: Say) -> None:
        """The transcript of a step Session.press took at `node`: the key (masked when the node's
        input is secret) and the screen it brought (a rendered one masked), within the call's bound.
        (_run records the common steps itself: any screen, when the key is not secret and the call
        within its bound.)"""
        if node.wait.secret:
            key = mask(key)
        fresh = say.fresh  # rendered for this caller: not numbered
        screen = self._masked(say.text) if fresh else say.text
        kept = self._kept + len(key) + len(screen)
        if kept > MAX_CALL_BYTES or self._cut:  # at the bound, or past it: _note keeps what still fits
            self._note("caller", key, at=node)
            self._note("system", screen, shared=not fresh)
            return
        self._kept = kept
        engine = self.engine
        rec.step(engine.session_id, self._now, node.name, key, engine.node.name, screen, fresh)  # type: ignore[union-attr]  # press: set

    def _chat(self, line: str) -> bool:
        """A line of the caller's conversation with a connected agent, straight to the agent (what
        feed_line's ToAgent does, without the event list): True if it was one."""
        engine = self.engine
        text = engine.chat(line)
        if text is None or self._call is None:
            return False
        if self._rec is not None:
            self._note("caller", mask(line) if engine.masked_input else line)
        self._call.say(text)
        return True

    def _agent_said(self, line: AgentLine) -> None:
        """An agent's line: kept as the agent said it (not as shown), then said to the caller through
        the node's `agent_says`."""
        call = self._call
        if self._rec is not None:
            self._note("agent", line.text, call.agent if call is not None else None)
        text = self.engine.agent_said(line.text, self._now)
        if text is not None:
            self._write(encode_text(text, self.hub.settings.encoding))

    def _trace_input(self, item: str) -> None:
        engine = self.engine
        node = engine.node
        shown = "***" if engine.masked_input else item
        self._log("debug", "input", node=node.name if node else None, input=shown)

    def _resume(self, value: Any) -> None:
        """Run the coroutine until it waits for its next input again (or ends)."""
        coro = self._coro
        if coro is None:
            return
        try:
            coro.send(value)
        except BaseException as exc:  # sorted out in _stopped
            self._stopped(exc)
            return
        self._waiting = True  # it only ever yields to wait for input

    def _stopped(self, exc: BaseException) -> None:
        """The coroutine ended: normally (StopIteration), or by a bug, which costs only this caller."""
        self._coro = None
        if isinstance(exc, StopIteration):
            self._close()
            return
        if not isinstance(exc, Exception):
            raise exc  # KeyboardInterrupt, SystemExit: not ours to swallow
        self._log("exception", "session_crashed", exc_info=exc)
        self._log_end("crashed")
        self._write(self._encode(self.engine.graph.error.template.source))
        self._close()

    def _deliver(self, item: str) -> None:
        """Hand `item` to the coroutine now if it waits for input, else queue it. (It only waits
        for input with nothing queued: it takes queued items first.)"""
        if self._coro is None:
            return
        if self._waiting:
            self._waiting = False
            self._resume(item)
            return
        pending = self._pending
        if pending is None:
            pending = self._pending = collections.deque()
        pending.append(item)

    # -- time --------------------------------------------------------------------------------------

    def _first_input_due(self) -> float:
        """When a caller who has sent nothing yet is cut off; 0.0 once anything came in (reads move
        `_line_due` on from the connection time, so no read needs to clear this itself)."""
        if self._first_deadline and self._line_due != self._started:
            self._first_deadline = 0.0
        return self._first_deadline

    def _arm_timer(self) -> None:
        deadline = self.engine.deadline
        first = self._first_input_due()
        if first and (deadline is None or first < deadline):
            deadline = first
        if deadline is None:
            return
        due = self._timer_due
        if due and due <= deadline:
            return  # an entry fires earlier than needed; timer_fired re-arms for the rest
        self._timer_due = deadline
        self.hub.timers.schedule(deadline, self)

    def timer_fired(self, due: float) -> None:
        """Called by the hub's timers at `due` (a deadline this session asked for)."""
        self._timer_due = 0.0
        if self._coro is None:
            return
        now = self._now = time.time()
        first = self._first_input_due()
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
            self._note("system", TOO_FAST)
            self._write(self._encode(TOO_FAST))

    def _refuse(self, transport: asyncio.Transport, reason: str) -> None:
        self.hub.refuse(self.peer, reason)
        transport.write(encode_text(BUSY, self.hub.settings.encoding))
        transport.close()

    # -- output ------------------------------------------------------------------------------------

    def _emit(self, events: list[Any], record: bool = True) -> None:
        chunks: list[bytes] = []
        hangup: Hangup | None = None
        for ev in events:
            kind = type(ev)
            if kind is Say:
                chunks.append(
                    encode_text(ev.text, self.hub.settings.encoding) if ev.fresh else self._encode(ev.text)
                )
                if record and self._rec is not None:  # a fixed prompt is stored once, rendered text in full
                    self._note("system", self._masked(ev.text) if ev.fresh else ev.text, shared=not ev.fresh)
            elif kind is Hangup:
                hangup = ev
            elif kind is Notice:
                self._log(ev.level, ev.event, **ev.fields)
            elif kind is ToAgent and self._call is not None:
                self._call.say(ev.text)
            elif kind is Transfer:
                if self._call is None:
                    self._call = CallerCall(self.hub.desk, self.session_id, self)
                phone = self.engine.vars.get("phone")  # kept in full for the abandoned list
                self._call.transfer(ev.queue, self._now, None if phone is None else value_text(phone))
            elif kind is SaveTicket:
                self._save_ticket(ev)
            elif kind is Score:
                self._scored(ev)
            elif kind is BookCallback and self._call is not None:
                self._call.book(ev.number, ev.expires, self._now)  # the desk logs it (never the number)
            elif kind is Lookup:
                self.hub.lookups.start(self, ev, self._looked_up)
        if chunks:
            self._write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        if self._call is not None and self.engine.desk is None:
            self._call.done(self._now)  # by a key, the agent, the desk (busy, closed), or hanging up
        if hangup is not None:
            self._log_end(hangup.reason)
            self._close()

    # -- the agent desk ---------------------------------------------------------------------------

    def handoff_context(self) -> tuple[tuple[str, str], ...]:
        """For the desk (a CallerLink), when it offers this caller to an agent: the engine's context,
        and where the transcript so far is (`/history` shows its last lines)."""
        context = self.engine.handoff_context()
        if self._rec is not None:
            context += (("transcript", f"/history, or: hotline calls show {self.engine.session_id}"),)
        return context

    def desk_event(self, event: object) -> None:
        """From the desk (a CallerLink): handed to the coroutine in order with the caller's lines."""
        self._now = time.time()
        if self._waiting and type(event) is AgentLine:  # the relay's every line: said now, as _run
            self._agent_said(event)  # would, while the coroutine waits on (nothing else is queued)
            return
        self._deliver(event)  # type: ignore[arg-type]

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
        # below the high-water mark nothing is queued to speak of; only a paused caller can pile up
        if self._paused and transport.get_write_buffer_size() > self.hub.settings.max_output:
            self.hub.refuse(self.peer, "slow_reader")
            self._log_end("slow_reader")
            self._clear = False
            transport.abort()

    def _close(self) -> None:
        self._clear = False
        if self.transport is not None:
            self.transport.close()

    def _log_end(self, reason: str) -> None:
        if self._ended_logged:
            return
        self._ended_logged = True
        engine = self.engine
        if self._rec is not None:
            self._rec.call_ended(engine.session_id, time.time(), self._cut)
        self.hub.durations.observe(time.time() - self._started)
        replaced = self._discipline.replaced if self._discipline is not None else 0
        self._log(
            "info",
            "session_ended",
            reason=reason,
            duration=round(time.time() - self._started, 3),
            nodes=engine.visits,
            path=engine.path,  # its first PATH_LIMIT nodes
            **self._transfer_fields(),
            **({"undecodable_lines": replaced} if replaced else {}),
        )

    # -- records: the transcript and tickets ---------------------------------------------------------

    def _note(
        self,
        direction: str,
        text: str,
        agent: str | None = None,
        shared: bool = False,
        at: WaitNode | None = None,
    ) -> None:
        """One transcript line (if this call keeps one), within the call's bound; `at`: the node it
        belongs to, when the call has already moved on (default: where the call is)."""
        rec = self._rec
        if rec is None:
            return
        kept = self._kept + len(text)
        engine = self.engine
        if kept > MAX_CALL_BYTES or self._cut:  # once cut, the rest of the call is not kept
            if not self._cut:
                rec.line(engine.session_id, self._now, "system", None, None, TRUNCATED)
            self._cut += 1
            rec.counters.dropped += 1
            return
        self._kept = kept
        node = at or engine.node
        name = node.name if node is not None else None
        rec.line(engine.session_id, self._now, direction, name, agent, text, shared)

    def _masked(self, text: str) -> str:
        """A line the caller hears, with the values of sensitive inputs masked (未找到号码 *******8000)."""
        engine = self.engine
        secret = engine.graph.sensitive_vars
        if secret and engine.vars:
            for name in secret:
                value = engine.vars.get(name)
                if isinstance(value, str) and len(value) >= 4 and value in text:
                    text = text.replace(value, mask(value))
        return text

    def _save_ticket(self, ev: SaveTicket) -> None:
        rec = self.hub.records
        if rec is None:
            self._deliver(TicketFailed("no records"))  # type: ignore[arg-type]
            return
        ticket = NewTicket(
            self.session_id, self._address or "", ev.queue, ev.message, ev.vars, ev.callback, time.time()
        )
        task = asyncio.get_running_loop().create_task(self._store_ticket(rec, ticket))
        self.hub.tasks.add(task)
        task.add_done_callback(self.hub.tasks.discard)

    def _looked_up(self, answer: LookupResult) -> None:
        """A look-up's answer (app/net/sources.py), in order with the caller's lines."""
        self._now = time.time()
        self._deliver(answer)  # type: ignore[arg-type]

    async def _store_ticket(self, rec: Recorder, ticket: NewTicket) -> None:
        """Store the ticket; tell the session only once it is committed (or that it failed)."""
        answer: TicketSaved | TicketFailed
        try:
            answer = TicketSaved(await rec.save_ticket(ticket))
        except RecordError as exc:
            answer = TicketFailed(str(exc))
        else:
            self._log("info", "ticket_created", ticket=answer.ticket_id, queue=ticket.queue)
        self._now = time.time()
        self._deliver(answer)  # type: ignore[arg-type]

    def _scored(self, ev: Score) -> None:
        """A survey's answer: on the session's last desk call (on disk with the next batch) and in
        the agent's 满意度 on the board."""
        call = self._call
        if self.hub.records is not None:
            self.hub.records.desk_score(self.session_id, ev.value)
        if call is not None and call.agent:
            self.hub.desk.scored(call.agent, ev.value, self._now)
        self._log("info", "survey_answered", score=ev.value, agent=call.agent if call is not None else None)

    def _transfer_fields(self) -> dict[str, Any]:
        """waited / talked / agent for a call that went to an agent queue."""
        return self._call.times(time.time()) if self._call is not None else {}

    def _log(self, level: str, event: str, **fields: Any) -> None:
        getattr(log, level)(event, session_id=self.session_id, peer=self.peer, **fields)
