"""One caller's walk through the menu, as a sans-IO state machine.

How this works: the I/O layer calls `start(now)` once, then `feed(line, now)` for every line the
caller sends and `timeout(now)` when `deadline` has passed, and `hangup(reason, now)` when the caller
or the server ends the call. Each call returns a list of events (Say, Transfer, Notice, Hangup) for
the I/O layer to carry out. The engine reads no clock, does no I/O and never logs; `now` is seconds
since the epoch (used for deadlines and the `{now.date}` / `{now.time}` built-ins).

Arriving at a node runs its handler's `enter`; nodes that do not wait (message, lookup, transfer)
return the next node at once, so one input may pass through several nodes. More than LOOP_LIMIT
nodes without waiting ends the call: a `message` cycle must not spin forever.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Final

from app import zone
from app.menu.events import (
    AgentConnected,
    AgentLine,
    BookCallback,
    CallEnded,
    Event,
    Hangup,
    Lookup,
    LookupResult,
    Notice,
    QueueBusy,
    QueueClosed,
    QueuePosition,
    SaveTicket,
    Say,
    TicketSaved,
    ToAgent,
)
from app.menu.graph import Graph
from app.menu.nodes import (
    LOOKS_UP,
    SAYS,
    WAITS,
    WALK_LIMIT,
    Arrival,
    Callback,
    InputNode,
    MenuNode,
    Node,
    SourceLookupNode,
    Text,
    TicketNode,
    TransferNode,
    WaitNode,
)
from app.menu.sources import FOUND, MISSING, WAIT_PROMPT_AFTER
from app.menu.templates import Ref, value_text

LOOP_LIMIT = 100
_NO_EVENTS: list[Event] = []  # never appended to: every API call starts a new list first
_NO_VARS: dict[str, Any] = {}  # never written to: `save` gives each session its own dict
_UNSET: Any = object()  # a variable not saved (a saved value may be None)
_NO_QUESTIONS: list[str] = []  # never appended to: `ask` gives each session its own list
_NO_BOOKINGS: dict[str, str] = {}  # never written to: `_book` gives a session its own dict
ASKED_KEPT = 10  # robot questions remembered per call (the agent sees them on hand-off)
PATH_LIMIT = 20  # the first nodes of a call, remembered for the session_ended log line
_alone = functools.lru_cache(maxsize=4096)(lambda name: (name,))  # a path of one node, shared
TRAILS_KEPT = 10_000  # trails remembered for reuse; past this, new ones are made per arrival


class Stats:
    """Counters shared by many sessions (for metrics). The engine only adds to them; pass one in."""

    __slots__ = ("invalid", "node_visits", "robot_queries")

    def __init__(self) -> None:
        self.invalid = 0
        self.node_visits: defaultdict[str, int] = defaultdict(int)
        self.robot_queries: dict[str, int] = {}

    def robot_query(self, intent: str | None) -> None:
        key = intent or "none"
        self.robot_queries[key] = self.robot_queries.get(key, 0) + 1


class Trail:
    """The menus a caller came through, for `back`: one shared, immutable state per distinct trail.

    Arriving at a menu leads to the same trail when it is the current menu, to an earlier one when
    the caller returns to a menu on the trail (what comes after it is dropped), else one menu deeper.
    A trail holds only names and remembers where each arrival led, so the sessions walking a menu
    share a few objects, a session holds one reference instead of a list, and an arrival is one
    dictionary lookup. ROOT is the empty trail.
    """

    __slots__ = ("after", "menu", "parent")
    kept = 0  # trails remembered in some `after` (all menus, all reloads): bounded by TRAILS_KEPT

    def __init__(self, menu: str, parent: Trail | None) -> None:
        self.menu = menu
        self.parent = parent
        self.after: dict[str, Trail] = {}

    def arrive(self, menu: str) -> Trail:
        """The trail after arriving at `menu`."""
        nxt = self.after.get(menu)
        if nxt is None:
            nxt = self
            while nxt.parent is not None and nxt.menu != menu:
                nxt = nxt.parent
            if nxt.parent is None:  # not on the trail: one menu deeper
                nxt = Trail(menu, self)
            if Trail.kept < TRAILS_KEPT:
                Trail.kept += 1
                self.after[menu] = nxt
        return nxt

    def names(self) -> list[str]:
        """The menus on the trail, first to last."""
        out: list[str] = []
        trail: Trail | None = self
        while trail is not None and trail.parent is not None:
            out.append(trail.menu)
            trail = trail.parent
        return out[::-1]


ROOT = Trail("", None)


def fold(line: str) -> tuple[str, str]:
    """(the line normalised, the same case-folded): what options and keys are matched against."""
    text = line.strip()
    if text.isascii():
        return text, text.lower()
    text = normalize(text)
    return text, text.casefold()


def _flat(name: str, value: Any, depth: int = 0) -> list[tuple[str, Any]]:
    """A saved value as (dotted name, plain value) items: a record's fields one by one, nested ones
    too (account.plan.fee), so nobody is shown a mapping's repr."""
    if isinstance(value, dict) and depth < 4:
        return [item for k, v in value.items() for item in _flat(f"{name}.{k}", v, depth + 1)]
    if isinstance(value, list) and depth < 4:
        return [(name, "、".join(value_text(v) for v in value))]
    return [(name, value)]


CALLBACK_NUMBER: Final = re.compile(r"1\d{10}")  # a mobile number to call back (AGENT_DESK.md)


def mask(value: str) -> str:
    """A sensitive value for an agent's eyes: its last 4 characters at most (none of a short one)."""
    keep = 4 if len(value) >= 8 else 0
    return "*" * (len(value) - keep) + value[len(value) - keep :]


def normalize(line: str) -> str:
    """Strip white space and fold full-width forms (NFKC): `１` typed by a Chinese IME is `1`."""
    text = line.strip()
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text).strip()
    return text


class InQueue:
    """A session's hand-off to an agent: waiting in the queue, then connected."""

    __slots__ = ("agent", "asking", "away", "callback_offered", "connected", "keys_told", "node")

    def __init__(self, node: TransferNode) -> None:
        self.node = node
        self.connected = False
        self.callback_offered = False  # the caller heard the callback offer (its key acts now)
        self.asking = False  # the caller is typing the number to be called back on
        self.keys_told = False  # the node's keys_prompt is said once, with the first position
        self.away = False  # the caller was told every agent is on break
        self.agent: dict[str, str] = {}  # {"id": ..., "name": ...} once connected, for the templates


class Session:
    """The state of one call: where it is, what it saved, its counters and its next deadline."""

    __slots__ = (
        "_now",
        "_out",
        "asked",
        "booked",
        "caller",
        "deadline",
        "desk",
        "end_reason",
        "ended",
        "failures",
        "graph",
        "last_queue",
        "line",
        "node",
        "path",
        "saving",
        "session_id",
        "stats",
        "timeouts",
        "trace",
        "trail",
        "vars",
        "visits",
    )

    def __init__(
        self,
        graph: Graph,
        *,
        session_id: str = "",
        caller: str = "",
        trace: bool = False,
        stats: Stats | None = None,
    ) -> None:
        self.graph = graph
        self.stats = stats if stats is not None else Stats()  # counters of its own when none are shared
        self.session_id = session_id
        self.caller = caller
        self.trace = trace
        self.vars: dict[str, Any] = _NO_VARS  # a dict of its own from the first save (idle callers have none)
        self.asked: list[str] = _NO_QUESTIONS  # the robot questions of this call, the last ASKED_KEPT
        self.node: WaitNode | None = None
        self.trail = ROOT  # the menus before this one, for `back`
        self.failures = 0
        self.timeouts = 0
        self.ended = False
        self.end_reason = ""
        # the first PATH_LIMIT nodes: a shared 1-tuple until the call moves on (callers held at the
        # first prompt are the many), then a list of its own
        self.path: list[str] | tuple[str, ...] = ()
        self.visits = 0
        self.deadline: float | None = None  # when `timeout()` should be called next; None when ended
        self.desk: InQueue | None = None  # in a transfer node: waiting for an agent, or connected
        self.last_queue: str | None = None  # the queue of the last transfer (a ticket records it)
        self.booked: dict[str, str] = _NO_BOOKINGS  # queue -> the number of this call's callback there
        # a ticket being stored, or a look-up under way (then no node waits): lines wait for the answer
        self.saving: TicketNode | SourceLookupNode | None = None
        self.line = ""  # the line being handled, as typed (a ticket's message)
        self._now = 0.0
        self._out: list[Event] = _NO_EVENTS  # replaced by a fresh list at each call

    # ---- the API the I/O layer uses ---------------------------------------------------------

    def start(self, now: float) -> list[Event]:
        """Enter the start node."""
        out = self._out = []
        self._now = now
        self._go(self.graph.start)
        return self._done(out)

    def press(self, line: str, now: float) -> Say | None:
        """`feed` for a line that needs no handler's own work, with one event and no list: an option
        or a global key (`*` back, `#` top, `9` repeat, one to a node), typed as is, in full width or
        in another case; a line an input's pattern takes; a menu's pattern with its captures; a line
        a menu or an input refuses. Where it leads is walked like `_go` through messages and table
        look-ups to the node that waits, and what they say is one Say (lines joined; rendered from
        the templates' parts when not fixed). Returns it, or None having changed nothing: then call
        `feed_line` (a robot's question, a transfer, a ticket, a hang-up, the last failure, a
        template with a variable not set, anything traced)."""
        node = self.node
        if node is None:
            return None
        wait = node.wait
        step = wait.steps.get(line)
        if self.trace or self.desk is not None or self.saving is not None:
            return None
        if step is None:
            if not line.isascii():  # fold() would normalise it: full-width keys are in `steps`
                return None
            text = line.strip()
            folded = text.lower()  # fold() of an ASCII line
            step = wait.steps.get(folded)
            if step is None:
                if not text or folded in wait.keys or not text.isprintable():
                    return None
                self._now = now
                return self._handled(node, text, folded, now)
        if type(step) is Arrival:  # the common keypress: a move whose walk is fixed
            target = step.node
            if step.one:
                self._arrive(target)
            else:
                for passed in step.nodes:
                    self._arrive(passed)
            self.node = target
            self.deadline = now + target.wait.timeout
            return step.say
        self._now = now
        action, name = step  # type: ignore[misc]
        if action == "go":
            return self._move(name, None, None, now)
        if action == "refuse":
            return self._refuse(node, now)
        if action == "repeat":
            say = wait.prompt.say
            if say is None:
                prompt = self._fill(wait.prompt, None)
                if prompt is None:
                    return None
                say = Say(prompt, True)
            self.failures = self.timeouts = 0  # accept()
            self.deadline = now + wait.timeout
            return say
        trail, name = self._returning(action, node)  # back, top
        return self._move(name, None, trail, now)

    def _handled(self, node: WaitNode, text: str, folded: str, now: float) -> Say | None:
        """press() for a line no step takes: what an input's or a menu's handler would do."""
        if type(node) is InputNode:
            pattern = node.pattern
            if pattern is None or pattern.fullmatch(text) is not None:
                return self._move(node.next, {node.save_as: text}, None, now)
            return self._refuse(node, now)
        if type(node) is MenuNode:
            if folded in node.options:  # an option not typed as is
                return None
            for rule in node.rules:
                m = rule.regex.search(text)
                if m is not None:
                    return self._move(rule.go, {var: m.group(g) or "" for var, g in rule.save}, None, now)
            return self._refuse(node, now)
        return None

    def _refuse(self, node: WaitNode, now: float) -> Say | None:
        """fail() below the limit: the invalid line and the short prompt."""
        wait = node.wait
        if self.failures + 1 >= wait.max_failures:
            return None
        retry = wait.retry  # the invalid line and the short prompt, one Text
        if retry is None:
            return None
        say = retry.say
        if say is None:
            said = self._fill(retry, None)
            if said is None:
                return None
            say = Say(said, True)
        self.failures += 1
        self.stats.invalid += 1
        self.deadline = now + wait.timeout
        return say

    def _move(self, name: str, saves: dict[str, Any] | None, trail: Trail | None, now: float) -> Say | None:
        """Go to `name` having saved `saves` (and with `trail` for back and top), as `_go` would, when
        the walk needs no handler: a fixed one compiled at load (Graph.arrivals), else walked here
        without changing anything until it is known to need none."""
        graph = self.graph
        arrival = graph.arrivals.get(name)
        nodes: Sequence[Node]
        if arrival is not None:
            nodes, target, say = arrival.nodes, arrival.node, arrival.say
        elif (route := graph.routes.get(name)) is not None:  # no look-up on the way: `saves` hold
            said = self._fill(route.text, saves)
            if said is None:
                return None
            nodes, target, say = route.nodes, route.node, Say(said, True)
        else:
            walked = self._walk(name, saves)
            if walked is None:
                return None
            nodes, target, texts, saves = walked
            say = Say(texts[0] if len(texts) == 1 else "\n".join(texts), True)
        if saves:  # save() for each
            if self.vars is _NO_VARS:
                self.vars = {}
            self.vars.update(saves)
        if trail is not None:
            self.trail = trail
        for node in nodes:
            self._arrive(node)
        self.node = target
        self.deadline = now + target.wait.timeout
        return say

    def _walk(
        self, name: str, saves: dict[str, Any] | None
    ) -> tuple[list[Node], WaitNode, list[str], dict[str, Any] | None] | None:
        """The nodes `_go(name)` would arrive at, the one that waits, what they say and what they
        save (after `saves`), or None when a node needs its handler or a template a variable not
        set: nothing is changed here."""
        table = self.graph.table
        how = self.graph.walk
        nodes: list[Node] = []
        texts: list[str] = []
        said: str | None
        node: Any  # what `how` says it is (no cast(): a call per node)
        for _ in range(WALK_LIMIT):
            node = table[name]
            kind = how[name]
            nodes.append(node)
            if kind == WAITS:
                said = self._fill(node.wait.prompt, saves)
                if said is None:
                    return None
                texts.append(said)
                return nodes, node, texts, saves
            if kind == SAYS:
                said = self._fill(node.text, saves)
                if said is None:
                    return None
                texts.append(said)
                name = node.next
            elif kind == LOOKS_UP:
                said = self._fill(node.key, saves)
                if said is None:
                    return None
                record = self.graph.tables.get(node.table, _NO_VARS).get(said.strip())
                if record is None:
                    name = node.missing
                else:
                    saves = {**saves, node.save_as: record} if saves else {node.save_as: record}
                    name = node.found
                # the rest of the walk, when compiled at load: fixed, or one template
                then = self.graph.arrivals.get(name)
                if then is not None:
                    nodes += then.nodes
                    texts.append(then.say.text)
                    return nodes, then.node, texts, saves
                rest = self.graph.routes.get(name)
                if rest is not None:
                    said = self._fill(rest.text, saves)
                    if said is None:
                        return None
                    nodes += rest.nodes
                    texts.append(said)
                    return nodes, rest.node, texts, saves
            else:
                return None
        return None

    def _fill(self, text: Text, saves: dict[str, Any] | None) -> str | None:
        """`text` rendered with `saves` before the session's variables, or None where render() would
        warn (a variable not set, a field missing)."""
        say = text.say
        if say is not None:
            return say.text
        out: list[Any] = [*text.blanks]  # the literal parts in place; each variable filled in below
        found = self.vars
        for i, part in text.refs:
            name = part.name
            if saves is not None and name in saves:
                value = saves[name]
            else:
                value = found.get(name, _UNSET)
                if value is _UNSET:  # a built-in, or not set
                    field = part.field
                    if name == "caller" and field == "address":
                        out[i] = self.caller
                    elif name == "session" and field == "id":
                        out[i] = self.session_id
                    elif name == "now" and field in ("date", "time"):
                        out[i] = self._lookup(part)
                    else:
                        return None
                    continue
            field = part.field
            if field is None:
                out[i] = value if type(value) is str else value_text(value)
            elif type(value) is dict and field in value:
                value = value[field]
                out[i] = value if type(value) is str else value_text(value)
            else:
                return None
        return "".join(out)

    def feed(self, line: str, now: float) -> list[Event]:
        """The caller typed `line` (without its line ending)."""
        say = self.press(line, now)
        if say is not None:
            return [say]
        return self.feed_line(line, now)

    def feed_line(self, line: str, now: float) -> list[Event]:
        """`feed` for a line `press` has already turned down."""
        node = self.node
        out: list[Event] = []
        self._out = out
        if node is None:  # ended, or not started
            return self._done(out)
        self._now = now
        if self.desk is not None:
            self._desk_line(self.desk, line)
            return self._done(out)
        if self.saving is not None:  # the caller typed on while their message is stored: wait
            return self._done(out)
        wait = node.wait
        text, folded = fold(line)
        if not text:  # a bare Enter: show the choices again, count nothing
            self.say(wait.short_prompt)
            self.deadline = now + wait.timeout
            return self._done(out)
        action = wait.keys.get(folded)
        if action is not None:
            self._key(action, node)
            return self._done(out)
        self.line = line
        target = node.handle(self, text, folded)
        if target is not None:
            self._go(target)
        return self._done(out)

    def timeout(self, now: float) -> list[Event]:
        """Call when `deadline` has passed; silence re-prompts, then hangs up."""
        out = self._out = []
        node = self.node
        if self.ended or node is None or self.deadline is None or now < self.deadline:
            looking = self.saving
            if node is None and type(looking) is SourceLookupNode:
                self._slow_answer(looking, now)
            return self._done(out)
        self._now = now
        wait = node.wait
        self.timeouts += 1
        if self.timeouts >= wait.max_timeouts:
            self.say(wait.goodbye)
            self.end("timeout")
        else:
            self.say(wait.short_prompt)
            self.deadline = now + wait.timeout
        return self._done(out)

    def hangup(self, reason: str, now: float) -> list[Event]:
        """End the call from outside (caller interrupt, end of input, server shutdown): say goodbye."""
        out = self._out = []
        if not self.ended:
            self._now = now
            self.say(self.node.wait.goodbye if self.node is not None else self.goodbye)
            self.end(reason)
        return self._done(out)

    def desk_event(self, event: object, now: float) -> list[Event]:
        """What the agent desk says about this caller's transfer (events.DeskEvent)."""
        out = self._out = []
        q = self.desk
        if q is None or self.ended:  # late news of a transfer the caller has already left
            return self._done(out)
        self._now = now
        node = q.node
        kind = type(event)
        if kind is AgentLine:  # the common one: a line of the conversation (the server calls agent_said)
            said = self.agent_said(event.text, now)  # type: ignore[attr-defined]
            if said is not None:  # (it is: the call is in the desk)
                self.say_text(said)
        elif kind is QueuePosition:
            self._queue_position(q, event)  # type: ignore[arg-type]
        elif kind is AgentConnected:
            c: AgentConnected = event  # type: ignore[assignment]
            q.connected, q.agent = True, {"id": c.agent_id, "name": c.agent_name}
            self.say_text(self._render(node.connected, {"agent": q.agent}))
        elif kind is QueueClosed:
            self._leave_queue(node.closed, node.on_closed or node.next)
        elif kind is QueueBusy:
            self._leave_queue(node.busy, node.on_busy or node.next)
        elif kind is CallEnded:
            if event.by == "server":  # type: ignore[attr-defined]  # the server stops: `ended`, then goodbye
                self.desk = None
                self.say(node.ended)
                self.say(node.wait.goodbye)
                self.end("shutdown")
            elif event.by == "agent" and node.survey is not None:  # type: ignore[attr-defined]
                self._leave_queue(node.ended, node.survey)  # how was it? before `next`
            else:
                self._leave_queue(node.ended, node.next)
        return self._done(out)

    def _queue_position(self, q: InQueue, p: QueuePosition) -> None:
        """Where the caller stands: the position and estimate (none while an offer rings), a line
        when every agent logged in is on break, and, with the first, the keys they may press."""
        node = q.node
        if not p.ringing:
            queue = {
                "position": str(p.position),
                "ahead": str(p.position - 1),
                "waiting": str(p.waiting),
                "wait_minutes": str(p.wait_minutes),
            }
            self.say_text(self._render(node.position, {"queue": queue}))
            if p.away and not q.away:
                self.say(node.away)
            q.away = p.away
            cb = node.callback
            if cb is not None and not q.callback_offered and p.wait_minutes * 60 > cb.when_wait_over:
                q.callback_offered = True
                self.say(cb.offer)
        if not q.keys_told:
            q.keys_told = True
            if node.keys_prompt is not None:
                self.say(node.keys_prompt)

    def join_queue(self, node: TransferNode) -> None:
        """Wait at a transfer node for the desk (no silence timeouts)."""
        self.node = node
        self.deadline = None
        self.desk = InQueue(node)
        self.last_queue = node.queue

    def save_ticket(self, node: TicketNode) -> None:
        """The caller left their message at a ticket node: ask the I/O layer to store it, and wait
        (no silence timeouts) for ticket_result."""
        self.saving = node
        self.deadline = None
        callback = self.vars.get(node.callback) if node.callback else None
        self._out.append(
            SaveTicket(
                self.line.strip(),
                self.last_queue,
                value_text(callback) if callback is not None else None,
                dict(self.vars),
            )
        )

    def ticket_result(self, event: object, now: float) -> list[Event]:
        """The I/O layer's answer to SaveTicket: TicketSaved (say `saved` with the id) or
        TicketFailed (say `failed`); then the node's `next`, or goodbye."""
        out = self._out = []
        node = self.saving
        if not isinstance(node, TicketNode) or self.ended:
            return self._done(out)
        self._now = now
        self.saving = None
        if type(event) is TicketSaved:
            self.say_text(self._render(node.saved, {"ticket": {"id": event.ticket_id}}))
        else:
            self.say(node.failed)
        self._go_on(node.next)
        return self._done(out)

    def look_up(self, node: SourceLookupNode) -> None:
        """Arrived at a lookup with a source: ask the I/O layer (a Lookup, its url and body rendered
        from the variables) and wait, taking no lines, for lookup_result. The deadline meanwhile is
        when `wait_prompt` is due (timeout() says it), so the I/O layer needs no timer of its own."""
        self.saving = node
        self.deadline = self._now + WAIT_PROMPT_AFTER if node.wait_prompt is not None else None
        url, body, key = node.source.request(self._lookup)
        self._out.append(Lookup(node.source, url, body, key, node.name))

    def _slow_answer(self, node: SourceLookupNode, now: float) -> None:
        """No answer yet at the deadline look_up set: say the wait prompt, once."""
        deadline = self.deadline
        if deadline is not None and now >= deadline and node.wait_prompt is not None and not self.ended:
            self._now = now
            self.deadline = None
            self.say(node.wait_prompt)

    def lookup_result(self, event: LookupResult, now: float) -> list[Event]:
        """The I/O layer's answer to Lookup: found (the object saved as the node's `save_as`),
        missing or error; then the node that outcome leads to."""
        out = self._out = []
        node = self.saving
        if not isinstance(node, SourceLookupNode) or self.ended:
            return self._done(out)  # late: the caller already left (or hung up)
        self._now = now
        self.saving = None
        self.deadline = None
        if self.trace:
            fields = {"node": node.name, "source": node.source.name, "outcome": event.outcome}
            self._out.append(Notice("debug", "lookup_answered", {**fields, "reason": event.reason}))
        if event.outcome == FOUND:
            self.save(node.save_as, event.record if event.record is not None else {})
            self._go(node.found)
        else:
            self._go(node.missing if event.outcome == MISSING else node.error)
        return self._done(out)

    def _leave_queue(self, text: Text, target: str | None) -> None:
        self.desk = None
        self.say(text)
        self._go_on(target)

    def _go_on(self, target: str | None) -> None:
        """To a transfer's or ticket's `next` (or on_busy / on_closed); without one, goodbye."""
        if target is None:
            self.say(self.goodbye)
            self.end("completed")
        else:
            self._go(target)

    def chat(self, line: str) -> str | None:
        """The relay's every line, without an event list: the text for the agent when `line` is
        conversation with a connected agent (what feed_line would send as ToAgent); None for anything
        else (then feed it)."""
        q = self.desk
        if q is None or not q.connected or self.ended:
            return None
        text = line.strip()
        return text if len(text) > q.node.chat_beyond else None

    def agent_said(self, text: str, now: float) -> str | None:
        """What the caller hears of an agent's line (AgentLine: `agent_says` rendered), without an
        event list; None when the call has left the desk (late news)."""
        q = self.desk
        if q is None or self.ended:
            return None
        self._now = now
        return self._render(q.node.agent_says, {"agent": q.agent, "text": text})

    def _desk_line(self, q: InQueue, line: str) -> None:
        """A line typed while waiting (the node's keys act, else `hold`) or connected (chat, except
        the hang-up keys)."""
        node = q.node
        chat = self.chat(line)
        if chat is not None:
            self._out.append(ToAgent(chat))  # the common line of a conversation
            return
        text, folded = fold(line)
        action = node.wait.keys.get(folded)
        if q.connected:
            if action is not None and folded in node.hangup_keys:
                self.desk = None
                self._key(action, node)
            elif text:
                self._out.append(ToAgent(line.strip()))
            return
        cb = node.callback
        if q.asking and cb is not None and not (action is not None and folded in node.hangup_keys):
            self._callback_number(q, cb, text)
        elif action is not None and action != "repeat":  # repeat: nothing to say but `hold`; stay
            self.desk = None
            self._key(action, node)
        elif cb is not None and q.callback_offered and folded == cb.key:
            number = self._quietly(cb.number) if cb.number is not None else ""
            if CALLBACK_NUMBER.fullmatch(number):
                self._book(q, cb, number)
            else:
                q.asking = True
                self.say(cb.ask)
        elif text:
            self.say(node.hold)

    def _quietly(self, text: Text) -> str:
        """`text` rendered with no warning for a variable not set: an empty callback number is
        expected on paths that never asked for one (then the caller is asked)."""
        mark = len(self._out)
        rendered = self.render(text)
        self._out[mark:] = [e for e in self._out[mark:] if type(e) is not Notice or e.level != "warning"]
        return rendered

    def _callback_number(self, q: InQueue, cb: Callback, text: str) -> None:
        """The number a caller types to be called back on (never logged: the I/O layer masks it)."""
        if CALLBACK_NUMBER.fullmatch(text):
            self._book(q, cb, text)
        else:
            self.say(cb.ask)

    def _book(self, q: InQueue, cb: Callback, number: str) -> None:
        """The caller keeps their place as a callback and leaves the line: booked, then on."""
        self._out.append(BookCallback(q.node.queue, number, cb.expires))
        self.desk = None
        if self.booked is _NO_BOOKINGS:
            self.booked = {}
        self.booked[q.node.queue] = number
        self.say_text(self._render(cb.booked, {"callback": {"masked": mask(number)}}))
        self._go_on(cb.next)

    def callback_waits(self, node: TransferNode) -> bool:
        """This call booked a callback in the node's queue already: it keeps that place (the caller
        hears `booked` again) instead of queueing twice."""
        number = self.booked.get(node.queue)
        if number is None or node.callback is None:
            return False
        self.say_text(self._render(node.callback.booked, {"callback": {"masked": mask(number)}}))
        if node.callback.next is None:
            self.say(self.goodbye)
            self.end("completed")
        return True

    @property
    def masked_input(self) -> bool:
        """The next line is secret: a sensitive input, or a callback number being typed."""
        node = self.node
        q = self.desk
        return (node is not None and node.sensitive) or (q is not None and q.asking)

    def _render(self, text: Text, extra: dict[str, Any]) -> str:
        """`text` with `extra`'s values first (the desk's queue, agent and line), then the session's.
        A plain loop: this runs for every line an agent types."""
        out: list[str] = []
        for part in text.template.parts:
            if type(part) is str:
                out.append(part)
                continue
            ref: Ref = part  # type: ignore[assignment]
            value = extra.get(ref.name)
            if value is None:
                out.append(self._lookup(ref))
            else:
                out.append(value if ref.field is None else value.get(ref.field, ""))
        return "".join(out)

    def _done(self, out: list[Event]) -> list[Event]:
        """Hand `out` to the caller without keeping it: idle sessions hold no event list."""
        self._out = _NO_EVENTS
        return out

    # ---- what handlers use ------------------------------------------------------------------

    @property
    def goodbye(self) -> Text:
        return self.graph.goodbye

    def save(self, name: str, value: Any) -> None:
        """Set a variable (from an input, a lookup or a pattern capture)."""
        if self.vars is _NO_VARS:
            self.vars = {}
        self.vars[name] = value

    def handoff_context(self) -> tuple[tuple[str, str], ...]:
        """What an agent who takes this call sees: the menu path, the saved variables (a record one
        field per item; inputs marked sensitive masked), the questions asked of the robot."""
        out: list[tuple[str, str]] = [("path", ">".join(self.path))]
        secret = self.graph.sensitive_vars
        for name, value in self.vars.items():
            for key, v in _flat(name, value):
                text = value_text(v)
                out.append((f"var:{key}", mask(text) if name in secret else text))
        out += [("asked", q) for q in self.asked]
        return tuple(out)

    def ask(self, question: str) -> None:
        """Remember a question the caller put to the robot (an agent who takes the call sees it)."""
        if self.asked is _NO_QUESTIONS:
            self.asked = []
        self.asked.append(question)
        if len(self.asked) > ASKED_KEPT:
            del self.asked[0]

    def say(self, text: Text) -> None:
        say = text.say
        self._out.append(say if say is not None else Say(self.render(text), True))

    def say_text(self, text: str, fresh: bool = True) -> None:
        self._out.append(Say(text, fresh))

    def emit(self, event: Event) -> None:
        self._out.append(event)

    def wait_at(self, node: WaitNode) -> None:
        self.node = node
        self.deadline = self._now + node.wait.timeout

    def accept(self) -> None:
        """The line was valid and the node stays: reset the counters and the silence timer."""
        self.failures = self.timeouts = 0
        if self.node is not None:
            self.deadline = self._now + self.node.wait.timeout

    def fail(self) -> str | None:
        """An invalid line: say so; at the limit, go to `on_max_failures` or hang up."""
        node = self.node
        assert node is not None
        wait = node.wait
        self.failures += 1
        self.stats.invalid += 1
        if self.trace:
            self._out.append(Notice("debug", "input_invalid", {"node": node.name, "failures": self.failures}))
        self.say(wait.invalid)
        if self.failures < wait.max_failures:
            self.say(wait.short_prompt)
            self.deadline = self._now + wait.timeout
            return None
        if wait.on_max_failures is not None:
            return wait.on_max_failures
        self.say(wait.goodbye)
        self.end("failures")
        return None

    def end(self, reason: str) -> None:
        if not self.ended:
            self.desk = None
            self.ended = True
            self.end_reason = reason
            self.node = None
            self.deadline = None
            self._out.append(Hangup(reason))

    def render(self, text: Text) -> str:
        return text.template.render(self._lookup)

    # ---- internals --------------------------------------------------------------------------

    def _go(self, name: str) -> None:
        nodes = self.graph.table
        target: str | None = name
        for _ in range(LOOP_LIMIT):
            node: Node = nodes[target]  # type: ignore[index]
            self.node = None  # until a node waits
            self._arrive(node)
            target = node.enter(self)
            if target is None or self.ended:
                return
        self._out.append(Notice("error", "loop_limit", {"node": target, "limit": LOOP_LIMIT}))
        self.say(self.graph.error)
        self.end("loop")

    def _arrive(self, node: Node) -> None:
        self.failures = self.timeouts = 0
        visits = self.visits = self.visits + 1
        name = node.name
        if visits <= PATH_LIMIT:
            path = self.path
            if type(path) is list:
                path.append(name)
            else:
                self.path = [*path, name] if path else _alone(name)
        self.stats.node_visits[name] += 1
        if node.is_menu:
            trail = self.trail  # arrive()'s own first lookup, inlined: arrivals are per keypress
            self.trail = trail.after.get(name) or trail.arrive(name)
        if self.trace:
            self._out.append(Notice("debug", "node_entered", {"node": name, "type": node.type}))

    def _returning(self, action: str, node: WaitNode) -> tuple[Trail, str]:
        """Where `back` or `top` from `node` leads: the trail to keep and the node to go to."""
        trail = self.trail
        if action == "top":
            return ROOT, self.graph.start
        if node.is_menu and trail.menu == node.name:  # back from a menu: the one before it
            if trail.parent is not None and trail.parent is not ROOT:
                trail = trail.parent
            return trail, trail.menu
        return trail, trail.menu if trail is not ROOT else self.graph.start  # from an input: the last menu

    def _key(self, action: str, node: WaitNode) -> None:
        if action in ("back", "top"):
            self.trail, name = self._returning(action, node)
            self._go(name)
        elif action == "repeat":
            self.say(node.wait.prompt)
            self.accept()
        elif action == "hangup":
            self.say(node.wait.goodbye)
            self.end("caller")
        else:
            self._go(action)

    def _lookup(self, ref: Ref) -> str:
        name, field = ref.name, ref.field
        value = self.vars.get(name, _UNSET)
        if value is not _UNSET:
            if field is None:
                return value_text(value)
            if isinstance(value, dict) and field in value:
                return value_text(value[field])
            self._out.append(Notice("warning", "template_field_missing", {"variable": ref.text}))
            return ""
        if name == "session" and field == "id":
            return self.session_id
        if name == "caller" and field == "address":
            return self.caller
        if name == "now" and field in ("date", "time"):
            fmt = "%Y-%m-%d" if field == "date" else "%H:%M:%S"
            return zone.local(self._now).strftime(fmt)
        self._out.append(Notice("warning", "template_variable_unset", {"variable": ref.text}))
        return ""
