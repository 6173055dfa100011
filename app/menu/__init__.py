"""The menu: YAML loader, compiled graph and the sans-IO dialogue engine.

Nothing in this package touches sockets, asyncio, the clock or logging: the network layer,
`hotline chat` and the tests all drive the same `Session`.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.menu.engine import Session
    from app.menu.events import Event, Hangup, Notice, Say, Transfer
    from app.menu.graph import Graph
    from app.menu.loader import LoadResult, load_menu
    from app.yamlfile import Problem

# Imported when first asked for: a command that needs only the schema (`hotline report` reading
# desk.yaml's durations) does not load the engine and the loader.
_WHERE = {
    "Session": "app.menu.engine",
    "Event": "app.menu.events",
    "Hangup": "app.menu.events",
    "Notice": "app.menu.events",
    "Say": "app.menu.events",
    "Transfer": "app.menu.events",
    "Graph": "app.menu.graph",
    "LoadResult": "app.menu.loader",
    "load_menu": "app.menu.loader",
    "Problem": "app.yamlfile",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'app.menu' has no attribute {name!r}")


__all__ = [
    "Event",
    "Graph",
    "Hangup",
    "LoadResult",
    "Notice",
    "Problem",
    "Say",
    "Session",
    "Transfer",
    "load_menu",
]
