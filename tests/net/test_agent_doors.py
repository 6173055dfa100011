"""The agent port as a door (README.md, "The doors"), tried as an attacker on the network would, each
client from its own address in 127.0.0.0/8: connection caps, the login deadline, parallel guesses,
PROXY headers from a balancer; and a real agent still gets in."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar

import pytest
import pytest_asyncio

from app.metrics import registry_for, render
from app.net import agents
from app.server import Server
from tests.conftest import start_server
from tests.web.conftest import PASSWORD, password_hash, web_config

__all__ = ["password_hash"]  # the fixture
HELLO = b"HELLO hotline agent desk: /login ID PASSWORD\r\n"


class Agent:
    """A terminal agent's connection (asyncio streams: the server runs in this loop)."""

    opened: ClassVar[list[Agent]] = []  # closed after each test (close_agents)

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        Agent.opened.append(self)

    @classmethod
    async def dial(cls, port: int, source: str = "127.0.0.1", first: bytes = b"") -> Agent:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        if first:
            writer.write(first)
        return cls(reader, writer)

    def send(self, line: str) -> None:
        self.writer.write(line.encode() + b"\r\n")

    async def line(self, timeout: float = 10.0) -> bytes:
        return await asyncio.wait_for(self.reader.readline(), timeout)

    async def rest(self, timeout: float = 10.0) -> bytes:
        """Everything until the server closes the connection."""
        return await asyncio.wait_for(self.reader.read(), timeout)

    def close(self) -> None:
        self.writer.close()


@pytest_asyncio.fixture(autouse=True)
async def close_agents() -> AsyncIterator[None]:
    yield
    for a in Agent.opened:
        a.close()
    for a in Agent.opened:
        with contextlib.suppress(OSError):
            await a.writer.wait_closed()
    Agent.opened.clear()


@pytest_asyncio.fixture
async def desk(tmp_path: Path, password_hash: str) -> AsyncIterator[Server]:
    server = await start_server(web_config(tmp_path / "config", password_hash), reload_watch=False)
    yield server
    await server.shutdown()


async def test_ten_connections_per_address_wait_to_log_in_and_the_deadline_closes_them(
    tmp_path: Path, password_hash: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agents, "LOGIN_DEADLINE", 1.0)
    server = await start_server(web_config(tmp_path / "config", password_hash), reload_watch=False)
    try:
        port = server.agent_port
        idle = [await Agent.dial(port, "127.0.0.3") for _ in range(10)]
        for a in idle:
            assert await a.line() == HELLO
        extra = await Agent.dial(port, "127.0.0.3")
        assert await extra.rest() == b"ERR busy\r\n"  # the 11th from that address, closed
        real = await Agent.dial(port, "127.0.0.4")  # another address is not held up
        assert await real.line() == HELLO
        real.send(f"/login 1001 {PASSWORD}")
        assert (await real.line()).startswith(b"OK login 1001 ")
        for a in idle:  # nobody logged in within the deadline: told and closed
            assert await a.rest() == b"ERR login timeout\r\n"
        real.send("/queue")
        assert (await real.line()).startswith(b"QUEUE default ")  # logged in: the deadline is off
        again = await Agent.dial(port, "127.0.0.3")  # their places are free again
        assert await again.line() == HELLO
        assert server.hub.refusals["agent_connections_per_address"] == 1
        assert server.hub.refusals["agent_login_timeout"] == 10
        for a in (extra, real, again):
            a.close()
    finally:
        await server.shutdown()


async def test_past_the_port_cap_a_connection_is_closed_at_once(tmp_path: Path, password_hash: str) -> None:
    server = await start_server(
        web_config(tmp_path / "config", password_hash), reload_watch=False, max_agent_connections=5
    )
    try:
        held = [await Agent.dial(server.agent_port, f"127.0.1.{i}") for i in range(5)]
        for a in held:
            assert await a.line() == HELLO
        late = await Agent.dial(server.agent_port, "127.0.1.9")
        assert await late.rest() == b""  # closed without a word
        held[0].close()
        await asyncio.wait_for(held[0].writer.wait_closed(), 5)
        for _ in range(50):  # the server notices the close; then there is room again
            late = await Agent.dial(server.agent_port, "127.0.1.9")
            if await late.line() == HELLO:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("no room after one agent connection closed")
        assert server.hub.refusals["agent_connections"] >= 1
    finally:
        await server.shutdown()


async def test_parallel_guesses_on_ten_connections_get_five_checks_then_the_address_is_locked(
    desk: Server,
) -> None:
    conns = [await Agent.dial(desk.agent_port, "127.0.2.1") for _ in range(10)]
    for a in conns:
        assert await a.line() == HELLO
    answers: list[bytes] = []
    open_ = list(conns)
    for _round in range(8):  # every open connection guesses at once, round after round
        for a in open_:
            a.send("/login 1001 wrong-guess")
        for a in list(open_):
            answer = await a.line()
            answers.append(answer)
            if answer == b"ERR too many attempts\r\n":  # and closed
                assert await a.rest() == b""
                open_.remove(a)
    assert not open_  # every connection ended locked out
    assert answers.count(b"ERR login failed\r\n") == 4
    assert set(answers) == {b"ERR login failed\r\n", b"ERR busy\r\n", b"ERR too many attempts\r\n"}
    late = await Agent.dial(desk.agent_port, "127.0.2.1")
    assert await late.line() == HELLO
    late.send(f"/login 1001 {PASSWORD}")  # the right password, after the lock-out: refused unchecked
    assert await late.rest() == b"ERR too many attempts\r\n"
    assert desk.hub.logins.failed_total == 5
    metrics = render(registry_for(desk.hub)).decode()
    assert 'hotline_agent_login_refused_total{reason="busy"}' in metrics
    assert 'hotline_agent_login_refused_total{reason="locked"}' in metrics
    other = await Agent.dial(desk.agent_port, "127.0.2.2")
    assert await other.line() == HELLO
    other.send(f"/login 1001 {PASSWORD}")
    assert (await other.line()).startswith(b"OK login 1001 ")


async def test_behind_a_balancer_the_proxy_header_names_the_agent(tmp_path: Path, password_hash: str) -> None:
    server = await start_server(
        web_config(tmp_path / "config", password_hash),
        reload_watch=False,
        proxy_protocol=True,
        proxy_from="127.0.0.1",
    )
    try:
        port = server.agent_port

        def header(client: str) -> bytes:
            return f"PROXY TCP4 {client} 127.0.0.1 40000 {port}\r\n".encode()

        for i in range(5):  # five failures from one agent's address behind the balancer
            a = await Agent.dial(port, first=header("10.9.8.7") + b"/login 1001 wrong\r\n")
            assert await a.line() == HELLO
            expected = b"ERR too many attempts\r\n" if i == 4 else b"ERR login failed\r\n"
            assert await a.line() == expected
            a.close()
        locked = await Agent.dial(port, first=header("10.9.8.7") + f"/login 1001 {PASSWORD}\r\n".encode())
        assert await locked.rest() == HELLO + b"ERR too many attempts\r\n"
        # another agent behind the same balancer is not locked out
        other = await Agent.dial(port, first=header("10.9.8.6") + f"/login 1001 {PASSWORD}\r\n".encode())
        assert await other.line() == HELLO
        assert (await other.line()).startswith(b"OK login 1001 ")
        stranger = await Agent.dial(port, "127.0.0.2", first=header("10.9.8.5"))  # not the balancer
        assert await stranger.rest() == b""
        garbage = await Agent.dial(port, first=b"GET / HTTP/1.0\r\n\r\n")
        assert await garbage.rest() == b""
        assert server.hub.refusals["proxy_untrusted"] == 1 and server.hub.refusals["proxy_header"] == 1
        other.close()
    finally:
        await server.shutdown()
