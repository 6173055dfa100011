"""The menu: YAML loader, compiled graph and the sans-IO dialogue engine.

Nothing in this package touches sockets, asyncio, the clock or logging: the network layer,
`hotline chat` and the tests all drive the same `Session`.
"""

from app.menu.engine import Session
from app.menu.events import Event, Hangup, Notice, Say, Transfer
from app.menu.graph import Graph
from app.menu.loader import LoadResult, load_menu
from app.yamlfile import Problem

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
