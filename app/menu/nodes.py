"""Compiled nodes: one handler class per node type, registered by type name in HANDLERS.

Each handler is immutable and shared by every session on the same menu; per-call state lives in the
session passed in. `enter` runs when the session arrives at the node and returns the node to go to
next (for nodes that do not wait) or None (the node now waits, or the session ended). `handle` runs
for each line the caller types at a waiting node, after global keys were tried; it returns the node
to go to, or None when it already dealt with the line (a failure, or an answer that stays).

The session is a `Walk`: what handlers use of engine.Session, declared here (with what they read of
the graph and ask of the robot) so that this module imports neither the engine nor the graph, which
both import it: no import circle, type-only imports included.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from app.menu import schema
from app.menu.events import Event, Notice, Say, Score, Transfer
from app.menu.sources import Source
from app.menu.templates import Ref, Template

KEY_WORDS: Mapping[str, str] = {
    "back": "返回上一级",
    "top": "返回主菜单",
    "repeat": "重听",
    "hangup": "结束通话",
}


class Reply(Protocol):
    """What a robot answers: the text said to the caller, the intent and the confidence."""

    @property
    def text(self) -> str: ...
    @property
    def intent(self) -> str | None: ...
    @property
    def confidence(self) -> float: ...
    @property
    def candidates(self) -> tuple[str, ...]: ...  # the intents of a clarifying question, else ()


class Answerer(Protocol):
    """Anything that answers free text (the robot's Matcher); `robot` nodes ask it."""

    def answer(self, question: str) -> Reply: ...


class Menu(Protocol):
    """What handlers read of the whole menu (graph.Graph)."""

    @property
    def robot(self) -> Answerer: ...
    @property
    def tables(self) -> Mapping[str, Mapping[str, Any]]: ...


class Counters(Protocol):
    """What handlers count (engine.Stats)."""

    def robot_query(self, intent: str | None) -> None: ...


class Walk(Protocol):
    """What handlers use of one caller's walk through the menu: engine.Session is the one (mypy checks
    it where the engine hands itself to `enter` and `handle`)."""

    @property
    def graph(self) -> Menu: ...
    @property
    def stats(self) -> Counters: ...
    @property
    def trace(self) -> bool: ...
    @property
    def goodbye(self) -> Text: ...

    def say(self, text: Text) -> None: ...
    def say_text(self, text: str, fresh: bool = True) -> None: ...
    def emit(self, event: Event) -> None: ...
    def render(self, text: Text) -> str: ...
    def save(self, name: str, value: Any) -> None: ...
    def ask(self, question: str) -> None: ...
    def wait_at(self, node: WaitNode) -> None: ...
    def accept(self) -> None: ...
    def fail(self) -> str | None: ...
    def end(self, reason: str) -> None: ...
    def join_queue(self, node: TransferNode) -> None: ...
    def callback_waits(self, node: TransferNode) -> bool: ...
    def save_ticket(self, node: TicketNode) -> None: ...
    def look_up(self, node: SourceLookupNode) -> None: ...


@dataclass(frozen=True, slots=True)
class Text:
    """A compiled template, with its Say event built once when the text has no variables, and its
    parts laid out for rendering: `blanks`, the parts with None where a variable goes, and `refs`,
    each variable with its place (a step copies the one and fills in the other)."""

    template: Template
    say: Say | None
    blanks: tuple[str | None, ...] = field(init=False, repr=False, compare=False)
    refs: tuple[tuple[int, Ref], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = self.template.parts
        object.__setattr__(self, "blanks", tuple(p if type(p) is str else None for p in parts))
        object.__setattr__(self, "refs", tuple((i, p) for i, p in enumerate(parts) if type(p) is Ref))

    @classmethod
    def of(cls, template: Template) -> Text:
        static = "".join(p for p in template.parts if isinstance(p, str))
        return cls(template, Say(static) if template.is_static else None)


@dataclass(frozen=True, slots=True)
class Waiting:
    """How a waiting node behaves: prompts, limits and the global keys it honours."""

    prompt: Text
    short_prompt: Text
    invalid: Text
    goodbye: Text
    timeout: float
    max_timeouts: int
    max_failures: int
    on_max_failures: str | None
    keys: Mapping[str, str]
    # What Session.press may take without the handler, compiled when the menu loads (loader.steps):
    # each line as typed (and a key's full-width form, ２ for 2) -> (action, argument): ("go", node)
    # for an option or a global key to a node, ("back" | "top" | "repeat", "") for those global
    # keys, ("refuse", "") for a single key a menu refuses. Lines typed in another form (upper case,
    # padded) are looked up folded; what a step says is rendered from the templates' parts.
    # An Arrival is a move whose walk is fixed (compiled whole at load); ("go", node) one to render.
    steps: dict[str, Arrival | tuple[str, str]] = field(default_factory=dict, compare=False, repr=False)
    # The invalid line and the short prompt as one Text (its Say when both are fixed), compiled at load.
    retry: Text | None = field(default=None, compare=False, repr=False)
    secret: bool = field(default=False, compare=False, repr=False)  # node.sensitive, without a call


@dataclass(frozen=True, slots=True)
class Node:
    """Base of compiled nodes."""

    name: str
    type: ClassVar[str] = ""
    is_menu: ClassVar[bool] = False

    def enter(self, s: Walk) -> str | None:
        raise NotImplementedError

    @property
    def sensitive(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class WaitNode(Node):
    """A node that says its prompt and waits for a line."""

    wait: Waiting

    def enter(self, s: Walk) -> str | None:
        s.say(self.wait.prompt)
        s.wait_at(self)
        return None

    def handle(self, s: Walk, text: str, folded: str) -> str | None:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Rule:
    regex: re.Pattern[str]
    go: str
    save: tuple[tuple[str, int | str], ...]


@dataclass(frozen=True, slots=True)
class MenuNode(WaitNode):
    type: ClassVar[str] = "menu"
    is_menu: ClassVar[bool] = True
    options: Mapping[str, str]
    rules: tuple[Rule, ...]

    def handle(self, s: Walk, text: str, folded: str) -> str | None:
        target = self.options.get(folded)
        if target is not None:
            return target
        for rule in self.rules:
            m = rule.regex.search(text)
            if m is not None:
                for var, group in rule.save:
                    s.save(var, m.group(group) or "")
                return rule.go
        return s.fail()


@dataclass(frozen=True, slots=True)
class InputNode(WaitNode):
    type: ClassVar[str] = "input"
    save_as: str
    pattern: re.Pattern[str] | None
    next: str
    secret: bool

    @property
    def sensitive(self) -> bool:
        return self.secret

    def handle(self, s: Walk, text: str, folded: str) -> str | None:
        if self.pattern is None or self.pattern.fullmatch(text) is not None:
            s.save(self.save_as, text)
            return self.next
        return s.fail()


@dataclass(frozen=True, slots=True)
class RobotNode(WaitNode):
    """Free text answered by the robot; `options` are keys (not questions), `on_intent` hands a
    question matched to an intent to a node (转人工 -> the agent queue), `fallback` overrides the
    knowledge base's fallback for callers here (who can press keys a UDP client cannot)."""

    type: ClassVar[str] = "robot"
    options: Mapping[str, str]
    on_intent: Mapping[str, str]
    fallback: Text | None

    def handle(self, s: Walk, text: str, folded: str) -> str | None:
        target = self.options.get(folded)
        if target is not None:
            return target
        reply = s.graph.robot.answer(text)
        s.ask(text)
        s.stats.robot_query(reply.intent)
        if reply.intent is not None and reply.intent in self.on_intent:
            return self.on_intent[reply.intent]
        if self.fallback is not None and reply.intent is None and not reply.candidates:
            s.say(self.fallback)
        else:
            s.say_text(reply.text, fresh=False)  # one of the robot's answers
        if s.trace:
            s.emit(
                Notice("debug", "robot_answered", {"intent": reply.intent, "confidence": reply.confidence})
            )
        s.accept()
        return None


@dataclass(frozen=True, slots=True)
class MessageNode(Node):
    type: ClassVar[str] = "message"
    text: Text
    next: str | None

    def enter(self, s: Walk) -> str | None:
        s.say(self.text)
        if self.next is None:
            s.end("completed")
        return self.next


@dataclass(frozen=True, slots=True)
class LookupNode(Node):
    type: ClassVar[str] = "lookup"
    table: str
    key: Text
    save_as: str
    found: str
    missing: str

    def enter(self, s: Walk) -> str | None:
        key = s.render(self.key).strip()
        record = s.graph.tables.get(self.table, {}).get(key)
        if record is None:
            return self.missing
        s.save(self.save_as, record)
        return self.found


@dataclass(frozen=True, slots=True)
class SourceLookupNode(Node):
    """A lookup that asks an HTTP source: the session emits a Lookup and waits, without a prompt
    and without taking lines, for the I/O layer's LookupResult (Session.lookup_result); then
    `found` (the object saved), `missing` or `error`. `wait_prompt` is said once if the answer takes
    longer than a second (the session's deadline while it waits)."""

    type: ClassVar[str] = "lookup"
    source: Source
    save_as: str
    found: str
    missing: str
    error: str
    wait_prompt: Text | None

    def enter(self, s: Walk) -> str | None:
        s.look_up(self)
        return None


@dataclass(frozen=True, slots=True)
class Callback:
    """A transfer's queued callback (compiled `callback:`)."""

    when_wait_over: float  # seconds: offered when the estimate is longer
    offer: Text
    key: str  # folded
    number: Text | None  # where the number comes from (a saved variable), else it is asked
    ask: Text
    booked: Text
    next: str | None
    expires: float


@dataclass(frozen=True, slots=True)
class TransferNode(WaitNode):
    """The agent hand-off: join a queue, hear the position, talk to an agent (see Session.desk_event).

    It waits like other nodes but has no silence timeouts; `wait.keys` holds the node's own keys and
    the menu's hang-up keys, the only keys that act. Lines are handled by Session._desk_line."""

    type: ClassVar[str] = "transfer"
    queue: str
    say_prompt: Text
    position: Text
    keys_prompt: Text | None  # said with the first position (None: the node has no keys)
    away: Text  # while every agent logged in is on break
    hold: Text
    connected: Text
    agent_says: Text
    ended: Text
    closed: Text
    busy: Text
    on_closed: str | None
    on_busy: str | None
    next: str | None
    hangup_keys: frozenset[str]
    # While connected, a stripped line longer than this is chat, without folding it: folding (NFKC,
    # casefold) never turns a longer line into an ASCII key. Huge when a hang-up key is not ASCII.
    chat_beyond: int
    survey: str | None = None  # where a call the agent ended goes before `next`
    callback: Callback | None = None  # a queued callback instead of waiting

    def enter(self, s: Walk) -> str | None:
        if self.callback is not None and s.callback_waits(self):  # booked already: keeps that place
            return self.callback.next
        s.say(self.say_prompt)
        s.join_queue(self)
        s.emit(Transfer(self.queue, self.name))
        return None

    def handle(self, s: Walk, text: str, folded: str) -> str | None:  # pragma: no cover - see _desk_line
        return None


@dataclass(frozen=True, slots=True)
class HangupNode(Node):
    type: ClassVar[str] = "hangup"
    text: Text | None

    def enter(self, s: Walk) -> str | None:
        s.say(self.text or s.goodbye)
        s.end("completed")
        return None


WAITS, SAYS, LOOKS_UP, OTHER = 0, 1, 2, 3  # how a node is walked on arrival (Graph.walk)
WALK_LIMIT = 20  # nodes Session.press walks in one step; longer walks take the general path


def walks(node: Node) -> int:
    """WAITS: says its prompt and waits (no handler of its own on arrival); SAYS: a message that
    goes on; LOOKS_UP: a table look-up; OTHER: anything else (a transfer, a ticket, a hang-up, an
    HTTP look-up, a message that ends the call), which only the node's handler walks."""
    if isinstance(node, WaitNode):
        return WAITS if type(node).enter is WaitNode.enter else OTHER
    if type(node) is MessageNode:
        return SAYS if node.next is not None else OTHER
    if type(node) is LookupNode:
        return LOOKS_UP
    return OTHER


@dataclass(frozen=True, slots=True)
class Arrival:
    """A walk fixed at load time: the nodes arrived at in order, the last one waiting, and the Say
    of all they said (one text, lines joined)."""

    nodes: tuple[Node, ...]
    node: WaitNode
    say: Say
    one: bool = False  # the walk is the waiting node alone (no message before it)


@dataclass(frozen=True, slots=True)
class Route:
    """A walk whose nodes are fixed at load time but whose texts have variables: the nodes arrived
    at in order, the last one waiting, and all they say as one template (lines joined), rendered
    per caller."""

    nodes: tuple[Node, ...]
    node: WaitNode
    text: Text


def _plain_walk(table: Mapping[str, Node], name: str) -> tuple[list[Node], list[Text]] | None:
    """The nodes arriving at `name` passes (messages that go on, then a node that says its prompt
    and waits) and the texts they say; None when the walk needs a handler or a look-up."""
    nodes: list[Node] = []
    texts: list[Text] = []
    for _ in range(WALK_LIMIT):
        node = table[name]
        nodes.append(node)
        kind = walks(node)
        if kind == SAYS:
            assert isinstance(node, MessageNode) and node.next is not None
            texts.append(node.text)
            name = node.next
        elif kind == WAITS:
            assert isinstance(node, WaitNode)
            texts.append(node.wait.prompt)
            return nodes, texts
        else:
            return None
    return None


def compiled_walk(table: Mapping[str, Node], name: str) -> Arrival | Route | None:
    """Arriving at `name`, compiled once when its walk needs no handler and no look-up: an Arrival
    when all it says is fixed, else a Route (what it says as one template); None otherwise."""
    walk = _plain_walk(table, name)
    if walk is None:
        return None
    nodes, texts = walk
    node = nodes[-1]
    assert isinstance(node, WaitNode)
    text = joined(texts)
    if text.say is not None:
        return Arrival(tuple(nodes), node, text.say, len(nodes) == 1)
    return Route(tuple(nodes), node, text)


def fixed_arrival(table: Mapping[str, Node], name: str) -> Arrival | None:
    """Arriving at `name` when its walk is all fixed, compiled once; else None."""
    walk = compiled_walk(table, name)
    return walk if type(walk) is Arrival else None


def joined(texts: Sequence[Text]) -> Text:
    """`texts` said one after the other (lines joined) as one Text, adjacent literal parts merged:
    fixed (its Say built) when they all are, else rendered in one pass."""
    parts: list[str | Ref] = []
    for i, text in enumerate(texts):
        for part in (["\n"] if i else []) + list(text.template.parts):
            if type(part) is str and parts and type(parts[-1]) is str:
                parts[-1] += part
            elif part != "":
                parts.append(part)
    return Text.of(Template("\n".join(text.template.source for text in texts), tuple(parts)))


# ---- compiling validated models into handlers -------------------------------------------------


@dataclass(frozen=True)
class CompileContext:
    """What compiling a node needs from the whole file."""

    settings: schema.MenuSettings
    keys: Mapping[str, str]  # folded key -> action or node name
    text: Callable[[str], Text]
    regex: Callable[[str], re.Pattern[str]]
    hangup_nodes: frozenset[str] = frozenset()
    titles: Mapping[str, str] = field(default_factory=dict)  # node name -> its title, where it has one
    sources: Mapping[str, Source] = field(default_factory=dict)  # compiled `sources:`, by name

    def waiting(self, m: schema.WaitingNode) -> Waiting:
        st = self.settings
        disabled = {k.strip().casefold() for k in m.disable_keys}
        prompt = self.text(m.prompt)
        return Waiting(
            prompt=prompt,
            short_prompt=self.text(m.short_prompt) if m.short_prompt is not None else prompt,
            invalid=self.text(m.invalid if m.invalid is not None else st.invalid),
            goodbye=self.text(m.goodbye if m.goodbye is not None else st.goodbye),
            timeout=m.timeout if m.timeout is not None else st.timeout,
            max_timeouts=m.max_timeouts if m.max_timeouts is not None else st.max_timeouts,
            max_failures=m.max_failures if m.max_failures is not None else st.max_failures,
            on_max_failures=m.on_max_failures if m.on_max_failures is not None else st.on_max_failures,
            keys={k: v for k, v in self.keys.items() if k not in disabled},
        )


def _menu(name: str, m: Any, c: CompileContext) -> Node:
    rules = tuple(Rule(c.regex(p.match), p.go, tuple(p.save.items())) for p in m.patterns)
    options = {k.strip().casefold(): v for k, v in m.options.items()}
    return MenuNode(name, c.waiting(m), options, rules)


def _input(name: str, m: Any, c: CompileContext) -> Node:
    pattern = c.regex(m.pattern) if m.pattern is not None else None
    return InputNode(name, c.waiting(m), m.save_as, pattern, m.next, m.sensitive)


def _robot(name: str, m: Any, c: CompileContext) -> Node:
    options = {k.strip().casefold(): v for k, v in m.options.items()}
    fallback = c.text(m.fallback) if m.fallback is not None else None
    return RobotNode(name, c.waiting(m), options, dict(m.on_intent), fallback)


def _message(name: str, m: Any, c: CompileContext) -> Node:
    return MessageNode(name, c.text(m.text), m.next)


def _lookup(name: str, m: Any, c: CompileContext) -> Node:
    if m.source is None:
        return LookupNode(name, m.table, c.text(m.key), m.save_as, m.found, m.missing)
    wait_prompt = c.text(m.wait_prompt) if m.wait_prompt is not None else None
    error = m.error if m.error is not None else m.missing
    return SourceLookupNode(name, c.sources[m.source], m.save_as, m.found, m.missing, error, wait_prompt)


def _transfer(name: str, m: Any, c: CompileContext) -> Node:
    own = {k.strip().casefold(): v for k, v in m.keys.items()}
    keys = {**{k: a for k, a in c.keys.items() if a == "hangup" or a in c.hangup_nodes}, **own}
    hold = c.text(m.hold)
    st = c.settings
    hangups = frozenset(k for k, a in keys.items() if a == "hangup" or a in c.hangup_nodes)
    wait = Waiting(
        prompt=hold,
        short_prompt=hold,
        invalid=hold,
        goodbye=c.text(st.goodbye),
        timeout=86400.0,  # unused: no silence timeouts while waiting or connected
        max_timeouts=st.max_timeouts,
        max_failures=st.max_failures,
        on_max_failures=None,
        keys=keys,
    )
    if m.keys_prompt is not None:
        keys_prompt = c.text(m.keys_prompt) if m.keys_prompt.strip() else None
    else:
        said = default_keys_prompt(m.keys, c.titles)
        keys_prompt = Text.of(Template(said, (said,))) if said else None
    return TransferNode(
        name,
        wait,
        m.queue,
        c.text(m.prompt),
        c.text(m.position),
        keys_prompt,
        c.text(m.away),
        hold,
        c.text(m.connected),
        c.text(m.agent_says),
        c.text(m.ended),
        c.text(m.closed),
        c.text(m.busy),
        m.on_closed,
        m.on_busy,
        m.next,
        hangups,
        max(map(len, hangups), default=0) if all(k.isascii() for k in hangups) else 1 << 30,
        m.survey,
        _callback(m.callback, c),
    )


def _callback(m: Any, c: CompileContext) -> Callback | None:
    if m is None:
        return None
    number = c.text(m.number) if m.number is not None and m.number.strip() else None
    key = unicodedata.normalize("NFKC", m.key).strip().casefold()
    return Callback(
        m.when_wait_over, c.text(m.offer), key, number, c.text(m.ask), c.text(m.booked), m.next, m.expires
    )


def default_keys_prompt(keys: Mapping[str, str], titles: Mapping[str, str]) -> str:
    """What a waiting caller may press, said once with their first position, from a transfer node's
    `keys` when it has no `keys_prompt`: 等待期间,留言请按 1,返回上一级请按 *。 (a node by its title)."""
    said = [
        f"{KEY_WORDS.get(action) or titles.get(action) or '其他服务'}请按 {key}"
        for key, action in keys.items()
    ]
    return "等待期间," + ",".join(said) + "。" if said else ""


@dataclass(frozen=True, slots=True)
class TicketNode(WaitNode):
    """Leave a message: the line becomes a ticket (Session.save_ticket); `saved` (with the ticket's
    id) or `failed` is said when the I/O layer answers (Session.ticket_result), then `next`."""

    type: ClassVar[str] = "ticket"
    saved: Text
    failed: Text
    callback: str | None
    next: str | None

    def handle(self, s: Walk, text: str, folded: str) -> str | None:
        s.save_ticket(self)
        return None


@dataclass(frozen=True, slots=True)
class SurveyNode(WaitNode):
    """A satisfaction score after an agent's call: a key of `scores` emits Score and says `thanks`;
    any other line asks again once (the node's failures are two), then `next` with no score."""

    type: ClassVar[str] = "survey"
    scores: Mapping[str, int]  # folded key -> 1..5
    thanks: Text
    next: str | None

    def handle(self, s: Walk, text: str, folded: str) -> str | None:
        score = self.scores.get(folded)
        if score is None:
            return s.fail()
        s.emit(Score(score, self.name))
        s.say(self.thanks)
        if self.next is None:
            s.end("completed")
        return self.next


def _survey(name: str, m: Any, c: CompileContext) -> Node:
    wait = c.waiting(m)
    wait = dataclasses.replace(wait, max_failures=2, on_max_failures=m.next)  # re-ask once, then on
    scores = {unicodedata.normalize("NFKC", k).strip().casefold(): v for k, v in m.scores.items()}
    return SurveyNode(name, wait, scores, c.text(m.thanks), m.next)


def _ticket(name: str, m: Any, c: CompileContext) -> Node:
    return TicketNode(name, c.waiting(m), c.text(m.saved), c.text(m.failed), m.callback, m.next)


def _hangup(name: str, m: Any, c: CompileContext) -> Node:
    return HangupNode(name, c.text(m.text) if m.text is not None else None)


HANDLERS: dict[str, Callable[[str, Any, CompileContext], Node]] = {
    "menu": _menu,
    "input": _input,
    "robot": _robot,
    "message": _message,
    "lookup": _lookup,
    "transfer": _transfer,
    "ticket": _ticket,
    "survey": _survey,
    "hangup": _hangup,
}
