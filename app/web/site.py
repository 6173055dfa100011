"""The admin port's HTTP side on aiohttp's web server, in the server's own event loop (uvloop):
/healthz, /readyz, /metrics, the agent console at /, its WebSocket at /ws, the board at /board, and
the tickets API. Pages are static files of the package (no build step, no inline script).

Why aiohttp: one well-kept library gives the HTTP/1.1 server and the WebSocket, runs on the loop we
already have (AppRunner + TCPSite, no second event loop, no signal handlers of its own), and has no
dependencies beyond small C-accelerated helpers. Starlette would need uvicorn and a WebSocket
library besides, and uvicorn's `Server.serve()` brings its own lifecycle.

Security (docs/agent-desk.md, "Agents in a browser"; README.md, "The doors"): connections are bounded,
slow headers cut off, the client behind a trusted proxy found and any `Host` this port does not serve
refused before a handler runs (app/web/doors.py); logins go through the same gate as the terminal
desk's (app/desk/logins.py); the session cookie is HttpOnly, SameSite=Strict, signed, expiring, and
ends when desk.yaml changes the agent's password, role or queues (app/web/auth.py); every POST and the
WebSocket upgrade must come with an Origin of this site; no caller data in any URL; every answer
carries a CSP without inline script and no framing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import structlog
from aiohttp import WSMsgType, web

from app.desk import commands
from app.desk.events import Error, Info
from app.desk.history import send_history
from app.desk.logins import Verdict
from app.desk.model import DeskError
from app.net.rates import Rate
from app.web import doors
from app.web.auth import COOKIE, Sessions, WebSession, grant, load_secret
from app.web.live import Live, Socket, WebAgent, dumps

if TYPE_CHECKING:
    from app.desk.desk import Desk
    from app.desk.logins import LoginGate
    from app.menu import Graph
    from app.records import Recorder
    from app.settings import Settings

log = structlog.get_logger("hotline.web")
STATIC: Final = Path(__file__).parent / "static"
TYPES: Final = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make Chromium send `Origin: null` on our own forms
}
ALERTS: Final = {  # the login form's alerts: fixed texts, never anything the client sent
    "failed": "工号或密码错误。",
    "blocked": "尝试次数过多，请一分钟后再试。",
    "elsewhere": "该工号已在别处登录（终端坐席），请先在那里退出。",
    "board": "值班长看板需要值班长账号登录。",
    "busy": "登录的人太多，请稍后再试。",
    "throttled": "此地址登录过于频繁，请稍后再试。",
    "full": "同时登录的会话已满，请稍后再试。",
}
LOGIN_ANSWERS: Final = {  # a refused or failed login: the form's alert and the status
    Verdict.FAILED: ("failed", 401),
    Verdict.LOCKED: ("blocked", 429),
    Verdict.THROTTLED: ("throttled", 429),
    Verdict.BUSY: ("busy", 503),
}
HISTORY_LINES: Final = 50
MAX_PAGES_PER_AGENT: Final = 10  # open console pages (WebSockets) of one agent
MAX_BOARDS: Final = 500  # open boards, all supervisors together


class WebHub(Protocol):
    """What the admin port uses of the server (app/server.py's Hub provides it)."""

    settings: Settings
    desk: Desk
    graph: Graph  # the current menu (its titles, for the console)
    logins: LoginGate
    records: Recorder | None
    proxy_from: frozenset[str]
    tasks: set[asyncio.Task[None]]

    def refuse(self, peer: str, reason: str, quiet: bool = False) -> None: ...


class WebSite:
    """The aiohttp application of the admin port, and what it serves."""

    def __init__(self, hub: WebHub, ready: Callable[[], bool], metrics: Callable[[], bytes]) -> None:
        settings = hub.settings
        self.hub = hub
        self.ready = ready
        self.metrics = metrics
        secret = settings.secret.get_secret_value() if settings.secret is not None else None
        self.sessions = Sessions(load_secret(secret, settings.data), settings.session_hours * 3600)
        self.live = Live(hub)
        self.files = {p.name: p.read_bytes() for p in STATIC.iterdir() if p.suffix in TYPES}
        self.port = 0
        self.names = doors.Names(settings.host, settings.allowed_hosts)
        self.doors = doors.Doors(hub, settings.max_http_connections, hub.proxy_from)
        app = web.Application(
            client_max_size=64 * 1024, middlewares=[doors.middleware(self.names, hub.proxy_from, hub)]
        )
        app.on_response_prepare.append(self._headers)
        app.add_routes(
            [
                web.get("/healthz", self.healthz),
                web.get("/readyz", self.readyz),
                web.get("/metrics", self.get_metrics),
                web.get("/", self.console),
                web.get("/board", self.board),
                web.post("/login", self.login),
                web.post("/logout", self.logout),
                web.get("/ws", self.websocket),
                web.get("/static/{name}", self.static),
                web.get("/api/tickets", self.tickets),
                web.get("/api/tickets/{id}", self.ticket),
                web.post("/api/tickets/{id}/close", self.close_ticket),
            ]
        )
        self.runner = web.AppRunner(
            app,
            access_log=None,
            shutdown_timeout=2.0,
            keepalive_timeout=doors.KEEPALIVE,
            logger=doors.ErrorLog(hub),
        )

    async def start(self, host: str, port: int) -> None:
        await self.runner.setup()
        await doors.DoorSite(self.runner, host, port, self.doors).start()
        self.port = int(self.runner.addresses[0][1])  # the port actually bound (0 picks one)
        self.live.start()

    async def close_pages(self) -> None:
        """Every page hears the shutdown and every browser agent is logged out."""
        await self.live.close()

    async def close(self) -> None:
        await self.runner.cleanup()

    # ---- every answer --------------------------------------------------------------------------

    async def _headers(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(HEADERS)
        response.headers["Server"] = "hotline"  # not the library and its version
        if "Cache-Control" not in response.headers:
            response.headers["Cache-Control"] = "no-store"

    def _session(self, request: web.Request) -> WebSession | None:
        """The request's login, if it is valid and desk.yaml still grants its agent what it did then
        (the same password, role and queues)."""
        session = self.sessions.get(request.cookies.get(COOKIE), time.time())
        if session is not None and session.grant != self._grant(session.agent_id):
            self.sessions.drop_agent(session.agent_id)  # removed or changed by a reload
            web_agent = self.live.agents.get(session.agent_id)
            if web_agent is not None:
                web_agent.emit(Info("logged out: your account was changed in desk.yaml"))
                web_agent.log_out("account_changed")
            return None
        return session

    def _grant(self, agent_id: str) -> str | None:
        model = self.hub.desk.config.agents.get(agent_id)
        return None if model is None else grant(model.password_hash, model.role, tuple(model.queues))

    def same_origin(self, request: web.Request) -> bool:
        return doors.same_origin(request, self.names)

    def _page(self, name: str) -> web.Response:
        return web.Response(body=self.files[name], content_type="text/html", charset="utf-8")

    def _login_page(self, next_page: str = "/", alert: str = "", status: int = 200) -> web.Response:
        html = self.files["login.html"].decode()
        box = f'<div class="alert" role="alert">{ALERTS[alert]}</div>' if alert else ""
        html = html.replace("<!--ALERT-->", box).replace('value="/"', f'value="{next_page}"')
        return web.Response(text=html, content_type="text/html", status=status)

    # ---- health and metrics (as before: plain text) --------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        ok = self.ready()
        return web.Response(text="ready\n" if ok else "not ready\n", status=200 if ok else 503)

    async def get_metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.metrics(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
        )

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = self.files.get(name)
        if body is None or name.endswith(".html"):
            raise web.HTTPNotFound()
        kind = TYPES[Path(name).suffix]
        return web.Response(
            body=body, content_type=kind, charset="utf-8", headers={"Cache-Control": "no-cache"}
        )

    # ---- pages, login, logout ------------------------------------------------------------------

    async def console(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        if session is None:
            return self._login_page("/")
        if session.role == "supervisor":
            raise web.HTTPSeeOther("/board")
        return self._page("console.html")

    async def board(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        if session is None or session.role != "supervisor":
            return self._login_page("/board", "board" if session is not None else "")
        return self._page("board.html")

    async def login(self, request: web.Request) -> web.StreamResponse:
        if not self.same_origin(request):
            raise web.HTTPForbidden(text="cross-site request refused\n")
        form = await request.post()
        agent_id, password = str(form.get("id", "")).strip(), str(form.get("password", ""))
        next_page = "/board" if form.get("next") == "/board" else "/"
        hub = self.hub
        address = request.remote or "?"  # the client's, behind a trusted proxy
        verdict = await hub.logins.check(hub.desk.config.agents, address, agent_id, password, "web")
        if verdict is not Verdict.OK:
            alert, status = LOGIN_ANSWERS[verdict]
            return self._login_page(next_page, alert, status)
        model = hub.desk.config.agents[agent_id]
        granted = grant(model.password_hash, model.role, tuple(model.queues))
        if model.role == "agent" and self._desk_agent(agent_id) is None:
            return self._login_page(next_page, "elsewhere", 409)
        made = self.sessions.create(agent_id, model.role, time.time(), granted)
        if made is None:
            return self._login_page(next_page, "full", 503)
        cookie, _ = made
        log.info("web_login", agent=agent_id, role=model.role, peer=address)
        response = web.HTTPSeeOther("/board" if model.role == "supervisor" else "/")
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=int(self.sessions.lifetime),
            httponly=True,
            samesite="Strict",
            path="/",
            secure=request.secure,  # HTTPS, or X-Forwarded-Proto: https from a trusted proxy
        )
        raise response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        if not self.same_origin(request):
            raise web.HTTPForbidden(text="cross-site request refused\n")
        session = self._session(request)
        response = web.HTTPSeeOther("/board" if session is not None and session.role == "supervisor" else "/")
        if session is not None:
            web_agent = self.live.agents.get(session.agent_id)
            if session.role == "agent" and web_agent is not None:
                web_agent.emit(Info("logged out"))
                web_agent.log_out("logout")
                self.sessions.drop_agent(session.agent_id)
            self.sessions.drop(session)
        response.del_cookie(COOKIE, path="/")
        raise response

    def _desk_agent(self, agent_id: str) -> WebAgent | None:
        """The agent's browser link, logging them in to the desk if needed (None: logged in on the
        TCP desk). Callers have just checked that the agent is in desk.yaml."""
        web_agent = self.live.agents.get(agent_id)
        if web_agent is not None and web_agent.agent is not None:
            return web_agent
        web_agent = WebAgent(self.live, agent_id)
        try:
            web_agent.agent = self.hub.desk.login(agent_id, web_agent, time.time())
        except DeskError:
            return None
        self.live.agents[agent_id] = web_agent
        web_agent.wait_for_page()  # none open yet
        return web_agent

    # ---- the WebSocket -------------------------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        if not self.same_origin(request):
            raise web.HTTPForbidden(text="cross-site WebSocket refused\n")
        session = self._session(request)
        if session is None:
            raise web.HTTPUnauthorized(text="log in first\n")
        web_agent = None
        if session.role == "agent":
            web_agent = self._desk_agent(session.agent_id)
            if web_agent is None:
                self.sessions.drop(session)
                raise web.HTTPConflict(text="logged in elsewhere\n")
            if len(web_agent.sockets) >= MAX_PAGES_PER_AGENT:
                raise web.HTTPTooManyRequests(text="too many pages open for this agent\n")
        elif len(self.live.boards) >= MAX_BOARDS:
            raise web.HTTPTooManyRequests(text="too many boards open\n")
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=16 * 1024)
        await ws.prepare(request)
        sock = Socket(ws, request.remote or "?")
        try:
            if web_agent is None:
                await self._board_socket(ws, sock)
            else:
                await self._agent_socket(ws, sock, web_agent)
        finally:
            sock.close()
            try:
                await asyncio.wait_for(sock.task, 5.0)
            except (TimeoutError, asyncio.CancelledError):
                sock.task.cancel()
        return ws

    async def _board_socket(self, ws: web.WebSocketResponse, sock: Socket) -> None:
        live = self.live
        live.boards.add(sock)
        try:
            sock.send(live.board_text(time.time()))
            async for _ in ws:  # a board only listens
                pass
        finally:
            live.boards.discard(sock)

    async def _agent_socket(self, ws: web.WebSocketResponse, sock: Socket, web_agent: WebAgent) -> None:
        now = time.time()
        web_agent.attach(sock)
        sock.send(dumps(web_agent.hello(now)))
        web_agent.queues_sent = ""
        web_agent.queue_update(now)
        rate = Rate(self.hub.settings.max_lines_per_second, 2.0 * self.hub.settings.max_lines_per_second)
        due = now
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                now = time.time()
                if due - now > rate.tolerance:
                    sock.tell(Error("too fast, message ignored"))
                    continue
                due = max(due, now) + rate.interval
                self._command(web_agent, sock, msg.data, now)
        finally:
            web_agent.detach(sock)

    def _command(self, web_agent: WebAgent, sock: Socket, data: str, now: float) -> None:
        """One JSON command from a page (app/desk/commands.py's `parse_json`)."""
        command = commands.parse_json(data)
        if command is None:
            return
        agent = web_agent.agent
        if type(command) is commands.Invalid:
            sock.tell(Error(command.error))
            return
        if agent is None:
            sock.tell(Error("not logged in"))
            return
        if type(command) is commands.History:
            hub = self.hub
            transcripts = hub.records if hub.settings.transcripts else None
            send_history(transcripts, agent, HISTORY_LINES, sock.tell, hub.tasks)
        elif isinstance(command, commands.DESK_COMMANDS):
            commands.run(self.hub.desk, agent, command, now, web_agent.emit)

    # ---- tickets (the JSON of `hotline tickets ... --json`) ------------------------------------

    def _api_session(self, request: web.Request) -> tuple[WebSession, list[str] | None]:
        """The session and the queues it may see (None: all, for a supervisor)."""
        session = self._session(request)
        if session is None:
            raise web.HTTPUnauthorized(text='{"error":"log in first"}', content_type="application/json")
        queues = self.hub.desk.config.agents[session.agent_id].queues
        return session, None if session.role == "supervisor" else list(queues)

    def _records(self) -> Any:
        if self.hub.records is None:
            raise web.HTTPServiceUnavailable(text='{"error":"no records"}', content_type="application/json")
        return self.hub.records

    async def tickets(self, request: web.Request) -> web.Response:
        _, queues = self._api_session(request)
        status = request.query.get("status", "open")
        if status not in ("open", "closed", "all"):
            raise web.HTTPBadRequest(
                text='{"error":"status: open, closed or all"}', content_type="application/json"
            )
        limit = request.query.get("limit", "50")
        if not limit.isdigit() or not 1 <= int(limit) <= 500:
            raise web.HTTPBadRequest(text='{"error":"limit: 1 to 500"}', content_type="application/json")
        found = await self._records().tickets(None if status == "all" else status, int(limit), queues)
        return web.json_response(found, dumps=dumps)

    async def _visible_ticket(self, request: web.Request) -> dict[str, Any]:
        _, queues = self._api_session(request)
        ticket: dict[str, Any] | None = await self._records().ticket(request.match_info["id"])
        if ticket is None or (queues is not None and ticket["queue"] not in (None, *queues)):
            raise web.HTTPNotFound(text='{"error":"no such ticket"}', content_type="application/json")
        return ticket

    async def ticket(self, request: web.Request) -> web.Response:
        return web.json_response(await self._visible_ticket(request), dumps=dumps)

    async def close_ticket(self, request: web.Request) -> web.Response:
        if not self.same_origin(request):
            raise web.HTTPForbidden(
                text='{"error":"cross-site request refused"}', content_type="application/json"
            )
        ticket = await self._visible_ticket(request)
        try:
            body = await request.json()
        except ValueError:
            body = {}
        note = commands.page_text(body.get("note") if isinstance(body, dict) else None) or None
        session, _ = self._api_session(request)
        await self._records().close_ticket(ticket["id"], note)
        log.info("ticket_closed", ticket=ticket["id"], agent=session.agent_id)
        return web.json_response(await self._records().ticket(ticket["id"]), dumps=dumps)
