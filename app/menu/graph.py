"""The compiled menu: an immutable graph of handler nodes that every session walks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from app.menu.nodes import Node, Text


def _no_robot(question: str) -> str:
    return "抱歉,智能客服暂未开通。请按 # 返回主菜单。"


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
    answer: Callable[[str], str] = field(default=_no_robot)

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", MappingProxyType(dict(self.nodes)))
        object.__setattr__(self, "tables", MappingProxyType(dict(self.tables)))
