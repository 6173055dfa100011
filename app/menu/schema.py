"""pydantic models of menu.yaml: the file, its settings, and one model per node type.

A node type is one model here (registered in NODE_MODELS by its `type` name) plus one handler in
`nodes.py`. Node mappings are validated one by one against the model their `type` names, so that an
error's location is the node's own keys and every node's errors are reported together.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StringConstraints

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def _duration(value: Any) -> Any:
    """ "30s", "2m", "1h", "500ms" or a number of seconds -> seconds as a float."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text like 30s, 2m")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _UNITS[m.group(2)]
    raise ValueError(f"{value!r} is not a duration; write a number of seconds or text like 30s, 2m, 500ms")


Duration = Annotated[float, BeforeValidator(_duration), Field(gt=0, le=86400)]
DurationOrZero = Annotated[float, BeforeValidator(_duration), Field(ge=0, le=86400)]
Count = Annotated[int, Field(ge=1, le=1000)]
Text = Annotated[str, Field(max_length=8000)]
NodeName = Annotated[str, Field(min_length=1, max_length=200)]
# what people see instead of an internal name (the console shows a node's or a field's title)
Title = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=60, pattern=r"^[^\r\n]*$")
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


DEFAULT_INVALID = "输入有误,请重新输入。"
DEFAULT_GOODBYE = "感谢您的来电,再见!"
DEFAULT_ERROR = "抱歉,系统繁忙,请稍后再拨。"
DEFAULT_BUSY = "抱歉,目前所有坐席均忙,请稍后再试。"


class MenuSettings(_Model):
    """Defaults for every node; a node that waits for input may override any of them."""

    timeout: Duration = 30.0
    max_timeouts: Count = 3
    max_failures: Count = 3
    on_max_failures: NodeName | None = None
    invalid: Text = DEFAULT_INVALID
    goodbye: Text = DEFAULT_GOODBYE
    error: Text = DEFAULT_ERROR


Path = tuple[str | int, ...]
KEY_ACTIONS = ("back", "top", "repeat", "hangup")


class Node(_Model):
    """Fields common to every node.

    The methods tell the loader, generically, what a node refers to, so that checks and lint need
    no knowledge of node types: each returns (path inside the node, value) pairs.
    """

    type: str
    description: str | None = None
    title: Title | None = None  # the console shows it for the node (the menu path, saved variables)

    def targets(self) -> list[tuple[Path, str]]:
        """Node names this node can go to."""
        return []

    def templates(self) -> list[tuple[Path, str]]:
        """Texts that are templates."""
        return []

    def regexes(self) -> list[tuple[Path, str]]:
        """Regular expressions."""
        return []

    def saves(self) -> list[tuple[str, bool]]:
        """Variables this node sets, each with whether it is a record (has fields)."""
        return []

    def tables(self) -> list[tuple[Path, str]]:
        """Data tables this node reads."""
        return []

    def sources(self) -> list[tuple[Path, str]]:
        """HTTP sources (`sources:`) this node asks."""
        return []

    def conflicts(self) -> list[tuple[Path, str]]:
        """Keys that are missing or do not go together, as (path, what is wrong)."""
        return []

    def local_refs(self, path: Path) -> Mapping[str, frozenset[str] | None]:
        """Template names that only the text at `path` offers (name -> its fields, None: no fields)."""
        return {}

    def references(self) -> list[tuple[Path, str, str]]:
        """Names defined in other files: (path, kind, name), kind "intent" (robot.yaml) or "queue"
        (desk.yaml). Checked when the loader is told what those files define."""
        return []


class WaitingNode(Node):
    """A node that waits for the caller: it has timeouts, failures and global keys."""

    prompt: Text
    short_prompt: Text | None = None
    timeout: Duration | None = None
    max_timeouts: Count | None = None
    max_failures: Count | None = None
    on_max_failures: NodeName | None = None
    invalid: Text | None = None
    goodbye: Text | None = None
    disable_keys: list[str] = []

    def targets(self) -> list[tuple[Path, str]]:
        return [(("on_max_failures",), self.on_max_failures)] if self.on_max_failures else []

    def templates(self) -> list[tuple[Path, str]]:
        out: list[tuple[Path, str]] = [(("prompt",), self.prompt)]
        for name in ("short_prompt", "invalid", "goodbye"):
            value = getattr(self, name)
            if value is not None:
                out.append(((name,), value))
        return out


class PatternRule(_Model):
    """One `patterns` entry of a menu: a regular expression, where it goes, what it saves."""

    match: str
    go: NodeName
    save: dict[str, int | str] = {}


class MenuNode(WaitingNode):
    type: Literal["menu"]
    options: dict[str, NodeName] = {}
    patterns: list[PatternRule] = []
    check_prompt_keys: StrictBool = True

    def targets(self) -> list[tuple[Path, str]]:
        out: list[tuple[Path, str]] = [(("options", k), v) for k, v in self.options.items()]
        out += [(("patterns", i, "go"), p.go) for i, p in enumerate(self.patterns)]
        return out + super().targets()

    def regexes(self) -> list[tuple[Path, str]]:
        return [(("patterns", i, "match"), p.match) for i, p in enumerate(self.patterns)]

    def saves(self) -> list[tuple[str, bool]]:
        return [(name, False) for p in self.patterns for name in p.save]


class InputNode(WaitingNode):
    type: Literal["input"]
    save_as: NodeName
    pattern: str | None = None
    next: NodeName
    sensitive: StrictBool = False

    def targets(self) -> list[tuple[Path, str]]:
        return [(("next",), self.next), *super().targets()]

    def regexes(self) -> list[tuple[Path, str]]:
        return [(("pattern",), self.pattern)] if self.pattern is not None else []

    def saves(self) -> list[tuple[str, bool]]:
        return [(self.save_as, False)]


class MessageNode(Node):
    type: Literal["message"]
    text: Text
    next: NodeName | None = None

    def targets(self) -> list[tuple[Path, str]]:
        return [(("next",), self.next)] if self.next else []

    def templates(self) -> list[tuple[Path, str]]:
        return [(("text",), self.text)]


class LookupNode(Node):
    """A record from a data table (`table` and `key`) or from an HTTP source (`source`)."""

    type: Literal["lookup"]
    table: NodeName | None = None
    key: Text | None = None
    source: NodeName | None = None
    save_as: NodeName
    found: NodeName
    missing: NodeName
    fields: dict[NodeName, Title] = {}  # a column of the table -> its title for agents (账户余额)
    error: NodeName | None = None  # a source only: timeout, bad answer, breaker open; default: missing
    wait_prompt: Text | None = None  # a source only: said once if no answer within a second

    def targets(self) -> list[tuple[Path, str]]:
        out: list[tuple[Path, str]] = [(("found",), self.found), (("missing",), self.missing)]
        return [*out, (("error",), self.error)] if self.error is not None else out

    def templates(self) -> list[tuple[Path, str]]:
        out: list[tuple[Path, str]] = [(("key",), self.key)] if self.key is not None else []
        return [*out, (("wait_prompt",), self.wait_prompt)] if self.wait_prompt is not None else out

    def saves(self) -> list[tuple[str, bool]]:
        return [(self.save_as, True)]

    def tables(self) -> list[tuple[Path, str]]:
        return [(("table",), self.table)] if self.table is not None else []

    def sources(self) -> list[tuple[Path, str]]:
        return [(("source",), self.source)] if self.source is not None else []

    def conflicts(self) -> list[tuple[Path, str]]:
        if self.table is None and self.source is None:
            return [((), "needs 'table' (a table of `data`) or 'source' (one of `sources`)")]
        if self.table is not None and self.source is not None:
            return [(("source",), "has both 'table' and 'source'; a lookup reads one of them")]
        if self.table is not None:
            out: list[tuple[Path, str]] = [((), "needs 'key' with 'table'")] if self.key is None else []
            for name in ("error", "wait_prompt"):
                if getattr(self, name) is not None:
                    out.append(((name,), f"has '{name}', which goes with a 'source' (a table cannot fail)"))
            return out
        if self.key is not None:
            return [(("key",), "has 'key', which a source does not use: its url and body say what is sent")]
        return []


class RobotNode(WaitingNode):
    type: Literal["robot"]
    options: dict[str, NodeName] = {}  # exact inputs that are keys, not questions (e.g. "0": agent)
    on_intent: dict[str, NodeName] = {}  # intent id -> node: a question matched to it goes there
    fallback: Text | None = None  # said instead of robot.yaml's fallback, for callers at this node

    def targets(self) -> list[tuple[Path, str]]:
        out: list[tuple[Path, str]] = [(("options", k), v) for k, v in self.options.items()]
        out += [(("on_intent", k), v) for k, v in self.on_intent.items()]
        return out + super().targets()

    def templates(self) -> list[tuple[Path, str]]:
        out = super().templates()
        return [*out, (("fallback",), self.fallback)] if self.fallback is not None else out

    def references(self) -> list[tuple[Path, str, str]]:
        return [(("on_intent", k), "intent", k) for k in self.on_intent]


DEFAULT_TRANSFER_PROMPT = "正在为您转接人工服务,请稍候。"
DEFAULT_POSITION = "您前面还有 {queue.ahead} 位客户,预计等待 {queue.wait_minutes} 分钟。"
DEFAULT_HOLD = "请稍候,坐席接通后会立即为您服务。"
DEFAULT_CONNECTED = "工号 {agent.id} 为您服务。"
DEFAULT_AGENT_SAYS = "客服 {agent.id}:{text}"
DEFAULT_ENDED = "本次服务已结束,感谢您的耐心。"
DEFAULT_CLOSED = "抱歉,现在不是人工服务时间,请在服务时间内来电。"
DEFAULT_AWAY = "目前坐席暂时离开,接通可能需要较长时间,感谢您的耐心等待。"

QUEUE_REFS = frozenset({"position", "ahead", "waiting", "wait_minutes"})
AGENT_REFS = frozenset({"id", "name"})
CALLBACK_REFS = frozenset({"masked"})
DEFAULT_CALLBACK_OFFER = "当前等待时间较长,如需保留排队位置并由坐席回电,请按 2。"
DEFAULT_CALLBACK_ASK = "请输入回电号码:"
DEFAULT_BOOKED = "已为您保留排队位置,坐席将致电 {callback.masked},您可以挂机了。"


class CallbackModel(_Model):
    """A transfer's queued callback: offered when the estimate is long; the callback keeps the
    caller's place and is offered to an agent with the number (docs/agent-desk.md)."""

    when_wait_over: DurationOrZero = 300.0  # offered only when {queue.wait_minutes} exceeds this
    offer: Text = DEFAULT_CALLBACK_OFFER
    key: Annotated[str, Field(min_length=1, max_length=20)] = "2"
    number: Text | None = None  # a template of a saved variable ("{phone}"); empty or absent: asked
    ask: Text = DEFAULT_CALLBACK_ASK
    booked: Text = DEFAULT_BOOKED
    next: NodeName | None = None  # after booking; absent: hang up
    expires: Duration = 86400.0  # counted in the queue's open hours


class TransferNode(Node):
    """Put the caller in an agent queue (desk.yaml), tell them where they stand, connect them."""

    type: Literal["transfer"]
    queue: NodeName = "default"
    prompt: Text = DEFAULT_TRANSFER_PROMPT
    position: Text = DEFAULT_POSITION
    keys: dict[str, NodeName] = {}  # what a waiting caller may press: a node or back/top/repeat/hangup
    keys_prompt: Text | None = None  # said with the first position; default: built from `keys`
    away: Text = DEFAULT_AWAY  # said while every agent logged in to the queue is on break
    hold: Text = DEFAULT_HOLD
    connected: Text = DEFAULT_CONNECTED
    agent_says: Text = DEFAULT_AGENT_SAYS
    ended: Text = DEFAULT_ENDED
    closed: Text = DEFAULT_CLOSED
    busy: Text = DEFAULT_BUSY
    on_closed: NodeName | None = None  # default: next
    on_busy: NodeName | None = None  # default: next
    next: NodeName | None = None  # after the agent; absent: goodbye and hang up
    survey: NodeName | None = None  # a survey node, before `next`, when the agent ended the call
    callback: CallbackModel | None = None  # a queued callback instead of waiting

    def targets(self) -> list[tuple[Path, str]]:
        out: list[tuple[Path, str]] = [(("keys", k), v) for k, v in self.keys.items() if v not in KEY_ACTIONS]
        for name in ("on_closed", "on_busy", "next", "survey"):
            value = getattr(self, name)
            if value is not None:
                out.append(((name,), value))
        if self.callback is not None and self.callback.next is not None:
            out.append((("callback", "next"), self.callback.next))
        return out

    def conflicts(self) -> list[tuple[Path, str]]:
        cb = self.callback
        if cb is not None and cb.key.strip().casefold() in {k.strip().casefold() for k in self.keys}:
            return [(("callback", "key"), f"callback key {cb.key!r} is also one of the node's keys")]
        return []

    def templates(self) -> list[tuple[Path, str]]:
        names = ("prompt", "position", "hold", "connected", "agent_says", "ended", "closed", "busy", "away")
        out: list[tuple[Path, str]] = [((n,), getattr(self, n)) for n in names]
        if self.keys_prompt is not None:
            out.append((("keys_prompt",), self.keys_prompt))
        cb = self.callback
        if cb is not None:
            out += [(("callback", n), getattr(cb, n)) for n in ("offer", "ask", "booked")]
            if cb.number is not None:
                out.append((("callback", "number"), cb.number))
        return out

    def local_refs(self, path: Path) -> Mapping[str, frozenset[str] | None]:
        if path == ("position",):
            return {"queue": QUEUE_REFS}
        if path == ("connected",):
            return {"agent": AGENT_REFS}
        if path == ("agent_says",):
            return {"agent": AGENT_REFS, "text": None}
        if path == ("callback", "booked"):
            return {"callback": CALLBACK_REFS}
        return {}

    def references(self) -> list[tuple[Path, str, str]]:
        return [(("queue",), "queue", self.queue)]


DEFAULT_TICKET_PROMPT = "请留言,说明您的问题和联系方式,输入完毕请按回车。"
DEFAULT_SAVED = "您的留言已记录,工单号是 {ticket.id}。我们会尽快与您联系。"
DEFAULT_FAILED = "抱歉,留言暂时无法保存,请稍后再拨,或使用智能客服。"
TICKET_REFS = frozenset({"id"})


class TicketNode(WaitingNode):
    """Take one line as a message and store it as a ticket; say its id only once it is stored."""

    type: Literal["ticket"]
    prompt: Text = DEFAULT_TICKET_PROMPT
    saved: Text = DEFAULT_SAVED
    failed: Text = DEFAULT_FAILED
    callback: NodeName | None = None  # a saved variable with the number to call back (e.g. phone)
    next: NodeName | None = None  # after saved or failed; absent: goodbye and hang up

    def targets(self) -> list[tuple[Path, str]]:
        return ([(("next",), self.next)] if self.next else []) + super().targets()

    def templates(self) -> list[tuple[Path, str]]:
        return [*super().templates(), (("saved",), self.saved), (("failed",), self.failed)]

    def local_refs(self, path: Path) -> Mapping[str, frozenset[str] | None]:
        return {"ticket": TICKET_REFS} if path == ("saved",) else {}


DEFAULT_SURVEY_PROMPT = "请对本次服务评价:非常满意请按 1,满意请按 2,不满意请按 3。"
DEFAULT_THANKS = "感谢您的评价,再见!"
SurveyScore = Annotated[int, Field(ge=1, le=5)]
SurveyKey = Annotated[str, Field(min_length=1, max_length=20)]


class SurveyNode(WaitingNode):
    """After an agent's call: a key gives a satisfaction score (1-5) for that desk call; any other
    line asks again once, then `next` with no score."""

    type: Literal["survey"]
    prompt: Text = DEFAULT_SURVEY_PROMPT
    scores: Annotated[dict[SurveyKey, SurveyScore], Field(min_length=1)] = {"1": 5, "2": 4, "3": 1}
    thanks: Text = DEFAULT_THANKS
    next: NodeName | None = None  # after the score (or the second wrong line); absent: hang up

    def targets(self) -> list[tuple[Path, str]]:
        return ([(("next",), self.next)] if self.next else []) + super().targets()

    def templates(self) -> list[tuple[Path, str]]:
        return [*super().templates(), (("thanks",), self.thanks)]


class HangupNode(Node):
    type: Literal["hangup"]
    text: Text | None = None

    def templates(self) -> list[tuple[Path, str]]:
        return [(("text",), self.text)] if self.text is not None else []


NODE_MODELS: dict[str, type[Node]] = {
    "menu": MenuNode,
    "input": InputNode,
    "message": MessageNode,
    "lookup": LookupNode,
    "robot": RobotNode,
    "transfer": TransferNode,
    "ticket": TicketNode,
    "survey": SurveyNode,
    "hangup": HangupNode,
}


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


class Breaker(_Model):
    """After `failures` failed look-ups in a row, a source answers `error` at once for `open_for`;
    then one look-up is let through, and its success closes the breaker again."""

    failures: Count = 5
    open_for: Duration = 30.0


class SourceModel(_Model):
    """One entry of `sources:`: an HTTP backend that lookup nodes ask (docs/integrations.md)."""

    url: Text  # {variable}s URL-encoded; ${NAME} from the environment
    method: Annotated[Literal["GET", "POST"], BeforeValidator(_upper)] = "GET"
    headers: dict[Annotated[str, Field(min_length=1, max_length=200)], Text] = {}  # ${NAME}: secrets
    body: dict[Annotated[str, Field(min_length=1, max_length=200)], Text] | None = None  # POST: JSON
    timeout: Annotated[float, BeforeValidator(_duration), Field(gt=0, le=60)] = 2.0
    retries: Annotated[int, Field(ge=0, le=5)] = 0
    cache: DurationOrZero = 0.0
    result: Annotated[str, Field(min_length=1, max_length=500)] | None = None
    breaker: Breaker = Breaker()
    max_in_flight: Annotated[int, Field(ge=1, le=100_000)] = 100


class MenuFile(_Model):
    """The top level of menu.yaml. `nodes` values are checked against NODE_MODELS separately."""

    version: Literal[1]
    name: Annotated[str, Field(min_length=1, max_length=200)] = "menu"
    start: NodeName
    settings: MenuSettings = MenuSettings()
    keys: dict[str, NodeName] = {}
    data: dict[str, str | dict[str, Any]] = {}
    sources: dict[str, dict[str, Any]] = {}  # each checked against SourceModel separately
    nodes: dict[str, dict[str, Any]]
