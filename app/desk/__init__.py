"""The agent desk: queues of callers waiting for a human, the agents who take them, the hand-off.

`schema.py` and `loader.py` read `desk.yaml`; `passwords.py` hashes agent passwords and `logins.py`
checks them for both doors; `policy.py` holds the routing rules, pure; `desk.py` is the desk itself
(it takes `now` and calls the links it is given) over a store, `queue.py` in this process or
`redis/` shared by replicas, both behind `store.py`'s interface; `events.py` holds what the desk
tells agents; `tallies.py` what it counts. The TCP agent port is in `app/net/agents.py`.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.desk.desk import Desk
    from app.desk.loader import DeskConfig, load_desk

# Imported when first asked for: `hotline report` reads desk.yaml without loading the desk.
_WHERE = {"Desk": "app.desk.desk", "DeskConfig": "app.desk.loader", "load_desk": "app.desk.loader"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'app.desk' has no attribute {name!r}")


__all__ = ["Desk", "DeskConfig", "load_desk"]
