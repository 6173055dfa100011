"""The live side of the console and the board: browser agents on the desk, and the open WebSockets.

A browser agent (`WebAgent`) is the desk's AgentLink for one logged-in agent, however many pages
they have open: every desk event goes, as JSON, to each of their sockets. When their last socket
closes they stay logged in for `agent_reconnect_grace` seconds (a reload keeps the call), then the
desk logs them out.

The desk calls links synchronously and a WebSocket write is a coroutine, so each socket has an
outbox drained by its own task; a page that stops reading is closed once MAX_OUTBOX messages wait.

`Ticker` is the one timer of the web side: once a second it sends each board one snapshot (built
once for all of them, however many desk events happened: they are coalesced) and each agent their
queues' length and longest wait when those changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import TYPE_CHECKING, Any, Final, Protocol

import structlog
from aiohttp import web

from app.desk import commands
from app.desk.board import snapshot
from app.desk.events import AgentEvent, LoggedOut, Message
from app.desk.model import Agent

if TYPE_CHECKING:
    from app.desk.desk import Desk
    from app.menu import Graph
    from app.settings import Settings

log = structlog.get_logger("hotline.web")
MAX_OUTBOX: Final = 1000
TICK: Final = 1.0


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def encode(message: Message) -> str:
    """A message of the desk's protocol as the WebSocket's text."""
    return dumps(commands.as_json(message))


class Socket:
    """One open WebSocket and its outbox."""

    def __init__(self, ws: web.WebSocketResponse, peer: str) -> None:
        self.ws = ws
        self.peer = peer
        self.outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self.closed = False
        self.task = asyncio.get_running_loop().create_task(self._pump())

    def tell(self, *messages: Message) -> None:
        """Messages of the desk's protocol, as JSON, to this page only."""
        for message in messages:
            self.send(encode(message))

    def send(self, text: str) -> None:
        if self.closed:
            return
        if self.outbox.qsize() >= MAX_OUTBOX:
            log.warning("websocket_slow_reader", peer=self.peer)
            self.close()
            return
        self.outbox.put_nowait(text)

    def close(self) -> None:
        """Send what is queued, then close."""
        if not self.closed:
            self.closed = True
            self.outbox.put_nowait(None)

    async def _pump(self) -> None:
        try:
            while (text := await self.outbox.get()) is not None:
                await self.ws.send_str(text)
        except (ConnectionError, RuntimeError):  # the page went away while we wrote
            pass
        finally:
            self.closed = True
            with contextlib.suppress(Exception):
                await self.ws.close()


class WebAgent:
    """A logged-in browser agent: the desk's link to all of that agent's open pages."""

    def __init__(self, live: Live, agent_id: str) -> None:
        self.live = live
        self.agent_id = agent_id
        self.agent: Agent | None = None  # set once the desk logged them in
        self.sockets: set[Socket] = set()
        self.grace: asyncio.TimerHandle | None = None
        self.queues_sent = ""

    # the desk's AgentLink: every event as JSON, a change of status or state as a `status` message
    def agent_event(self, event: AgentEvent) -> None:
        self.emit(event)
        if type(event) is LoggedOut:  # removed from desk.yaml: the desk logged them out already
            self.agent = None
            self.live.forget(self)

    def emit(self, *messages: Message) -> None:
        """Messages to every open page of this agent."""
        for message in messages:
            self._broadcast(encode(message))

    def _broadcast(self, text: str) -> None:
        for sock in self.sockets:
            sock.send(text)

    def attach(self, sock: Socket) -> None:
        if self.grace is not None:
            self.grace.cancel()
            self.grace = None
        self.sockets.add(sock)

    def detach(self, sock: Socket) -> None:
        self.sockets.discard(sock)
        self.wait_for_page()

    def wait_for_page(self) -> None:
        """With no page open, the grace period runs: log out unless one connects in time."""
        if not self.sockets and self.agent is not None and self.grace is None:
            self.grace = asyncio.get_running_loop().call_later(
                self.live.hub.settings.agent_reconnect_grace, self.expire
            )

    def expire(self) -> None:
        """No page came back in time: log out."""
        self.grace = None
        if not self.sockets:
            self.log_out("no_page")

    def log_out(self, reason: str) -> None:
        agent, self.agent = self.agent, None
        if agent is not None:
            self.live.hub.desk.logout(agent, time.time())
            log.info("web_agent_logged_out", agent=self.agent_id, reason=reason)
        self.live.forget(self)

    def hello(self, now: float) -> dict[str, Any]:
        """The state a page starts from (also after a reload in the middle of a call)."""
        agent = self.agent
        assert agent is not None
        desk = self.live.hub.desk
        offer = desk.offer_of(agent.offer, now) if agent.offer is not None else None
        return {
            "type": "hello",
            "agent": {"id": agent.id, "name": agent.name, "queues": list(agent.queues)},
            "status": agent.status,
            "state": agent.state,
            "offer": commands.as_json(offer) if offer is not None else None,
            "call": agent.call.id if agent.call is not None else None,
            "last_call": agent.last_call.id if agent.last_call is not None else None,
            "canned": desk.config.canned,
            "dispositions": list(desk.config.dispositions),
            "titles": self.live.titles(agent),
        }

    def queue_update(self, now: float) -> None:
        """The agent's queues, when they changed since last sent."""
        agent = self.agent
        if agent is None or not self.sockets:
            return
        infos = commands.queue_infos(self.live.hub.desk, agent, now)
        text = dumps({"type": "queues", "queues": [commands.as_json(i) for i in infos]})
        if text != self.queues_sent:
            self.queues_sent = text
            self._broadcast(text)


class LiveHub(Protocol):
    """What the live side uses of the server (app/server.py's Hub provides it)."""

    settings: Settings
    desk: Desk
    graph: Graph  # the current menu: its titles are what agents see


class Live:
    """Browser agents by id, open boards, and the once-a-second ticker."""

    def __init__(self, hub: LiveHub) -> None:
        self.hub = hub
        self.agents: dict[str, WebAgent] = {}
        self.boards: set[Socket] = set()
        self.snapshots = 0  # built (for tests and the benchmark: one a second, however many boards)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._tick_forever())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for web_agent in list(self.agents.values()):
            for sock in list(web_agent.sockets):
                sock.send(dumps({"type": "info", "text": "the server is shutting down"}))
                sock.close()
            web_agent.log_out("shutdown")
        for sock in list(self.boards):
            sock.close()

    def titles(self, agent: Agent) -> dict[str, Any]:
        """What agents see instead of internal names: the menu's titles (nodes, saved variables
        and lookup fields, docs/menu-format.md) and the titles of the agent's queues."""
        graph_titles = self.hub.graph.titles
        queues = self.hub.desk.queues
        return {
            "nodes": dict(graph_titles.nodes),
            "vars": dict(graph_titles.vars),
            "queues": {n: queues[n].config.title for n in agent.queues if n in queues},
        }

    def titles_changed(self) -> None:
        """The menu or desk.yaml was reloaded: every page gets the titles again."""
        for web_agent in self.agents.values():
            if web_agent.agent is not None and web_agent.sockets:
                web_agent._broadcast(dumps({"type": "titles", **self.titles(web_agent.agent)}))

    def page_counts(self) -> tuple[int, int]:
        """(console pages, boards) open now, for the metrics."""
        return sum(len(a.sockets) for a in self.agents.values()), len(self.boards)

    def forget(self, web_agent: WebAgent) -> None:
        if self.agents.get(web_agent.agent_id) is web_agent:
            del self.agents[web_agent.agent_id]
        if web_agent.grace is not None:
            web_agent.grace.cancel()
            web_agent.grace = None
        for sock in list(web_agent.sockets):
            sock.close()
        web_agent.sockets.clear()

    def board_text(self, now: float) -> str:
        self.snapshots += 1
        return dumps(snapshot(self.hub.desk, now))

    def tick(self, now: float) -> None:
        if self.boards:
            text = self.board_text(now)  # once for every board
            for sock in self.boards:
                sock.send(text)
        for web_agent in self.agents.values():
            web_agent.queue_update(now)

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            try:
                self.tick(time.time())
            except Exception:  # a bug here must not stop the board for everyone
                log.exception("web_tick_failed")
