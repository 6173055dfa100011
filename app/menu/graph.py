"""The compiled menu: an immutable graph of handler nodes that every session walks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from app.menu.events import Say
from app.menu.nodes import Answerer, LookupNode, MessageNode, Node, Reply, Text, WaitNode
from app.menu.sources import Source


@dataclass(frozen=True)
class _Unavailable:
    text: str = "抱歉,智能客服暂未开通。请按 # 返回主菜单。"
    intent: str | None = None
    confidence: float = 0.0
    candidates: tuple[str, ...] = ()


class NoRobot:
    """The answerer when no robot knowledge base is configured."""

    def answer(self, question: str) -> Reply:
        return _Unavailable()


@dataclass(frozen=True)
class Titles:
    """What agents see instead of internal names (docs/menu-format.md, "Titles"): a node's `title`,
    a saved variable's (the title of the input or lookup that saves it), a lookup field's
    (`fields:`, keyed `variable.field`)."""

    nodes: Mapping[str, str] = field(default_factory=dict)
    vars: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Graph:
    """A loaded, validated menu. Sessions keep the graph they started with across reloads."""

    name: str
    start: str
    nodes: Mapping[str, Node]
    tables: Mapping[str, Mapping[str, Any]]
    goodbye: Text
    error: Text
    source: str = ""
    robot: Answerer = field(default_factory=NoRobot)
    sensitive_vars: frozenset[str] = frozenset()  # saved by `sensitive: true` inputs: masked for agents
    titles: Titles = field(default_factory=Titles)
    sources: Mapping[str, Source] = field(default_factory=dict)  # `sources:`: HTTP backends of lookups
    table: dict[str, Node] = field(init=False, repr=False, compare=False)
    # How Session.press walks each node on arrival (see `walks`), by name
    walk: dict[str, int] = field(init=False, repr=False, compare=False)
    # Arriving at a node whose walk is all fixed (messages with fixed texts, then a node that says a
    # fixed prompt and waits): the nodes passed through and what they say, as one Say, by name
    arrivals: dict[str, Arrival] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        table = dict(self.nodes)
        object.__setattr__(self, "table", table)  # the plain dict behind `nodes`, for the engine's lookups
        object.__setattr__(self, "walk", {n: walks(node) for n, node in table.items()})
        arrivals = {}
        for name in table:
            arrival = fixed_arrival(table, name)
            if arrival is not None:
                arrivals[name] = arrival
        object.__setattr__(self, "arrivals", arrivals)
        object.__setattr__(self, "nodes", MappingProxyType(table))
        object.__setattr__(self, "tables", MappingProxyType(dict(self.tables)))


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


def fixed_arrival(table: Mapping[str, Node], name: str) -> Arrival | None:
    nodes: list[Node] = []
    texts: list[str] = []
    for _ in range(WALK_LIMIT):
        node = table[name]
        nodes.append(node)
        kind = walks(node)
        if kind == SAYS:
            assert isinstance(node, MessageNode) and node.next is not None
            if node.text.say is None:
                return None
            texts.append(node.text.say.text)
            name = node.next
        elif kind == WAITS:
            assert isinstance(node, WaitNode)
            say = node.wait.prompt.say
            if say is None:
                return None
            if texts:
                say = Say("\n".join([*texts, say.text]))
            return Arrival(tuple(nodes), node, say)
        else:
            return None
    return None
