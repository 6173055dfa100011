"""The admin port over real HTTP and WebSocket (aiohttp's client), with real TCP callers and agents:
login, cookies, Origin checks, security headers, the JSON desk protocol, the board, tickets."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from app.server import Server
from tests.conftest import Caller, start_server, wait_until
from tests.web.conftest import PASSWORD, web_config

WELCOME = "欢迎致电中国移动 10086"


class Web:
    """A browser-like HTTP client that keeps its cookie by hand (aiohttp's jar ignores 127.0.0.1)."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        self.cookie = ""
        self.sockets: list[aiohttp.ClientWebSocketResponse] = []

    def headers(self, origin: str | None = "same") -> dict[str, str]:
        out = {"Cookie": f"hotline_session={self.cookie}"} if self.cookie else {}
        if origin is not None:
            out["Origin"] = self.base if origin == "same" else origin
        return out

    async def login(
        self, agent_id: str, password: str = PASSWORD, origin: str | None = "same"
    ) -> aiohttp.ClientResponse:
        r = await self.http.post(
            self.base + "/login",
            data={"id": agent_id, "password": password, "next": "/"},
            headers=self.headers(origin),
            allow_redirects=False,
        )
        await r.read()
        if r.status == 303:
            self.cookie = r.cookies["hotline_session"].value
        return r

    async def get(self, path: str) -> tuple[int, str, aiohttp.ClientResponse]:
        r = await self.http.get(self.base + path, headers=self.headers(None), allow_redirects=False)
        return r.status, await r.text(), r

    async def ws(self, origin: str | None = "same") -> aiohttp.ClientWebSocketResponse:
        ws = await self.http.ws_connect(self.base + "/ws", headers=self.headers(origin))
        self.sockets.append(ws)
        return ws

    async def close(self) -> None:
        for ws in self.sockets:
            await ws.close()
        await self.http.close()


async def recv(
    ws: aiohttp.ClientWebSocketResponse, kind: str, timeout: float = 5.0, **fields: Any
) -> dict[str, Any]:
    """The next message of this type (and these fields), skipping others."""

    async def wait() -> dict[str, Any]:
        while True:
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.TEXT, f"socket ended: {msg}"
            data: dict[str, Any] = json.loads(msg.data)
            if data["type"] == kind and all(data.get(k) == v for k, v in fields.items()):
                return data

    return await asyncio.wait_for(wait(), timeout)


@pytest_asyncio.fixture
async def site(web_folder: Path) -> AsyncIterator[Server]:
    srv = await start_server(web_folder, agent_reconnect_grace=30.0)
    yield srv
    await srv.shutdown()


@pytest_asyncio.fixture
async def web(site: Server) -> AsyncIterator[Any]:
    clients: list[Web] = []
    callers: list[Caller] = []

    class Factory:
        def browser(self) -> Web:
            clients.append(Web(site.admin_port))
            return clients[-1]

        async def caller(self) -> Caller:
            callers.append(await Caller.dial(site.tcp_port))
            await callers[-1].expect(WELCOME)
            return callers[-1]

    yield Factory()
    for c in callers:
        c.close()
    for w in clients:
        await w.close()


async def test_health_ready_and_metrics_stay_plain_text(site: Server, web: Any) -> None:
    b = web.browser()
    assert (await b.get("/healthz"))[:2] == (200, "ok\n")
    assert (await b.get("/readyz"))[:2] == (200, "ready\n")
    status, text, r = await b.get("/metrics")
    assert status == 200 and "hotline_sessions_active 0" in text
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert (await b.get("/nope"))[0] == 404


async def test_every_page_forbids_inline_script_and_framing(site: Server, web: Any) -> None:
    b = web.browser()
    for path in ("/", "/board", "/healthz", "/static/console.js"):
        _, _, r = await b.get(path)
        csp = r.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert r.headers["X-Frame-Options"] == "DENY"
        assert "aiohttp" not in r.headers.get("Server", "")
    status, html, _ = await b.get("/")
    assert status == 200 and "工号" in html and "密码" in html and "登录" in html
    assert "<script>" not in html and "onclick" not in html
    assert (await b.get("/static/../site.py"))[0] == 404
    assert (await b.get("/static/console.html"))[0] == 404  # pages only through their routes


async def test_login_sets_a_strict_httponly_signed_cookie_and_shows_the_console(
    site: Server, web: Any
) -> None:
    b = web.browser()
    r = await b.login("1001")
    assert r.status == 303 and r.headers["Location"] == "/"
    set_cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie and "Max-Age=43200" in set_cookie
    status, html, _ = await b.get("/")
    assert status == 200 and 'role="log"' in html and "结束通话" in html
    assert "1001" in site.hub.desk.agents  # logged in to the desk, on break until 就绪
    assert site.hub.desk.agents["1001"].status == "on_break"
    # a cookie changed by one character is nobody's
    good = b.cookie
    b.cookie = good[:-1] + ("A" if good[-1] != "A" else "B")
    status, html, _ = await b.get("/")
    assert "登录" in html and 'role="log"' not in html


async def test_a_wrong_password_is_an_alert_and_counts_with_the_terminal_desk(site: Server, web: Any) -> None:
    b = web.browser()
    r = await b.login("1001", "wrong")
    html = await r.text()
    assert r.status == 401 and 'role="alert"' in html and "工号或密码错误" in html
    assert "wrong" not in html
    r = await b.login("nobody", "wrong")
    assert r.status == 401  # the same answer for an unknown id
    for _ in range(2):
        assert (await b.login("1001", "wrong")).status == 401
    # the 5th failure from this address, on the terminal desk: the same guard
    reader, writer = await asyncio.open_connection("127.0.0.1", site.agent_port)
    writer.write(b"/login 1001 wrong\r\n")
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert b"ERR too many attempts" in data
    r = await b.login("1001")  # even the right password, for the rest of the minute
    assert r.status == 429 and "尝试次数过多" in await r.text()
    assert site.hub.logins.failed_total == 5


async def test_posts_and_upgrades_need_this_sites_origin_and_a_session(site: Server, web: Any) -> None:
    b = web.browser()
    assert (await b.login("1001", origin=None)).status == 403
    assert (await b.login("1001", origin="http://evil.example")).status == 403
    assert "1001" not in site.hub.desk.agents
    with pytest.raises(aiohttp.WSServerHandshakeError) as no_session:
        await b.ws()
    assert no_session.value.status == 401
    assert (await b.login("1001")).status == 303
    for origin, status in ((None, 403), ("http://evil.example", 403), ("null", 403)):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await b.ws(origin)
        assert refused.value.status == status
    ws = await b.ws()
    assert (await recv(ws, "hello"))["agent"] == {"id": "1001", "name": "小王", "queues": ["default"]}


async def test_an_agent_answers_a_real_caller_from_the_browser(site: Server, web: Any) -> None:
    b = web.browser()
    await b.login("1001")
    ws = await b.ws()
    hello = await recv(ws, "hello")
    assert (hello["status"], hello["state"], hello["offer"], hello["call"]) == (
        "on_break",
        "idle",
        None,
        None,
    )
    assert hello["canned"] == {"hi": "您好，请问有什么可以帮您？"} and hello["dispositions"] == [
        "已解决",
        "需回访",
    ]
    titles = hello["titles"]  # what the page shows instead of internal names
    assert titles["queues"] == {"default": "人工服务"} and titles["nodes"]["main"] == "主菜单"
    assert (titles["vars"]["phone"], titles["vars"]["account.balance"]) == ("手机号码", "账户余额")
    assert hello["last_call"] is None
    queues = await recv(ws, "queues")
    assert queues["queues"][0]["queue"] == "default" and queues["queues"][0]["waiting"] == 0
    await ws.send_json({"cmd": "ready"})
    assert (await recv(ws, "ok"))["what"] == "ready"
    await recv(ws, "status", status="available", state="idle")

    caller = await web.caller()
    caller.send("1", "13800138000")  # a phone number the menu keeps as a sensitive variable
    await caller.expect("余额")
    caller.send("0")
    await recv(ws, "status", state="offered")  # the state first, then what rings
    offer = await recv(ws, "offer")
    context = dict(offer["context"])
    assert offer["queue"] == "default" and context["path"].startswith("main>")
    assert "13800138000" not in json.dumps(offer)  # masked, as on the terminal desk
    await ws.send_json({"cmd": "history"})
    history = await recv(ws, "history", direction="caller")
    assert history["call_id"] == offer["call_id"]

    await ws.send_json({"cmd": "accept"})
    assert (await recv(ws, "connected"))["call_id"] == offer["call_id"]
    await caller.expect("工号 1001 为您服务")
    caller.send("我想查一下账单")
    assert (await recv(ws, "caller"))["text"] == "我想查一下账单"
    await ws.send_json({"cmd": "say", "text": "好的，马上为您查询\n<b>"})
    await caller.expect("客服 1001:好的，马上为您查询<b>")
    await ws.send_json({"cmd": "say", "text": ":hi"})
    await caller.expect("客服 1001:您好，请问有什么可以帮您？")
    await ws.send_json({"cmd": "end", "disposition": "已解决"})
    assert (await recv(ws, "ended"))["by"] == "agent"
    await caller.expect("本次服务已结束")
    await caller.expect("请对本次服务评价")  # the survey, then back in the menu
    caller.send("1")
    await caller.expect(WELCOME)
    await recv(ws, "status", state="idle")
    await ws.send_json({"cmd": "disposition", "text": "需回访"})  # after the call: replaces 已解决
    assert (await recv(ws, "ok"))["what"] == "disposition"
    await ws.send_json({"cmd": "disposition", "text": ""})
    assert (await recv(ws, "error"))["text"] == "usage: /disposition TEXT"


async def test_pages_per_agent_are_limited(site: Server, web: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import app.web.site as site_module

    monkeypatch.setattr(site_module, "MAX_PAGES_PER_AGENT", 2)
    b = web.browser()
    await b.login("1001")
    for _ in range(2):
        await recv(await b.ws(), "hello")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await b.ws()
    assert refused.value.status == 429


async def test_bad_messages_get_an_error_and_the_socket_lives(site: Server, web: Any) -> None:
    b = web.browser()
    await b.login("1001")
    ws = await b.ws()
    await recv(ws, "hello")
    for bad in ("not json", "[1,2]", '{"cmd": 5}', '{"cmd": "shutdown"}'):
        await ws.send_str(bad)
        assert (await recv(ws, "error"))["text"]
    await ws.send_json({"cmd": "accept"})
    assert (await recv(ws, "error"))["text"] == "no offer to accept"
    await ws.send_json({"cmd": "ready"})
    assert (await recv(ws, "ok"))["what"] == "ready"


async def test_one_agent_cannot_be_logged_in_on_the_terminal_and_in_a_browser(site: Server, web: Any) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", site.agent_port)
    writer.write(f"/login 1002 {PASSWORD}\r\n".encode())
    buf = b""
    while b"OK login" not in buf:
        buf += await asyncio.wait_for(reader.read(4096), 10)
    b = web.browser()
    r = await b.login("1002")
    assert r.status == 409 and "已在别处登录" in await r.text()
    writer.close()


async def test_a_reload_keeps_the_call_and_a_closed_page_logs_out_after_the_grace(
    tmp_path: Path, password_hash: str
) -> None:
    srv = await start_server(web_config(tmp_path / "c", password_hash), agent_reconnect_grace=1.0)
    b = Web(srv.admin_port)
    caller = await Caller.dial(srv.tcp_port)
    try:
        await b.login("1001")
        ws = await b.ws()
        await recv(ws, "hello")
        await ws.send_json({"cmd": "ready"})
        await recv(ws, "status", status="available")
        await caller.expect(WELCOME)
        caller.send("0")
        offer = await recv(ws, "offer")
        await ws.send_json({"cmd": "accept"})
        await recv(ws, "connected")
        await ws.close()  # the page reloads
        ws = await b.ws()
        hello = await recv(ws, "hello")
        assert (hello["state"], hello["call"]) == ("in_call", offer["call_id"])
        caller.send("还在吗")
        assert (await recv(ws, "caller"))["text"] == "还在吗"
        await ws.close()  # the page is closed for good
        assert await wait_until(lambda: "1001" not in srv.hub.desk.agents, 5)
        await caller.expect("本次服务已结束")  # the caller is not left talking to nobody
    finally:
        caller.close()
        await b.close()
        await srv.shutdown()


async def test_logout_ends_the_session_and_the_desk_login(site: Server, web: Any) -> None:
    b = web.browser()
    await b.login("1001")
    ws = await b.ws()
    await recv(ws, "hello")
    r = await b.http.post(b.base + "/logout", headers=b.headers(), allow_redirects=False)
    assert r.status == 303 and 'hotline_session=""' in r.headers["Set-Cookie"]
    assert "1001" not in site.hub.desk.agents
    _, html, _ = await b.get("/")  # the old cookie is worth nothing now
    assert 'role="log"' not in html and "登录" in html
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await b.ws()


async def test_the_board_is_for_supervisors_who_take_no_calls(site: Server, web: Any) -> None:
    agent = web.browser()
    await agent.login("1001")
    status, html, _ = await agent.get("/board")
    assert status == 200 and 'role="alert"' in html and "值班长" in html  # the login form
    boss = web.browser()
    r = await boss.login("9001")
    assert r.headers["Location"] == "/board"
    status, html, _ = await boss.get("/board")
    assert "最长等待" in html and "今日放弃" in html and "服务水平" in html
    status, _, r = await boss.get("/")
    assert status == 303 and r.headers["Location"] == "/board"
    assert "9001" not in site.hub.desk.agents and site.hub.desk.logged_in("default") == 1
    board = await boss.ws()
    snap = await recv(board, "board")
    _, metrics, _ = await boss.get("/metrics")
    assert re.search(r'^hotline_web_pages\{page="board"\} 1\.0$', metrics, re.M)
    assert [q["title"] for q in snap["queues"]] == ["人工服务", "贵宾服务"]
    assert [(a["id"], a["status"]) for a in snap["agents"]] == [("1001", "on_break")]
    caller = await web.caller()
    caller.send("0")
    await recv(board, "board", timeout=5)
    snap = await recv(board, "board", timeout=5)
    assert snap["queues"][0]["waiting"] == 1
    caller.send("1")  # leaves the queue for a message: abandoned
    await caller.expect("请留言")
    assert await wait_until(lambda: site.hub.desk.queues["default"].today.abandoned == 1)
    snap = await recv(board, "board", timeout=5)
    assert (snap["queues"][0]["waiting"], snap["queues"][0]["abandoned"]) == (0, 1)
    # gone within the queue's short_abandon (5 s): counted, but left out of the service level
    assert site.hub.desk.queues["default"].today.shorts == 1
    assert snap["queues"][0]["service_level"] is None


async def test_a_busy_queue_is_coalesced_into_one_board_message_a_second(site: Server, web: Any) -> None:
    boss = web.browser()
    await boss.login("9001")
    agent = web.browser()
    await agent.login("1001")
    boards = [await boss.ws() for _ in range(3)]
    for board in boards:
        await recv(board, "board")
    built = site.web.live.snapshots
    callers = [await web.caller() for _ in range(30)]
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(3):  # 180 queue events in a moment
        for c in callers:
            c.send("0")
        assert await wait_until(lambda: len(site.hub.desk.calls) == 30)
        for c in callers:
            c.send("*")  # back to the menu: abandoned
        assert await wait_until(lambda: not site.hub.desk.calls)
    counts = [0, 0, 0]

    async def until_all_abandoned(i: int) -> None:
        while True:
            snap = await recv(boards[i], "board", timeout=3)
            counts[i] += 1
            if snap["queues"][0]["abandoned"] == 90:
                return

    await asyncio.gather(*(until_all_abandoned(i) for i in range(3)))
    seconds = loop.time() - started
    # one snapshot a second built for all three boards, each board sent at most one a second
    assert site.web.live.snapshots - built <= seconds + 1
    assert all(n <= seconds + 1 for n in counts), (counts, seconds)


async def test_tickets_api_shows_an_agent_their_queues_tickets_and_closes_them(
    site: Server, web: Any
) -> None:
    caller = await web.caller()
    caller.send("0")  # no agent logged in: on_busy leaves a message, a ticket of queue default
    await caller.expect("请留言")
    caller.send("宽带坏了")
    ticket_id = re.search(r"T\d{8}-\d{4}", await caller.expect("感谢您的耐心"))
    assert ticket_id is not None
    tid = ticket_id.group(0)
    anonymous = web.browser()
    r = await anonymous.http.get(anonymous.base + "/api/tickets")
    assert r.status == 401
    vip = web.browser()
    await vip.login("2001")
    r = await vip.http.get(vip.base + "/api/tickets", headers=vip.headers(None))
    assert await r.json() == []  # not their queue
    r = await vip.http.get(vip.base + f"/api/tickets/{tid}", headers=vip.headers(None))
    assert r.status == 404
    b = web.browser()
    await b.login("1001")
    r = await b.http.get(b.base + "/api/tickets", headers=b.headers(None))
    (ticket,) = await r.json()
    assert (ticket["id"], ticket["message"], ticket["status"], ticket["queue"]) == (
        tid,
        "宽带坏了",
        "open",
        "default",
    )
    r = await b.http.post(
        b.base + f"/api/tickets/{tid}/close", json={"note": "已回电"}, headers=b.headers(None)
    )
    assert r.status == 403  # no Origin: refused
    r = await b.http.post(b.base + f"/api/tickets/{tid}/close", json={"note": "已回电"}, headers=b.headers())
    closed = await r.json()
    assert (closed["status"], closed["note"]) == ("closed", "已回电")
    r = await b.http.get(b.base + "/api/tickets?status=open", headers=b.headers(None))
    assert await r.json() == []


async def test_an_account_removed_from_desk_yaml_loses_its_pages(
    site: Server, web: Any, web_folder: Path, password_hash: str
) -> None:
    boss = web.browser()
    await boss.login("9001")
    assert "最长等待" in (await boss.get("/board"))[1]
    desk = (web_folder / "desk.yaml").read_text(encoding="utf-8")
    kept = "\n".join(line for line in desk.splitlines() if '"9001"' not in line)
    (web_folder / "desk.yaml").write_text(kept, encoding="utf-8")
    assert site.reload("test")
    status, html, _ = await boss.get("/board")
    assert status == 200 and "最长等待" not in html and "登录" in html
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await boss.ws()
    assert refused.value.status == 401
