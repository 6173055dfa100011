"""The agent desk: queues of callers waiting for a human, the agents who take them, the hand-off.

`schema.py` and `loader.py` read `desk.yaml`; `passwords.py` hashes agent passwords and `logins.py`
checks them for both doors; `policy.py` holds the routing rules, pure; `desk.py` is the desk itself
(it takes `now` and calls the links it is given) over a store, `queue.py` in this process or
`redis/` shared by replicas, both behind `store.py`'s interface; `events.py` holds what the desk
tells agents; `tallies.py` what it counts. The TCP agent port is in `app/net/agents.py`.
"""

from app.desk.desk import Desk
from app.desk.loader import DeskConfig, load_desk

__all__ = ["Desk", "DeskConfig", "load_desk"]
