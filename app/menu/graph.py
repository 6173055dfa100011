"""The compiled menu: an immutable graph of handler nodes that every session walks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from app.menu.nodes import Answerer, Arrival, Node, Reply, Route, Text, compiled_walk, walks
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
    # Arriving at a node whose walk is fixed but says something with variables: the nodes and one
    # template of all they say, by name (rendered per caller)
    routes: dict[str, Route] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        table = dict(self.nodes)
        object.__setattr__(self, "table", table)  # the plain dict behind `nodes`, for the engine's lookups
        object.__setattr__(self, "walk", {n: walks(node) for n, node in table.items()})
        arrivals, routes = {}, {}
        for name in table:
            walk = compiled_walk(table, name)
            if type(walk) is Arrival:
                arrivals[name] = walk
            elif type(walk) is Route:
                routes[name] = walk
        object.__setattr__(self, "arrivals", arrivals)
        object.__setattr__(self, "routes", routes)
        object.__setattr__(self, "nodes", MappingProxyType(table))
        object.__setattr__(self, "tables", MappingProxyType(dict(self.tables)))
