"""The desk's queues in Redis, shared by replicas: key names (keys.py), the Lua scripts (scripts.py),
the one ordered command pipeline (pipeline.py) and the store itself (store.py)."""

from app.desk.redis.store import RedisStore

__all__ = ["RedisStore"]
