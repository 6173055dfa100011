"""The compiled menu: an immutable graph of handler nodes that every session walks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from app.menu.nodes import Answerer, Node, Reply, Text, WaitNode
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
    # nodes that only say a fixed prompt and wait: a global key leading to one needs no handler
    direct: dict[str, WaitNode] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        table = dict(self.nodes)
        object.__setattr__(self, "table", table)  # the plain dict behind `nodes`, for the engine's lookups
        object.__setattr__(self, "direct", {n: node for n, node in table.items() if says_and_waits(node)})
        object.__setattr__(self, "nodes", MappingProxyType(table))
        object.__setattr__(self, "tables", MappingProxyType(dict(self.tables)))


def says_and_waits(node: Node) -> bool:
    """The node says a fixed prompt on arrival and waits, nothing else (no handler needs to run)."""
    return (
        isinstance(node, WaitNode) and type(node).enter is WaitNode.enter and node.wait.prompt.say is not None
    )
