"""One caller's time with the desk, sans-IO: the glue between a caller's menu engine and the desk,
written once for the TCP session (app/net/tcp.py) and `hotline test` (app/authoring/conversations.py).

The engine says `Transfer` (join a queue) and `ToAgent` (a line for the agent); the desk answers
with its events (QueuePosition, AgentConnected, AgentLine, CallEnded, QueueBusy, ...), which the
owner hands back to the engine. Once the engine is done with the desk (the call ended, the caller
pressed a key to leave, or hung up) the caller leaves the queue, once. The hand-off's times
(joined, connected, with which agent, left) are kept for the session's end log.

Made only when a caller reaches a transfer node: thousands of callers who never do carry nothing.
"""

from __future__ import annotations

from typing import Any, Protocol

from app.desk.model import CallerLink
from app.menu.events import AgentConnected


class CallerDesk(Protocol):
    """What a caller's call uses of the desk (app/desk/desk.py's Desk provides it)."""

    def join(
        self, queue: str, call_id: str, link: CallerLink, now: float, phone: str | None = None
    ) -> bool: ...

    def leave(self, call_id: str, now: float) -> None: ...

    def caller_line(self, call_id: str, text: str) -> None: ...

    def book_callback(self, call_id: str, number: str, expires: float, now: float) -> None: ...


class CallerCall:
    """A caller's link to the desk: joins, lines, leaving, and the hand-off's times."""

    __slots__ = ("agent", "call_id", "connected", "desk", "joined", "left", "link")

    def __init__(self, desk: CallerDesk, call_id: str, link: CallerLink) -> None:
        self.desk = desk
        self.call_id = call_id
        self.link = link
        self.joined = 0.0
        self.connected = 0.0
        self.agent = ""  # the agent who answered
        self.left = 0.0

    def transfer(self, queue: str, now: float, phone: str | None = None) -> None:
        """The engine's Transfer: the caller joins `queue` (the desk answers through the link);
        `phone`: the session's `phone` variable, which the records keep (the abandoned list)."""
        self.joined, self.connected, self.agent, self.left = now, 0.0, "", 0.0
        self.desk.join(queue, self.call_id, self.link, now, phone)

    def say(self, text: str) -> None:
        """The engine's ToAgent: a line for the connected agent."""
        self.desk.caller_line(self.call_id, text)

    def book(self, number: str, expires: float, now: float) -> None:
        """The engine's BookCallback: the caller keeps their place as a callback and is done with
        the desk (their call goes on as the callback: no leaving)."""
        if self.joined and not self.left:
            self.left = now
            self.desk.book_callback(self.call_id, number, expires, now)

    def heard(self, event: Any, now: float) -> None:
        """A desk event on its way to the engine: an answer is noted."""
        if type(event) is AgentConnected:
            self.connected, self.agent = now, event.agent_id

    def done(self, now: float) -> None:
        """The engine is done with the desk, or the caller hung up: leave the queue (once)."""
        if self.joined and not self.left:
            self.left = now
            self.desk.leave(self.call_id, now)

    def times(self, now: float) -> dict[str, Any]:
        """waited / talked / agent, for the session's end log."""
        end = self.left or now
        if not self.connected:
            return {"waited": round(end - self.joined, 1)}
        return {
            "waited": round(self.connected - self.joined, 1),
            "talked": round(end - self.connected, 1),
            "agent": self.agent,
        }
