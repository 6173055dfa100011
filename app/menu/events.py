"""What the engine asks the outside world to do: small frozen values, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Say:
    """Send this text to the caller (one or more lines; the I/O layer adds line endings)."""

    text: str


@dataclass(frozen=True, slots=True)
class Hangup:
    """The session is over; close the connection after sending what came before.

    `reason` is one of: "caller" (a hangup key or node), "timeout", "failures", "loop",
    "interrupt", "eof", "shutdown", "end" (a node with nowhere to go).
    """

    reason: str


@dataclass(frozen=True, slots=True)
class Transfer:
    """The caller asked for a human agent in `queue` (informational in the first version)."""

    queue: str
    node: str


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the I/O layer should log; the engine itself never logs.

    `level` is "debug", "info", "warning" or "error"; `event` is a log event name.
    """

    level: str
    event: str
    fields: dict[str, Any] = field(default_factory=dict)


Event = Say | Hangup | Transfer | Notice
