"""The agent desk: queues of callers waiting for a human, the agents who take them, the hand-off.

`schema.py` and `loader.py` read `desk.yaml`; `passwords.py` hashes agent passwords; `core.py` is the
queue and routing logic without I/O (it takes `now` and calls the links it is given); `events.py`
holds what the core tells agents and callers. The TCP agent port is in `app/net/agents.py`.
"""

from app.desk.core import Desk
from app.desk.loader import DeskConfig, load_desk

__all__ = ["Desk", "DeskConfig", "load_desk"]
