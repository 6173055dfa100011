"""The admin port as a door (README.md, "The doors"), tried as an attacker on the network would, each
client from its own address in 127.0.0.0/8: slow headers, idle keep-alives, connection caps, names it
does not serve (DNS rebinding), forwarded headers from trusted and untrusted peers, sessions after a
password change, malformed requests in the log."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar

import aiohttp
import pytest
import pytest_asyncio

from app.desk.passwords import hash_password
from app.server import Server
from app.web import auth, doors
from tests.conftest import ServerProcess, start_server
from tests.helpers import CONFIG
from tests.web.conftest import DESK, PASSWORD


class Raw:
    """A raw TCP client of the admin port (asyncio streams: the server runs in this loop)."""

    opened: ClassVar[list[Raw]] = []

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        Raw.opened.append(self)

    @classmethod
    async def dial(cls, port: int, source: str = "127.0.0.1") -> Raw:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        return cls(reader, writer)

    async def rest(self, timeout: float = 10.0) -> bytes:
        """Everything until the server closes the connection."""
        return await asyncio.wait_for(self.reader.read(), timeout)

    async def answer(self, timeout: float = 10.0) -> bytes:
        """One response's head and (Content-Length) body."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        length = next(
            (int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")),
            0,
        )
        return head + await asyncio.wait_for(self.reader.readexactly(length), timeout)


@pytest_asyncio.fixture(autouse=True)
async def close_raw() -> AsyncIterator[None]:
    yield
    for r in Raw.opened:
        r.writer.close()
    for r in Raw.opened:
        with contextlib.suppress(OSError):
            await r.writer.wait_closed()
    Raw.opened.clear()


@pytest_asyncio.fixture
async def site(web_folder: Path) -> AsyncIterator[Server]:
    srv = await start_server(web_folder, reload_watch=False)
    yield srv
    await srv.shutdown()


def _client(source: str = "127.0.0.1") -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(local_addr=(source, 0)), cookie_jar=aiohttp.DummyCookieJar()
    )


async def _login(
    http: aiohttp.ClientSession, port: int, agent_id: str = "1001", password: str = PASSWORD, **headers: str
) -> aiohttp.ClientResponse:
    base = f"http://127.0.0.1:{port}"
    r = await http.post(
        base + "/login",
        data={"id": agent_id, "password": password},
        headers={"Origin": base, **headers},
        allow_redirects=False,
    )
    await r.read()
    return r


async def test_headers_must_come_in_time_and_idle_keep_alives_end(
    web_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(doors, "HEADER_TIMEOUT", 0.5)
    monkeypatch.setattr(doors, "KEEPALIVE", 1.5)
    server = await start_server(web_folder, reload_watch=False)
    try:
        port = server.admin_port
        silent = await Raw.dial(port)  # connects and says nothing
        slow = await Raw.dial(port)  # slowloris: a header byte now and then, never the end
        slow.writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ")
        started = time.monotonic()
        answer = b""
        for _ in range(50):  # a byte every 0.1 s until the server answers
            with contextlib.suppress(TimeoutError):
                answer = await asyncio.wait_for(slow.reader.read(100), 0.1)
            if answer:
                break
            slow.writer.write(b"a")
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert (await silent.rest()).startswith(b"HTTP/1.1 408 ")
        assert time.monotonic() - started < 5
        # a keep-alive connection: a whole request is answered, then the next one's headers are timed
        kept = await Raw.dial(port)
        kept.writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert (await kept.answer()).startswith(b"HTTP/1.1 200 ")
        kept.writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # ... and never the blank line
        assert (await kept.rest()).startswith(b"HTTP/1.1 408 ")
        idle = await Raw.dial(port)  # answered, then idle: closed after the keep-alive timeout
        idle.writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert (await idle.answer()).startswith(b"HTTP/1.1 200 ")
        assert await idle.rest(timeout=10) == b""
        assert server.hub.refusals["http_header_timeout"] == 3
        async with _client() as http:  # a login (a POST with a body) is not cut off
            assert (await _login(http, port)).status == 303
    finally:
        await server.shutdown()


async def test_connections_are_capped_per_address_and_in_all(web_folder: Path) -> None:
    server = await start_server(web_folder, reload_watch=False, max_http_connections=80)
    try:
        port = server.admin_port
        held = [await Raw.dial(port, "127.0.3.1") for _ in range(doors.PER_ADDRESS)]
        extra = await Raw.dial(port, "127.0.3.1")
        assert await extra.rest(timeout=5) == b""  # the 65th from one address: closed at once
        async with _client("127.0.3.2") as http, http.get(f"http://127.0.0.1:{port}/healthz") as r:
            assert r.status == 200  # another address is served
        more = [await Raw.dial(port, f"127.0.4.{i}") for i in range(80 - doors.PER_ADDRESS)]
        late = await Raw.dial(port, "127.0.5.1")
        assert await late.rest(timeout=5) == b""  # the port holds no more in all
        held[0].writer.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while server.web.doors.open >= 80:  # the server notices the close
            assert loop.time() < deadline
            await asyncio.sleep(0.02)
        async with _client("127.0.5.1") as http, http.get(f"http://127.0.0.1:{port}/healthz") as r:
            assert r.status == 200
        assert server.hub.refusals["http_connections_per_address"] == 1
        assert server.hub.refusals["http_connections"] == 1
        assert len(more) == 80 - doors.PER_ADDRESS
    finally:
        await server.shutdown()


async def test_a_name_the_port_does_not_serve_gets_421_and_no_session(site: Server) -> None:
    port = site.admin_port
    evil = "attacker.example"
    async with _client() as http:
        # DNS rebinding: a page of attacker.example, whose name now points at 127.0.0.1
        r = await _login(http, port, Host=f"{evil}:{port}", Origin=f"http://{evil}:{port}")
        assert r.status == 421 and "Set-Cookie" not in r.headers
        r = await _login(http, port)  # the real console
        assert r.status == 303
        cookie = f"hotline_session={r.cookies['hotline_session'].value}"
        for path in ("/", "/board", "/api/tickets", "/static/console.js", "/nothing"):
            async with http.get(
                f"http://127.0.0.1:{port}{path}", headers={"Host": evil, "Cookie": cookie}
            ) as r:
                assert r.status == 421, path
        for path in ("/healthz", "/readyz", "/metrics"):  # probes and scrapers: any name, no session
            async with http.get(f"http://127.0.0.1:{port}{path}", headers={"Host": "hotline-1:9108"}) as r:
                assert r.status == 200, path
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(
                f"http://127.0.0.1:{port}/ws",
                headers={"Host": evil, "Origin": f"http://{evil}", "Cookie": cookie},
            )
        assert refused.value.status == 421
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", "127.0.0.1", "LOCALHOST."):
            async with http.get(
                f"http://127.0.0.1:{port}/api/tickets", headers={"Host": host, "Cookie": cookie}
            ) as r:
                assert r.status == 200, host
        # a page of another origin on an allowed name cannot post or open the socket
        r = await _login(http, port, Origin=f"http://{evil}:{port}")
        assert r.status == 403
        r = await _login(http, port, Origin=f"http://localhost:{port + 1}")
        assert r.status == 403
    raw = await Raw.dial(port)  # HTTP/1.0 without Host (a health check): served
    raw.writer.write(b"GET /healthz HTTP/1.0\r\n\r\n")
    assert (await raw.rest()).startswith(b"HTTP/1.0 200 ")


async def test_allowed_hosts_adds_names(web_folder: Path) -> None:
    server = await start_server(web_folder, reload_watch=False, allowed_hosts="hotline.example.com, desk.lan")
    try:
        port = server.admin_port
        async with _client() as http:
            for host, status in (("hotline.example.com", 200), ("desk.lan:9108", 200), ("other.lan", 421)):
                async with http.get(f"http://127.0.0.1:{port}/", headers={"Host": host}) as r:
                    assert r.status == status, host
            r = await _login(http, port, Host="desk.lan", Origin="http://desk.lan")
            assert r.status == 303
    finally:
        await server.shutdown()


async def test_a_trusted_proxy_names_the_client_and_the_scheme_an_untrusted_peer_does_not(
    site: Server,
) -> None:
    port = site.admin_port
    async with _client("127.0.0.1") as proxy:  # the default HOTLINE_PROXY_FROM: loopback's own address
        r = await _login(proxy, port, **{"X-Forwarded-For": "10.1.1.1", "X-Forwarded-Proto": "https"})
        assert r.status == 303 and "Secure" in r.headers["Set-Cookie"]
        for _ in range(5):  # five guesses from one client behind the proxy ...
            r = await _login(proxy, port, password="wrong", **{"X-Forwarded-For": "spoofed, 10.1.1.2"})
        assert r.status == 429
        r = await _login(proxy, port, **{"X-Forwarded-For": "10.1.1.2"})
        assert r.status == 429  # ... lock that client out ...
        r = await _login(proxy, port, **{"X-Forwarded-For": "10.1.1.3"})
        assert r.status == 303  # ... and nobody else behind it
    async with _client("127.0.0.9") as stranger:  # not a proxy of ours: its headers are not believed
        r = await _login(stranger, port, **{"X-Forwarded-For": "10.1.1.3", "X-Forwarded-Proto": "https"})
        assert r.status == 303 and "Secure" not in r.headers["Set-Cookie"]
        for i in range(5):
            r = await _login(stranger, port, password="wrong", **{"X-Forwarded-For": f"10.2.2.{i}"})
        assert r.status == 429  # counted against 127.0.0.9 itself, whatever it claims
        r = await _login(stranger, port, **{"X-Forwarded-For": "10.9.9.9"})
        assert r.status == 429


async def test_a_session_ends_when_desk_yaml_changes_the_agents_password_role_or_queues(
    site: Server, web_folder: Path, password_hash: str
) -> None:
    port = site.admin_port
    cookies: dict[str, str] = {}
    async with _client() as http:
        for agent_id in ("1001", "1002", "2001", "9001"):
            r = await _login(http, port, agent_id)
            assert r.status == 303
            cookies[agent_id] = f"hotline_session={r.cookies['hotline_session'].value}"

        async def status(agent_id: str) -> int:
            async with http.get(
                f"http://127.0.0.1:{port}/api/tickets", headers={"Cookie": cookies[agent_id]}
            ) as r:
                return r.status

        assert {a: await status(a) for a in cookies} == dict.fromkeys(cookies, 200)
        desk = DESK.format(hash=password_hash, ring="15s", wrap="0s", missed=3)
        old, new = f'id: "1001", name: 小王, password_hash: "{password_hash}"', hash_password("new-pass-456")
        desk = desk.replace(old, f'id: "1001", name: 小王, password_hash: "{new}"')
        desk = desk.replace(
            f'id: "2001", name: 小贵, password_hash: "{password_hash}", queues: [vip]',
            f'id: "2001", name: 小贵, password_hash: "{password_hash}", queues: [vip, default]',
        )
        desk = desk.replace("role: supervisor}", "role: agent}")
        (web_folder / "desk.yaml").write_text(desk, encoding="utf-8")
        assert site.reload("test"), desk
        assert {a: await status(a) for a in cookies} == {"1001": 401, "1002": 200, "2001": 401, "9001": 401}


def test_an_agent_holds_ten_sessions_and_a_full_table_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    sessions = auth.Sessions(b"x" * 32, 3600)
    now = time.time()
    made = [sessions.create("1001", "agent", now, "g") for _ in range(auth.MAX_PER_AGENT + 1)]
    cookies = [m[0] for m in made if m is not None]
    assert sessions.get(cookies[0], now) is None  # the agent's own oldest ended
    assert all(sessions.get(c, now) is not None for c in cookies[1:])
    monkeypatch.setattr(auth, "MAX_SESSIONS", len(sessions.by_token) + 1)
    assert sessions.create("1002", "agent", now, "g") is not None
    assert sessions.create("1003", "agent", now, "g") is None  # full: nobody else's session is dropped
    assert all(sessions.get(c, now) is not None for c in cookies[1:])


def test_malformed_requests_are_counted_and_logged_once_a_minute_without_their_bytes() -> None:
    proc = ServerProcess(
        [sys.executable, "-m", "app", "serve", "--config", str(CONFIG)],
        env={"HOTLINE_LOG_FORMAT": "json", "HOTLINE_RELOAD_WATCH": "false"},
    )
    secret = "S3CR3T" * 2000  # an oversized cookie header: its bytes must never reach the log
    try:
        requests = [
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: hotline_session={secret}\r\n\r\n".encode(),
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",  # TLS on the plain port
        ] * 10
        for request in requests:
            with socket.create_connection(("127.0.0.1", proc.admin_port), timeout=5) as s:
                s.sendall(request)
                answer = s.recv(65536)
                assert answer.startswith((b"HTTP/1.1 400 ", b"HTTP/1.0 400 ")), answer[:60]
        with socket.create_connection(("127.0.0.1", proc.admin_port), timeout=5) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            metrics = b""
            while chunk := s.recv(65536):
                metrics += chunk
        assert b'hotline_refused_total{reason="http_bad_request"} 30.0' in metrics
    finally:
        proc.stop()
    lines = proc.drain()
    assert not [line for line in lines if line.get("event") == "<not json>"]  # no plain tracebacks
    bad = [line for line in lines if line.get("event") == "http_bad_request"]
    assert len(bad) == 1 and bad[0]["peer"] == "127.0.0.1"
    assert "S3CR3T" not in str(lines) and "Traceback" not in str(lines)
