"""pydantic models of menu.yaml: the file, its settings, and one model per node type.

A node type is one model here (registered in NODE_MODELS by its `type` name) plus one handler in
`nodes.py`. Node mappings are validated one by one against the model their `type` names, so that an
error's location is the node's own keys and every node's errors are reported together.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool

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
Count = Annotated[int, Field(ge=1, le=1000)]
Text = Annotated[str, Field(max_length=8000)]
NodeName = Annotated[str, Field(min_length=1, max_length=200)]


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


class Node(_Model):
    """Fields common to every node.

    The methods tell the loader, generically, what a node refers to, so that checks and lint need
    no knowledge of node types: each returns (path inside the node, value) pairs.
    """

    type: str
    description: str | None = None

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
    type: Literal["lookup"]
    table: NodeName
    key: Text
    save_as: NodeName
    found: NodeName
    missing: NodeName

    def targets(self) -> list[tuple[Path, str]]:
        return [(("found",), self.found), (("missing",), self.missing)]

    def templates(self) -> list[tuple[Path, str]]:
        return [(("key",), self.key)]

    def saves(self) -> list[tuple[str, bool]]:
        return [(self.save_as, True)]

    def tables(self) -> list[tuple[Path, str]]:
        return [(("table",), self.table)]


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


class TransferNode(Node):
    type: Literal["transfer"]
    queue: NodeName = "default"
    prompt: Text
    busy: Text = DEFAULT_BUSY
    next: NodeName | None = None

    def targets(self) -> list[tuple[Path, str]]:
        return [(("next",), self.next)] if self.next else []

    def templates(self) -> list[tuple[Path, str]]:
        return [(("prompt",), self.prompt), (("busy",), self.busy)]


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
    "hangup": HangupNode,
}

KEY_ACTIONS = ("back", "top", "repeat", "hangup")


class MenuFile(_Model):
    """The top level of menu.yaml. `nodes` values are checked against NODE_MODELS separately."""

    version: Literal[1]
    name: Annotated[str, Field(min_length=1, max_length=200)] = "menu"
    start: NodeName
    settings: MenuSettings = MenuSettings()
    keys: dict[str, NodeName] = {}
    data: dict[str, str | dict[str, Any]] = {}
    nodes: dict[str, dict[str, Any]]
