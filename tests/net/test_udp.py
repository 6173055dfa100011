"""The UDP robot over real sockets: answers, JSON, limits, drops; and garbage never raising."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

from app.configdir import load_config
from app.net.udp import MAX_REPLY, RobotEndpoint, json_reply
from app.robot import Answer
from app.server import Hub, Server
from app.settings import Settings
from tests.conftest import start_server
from tests.helpers import CONFIG, system_tool

BALANCE = "查询话费余额:发送短信 CXHF 到 10086"


class Client:
    """A UDP client on a real socket, with waits that time out instead of sleeping."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)

    def send(self, data: bytes | str) -> None:
        self.sock.sendto(data.encode() if isinstance(data, str) else data, ("127.0.0.1", self.port))

    async def recv(self, timeout: float = 2.0) -> bytes:
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.sock_recv(self.sock, 65535), timeout)

    async def silent(self, timeout: float = 0.3) -> bool:
        try:
            await self.recv(timeout)
        except TimeoutError:
            return True
        return False

    async def ask(self, data: bytes | str, timeout: float = 2.0) -> bytes:
        self.send(data)
        return await self.recv(timeout)

    def close(self) -> None:
        self.sock.close()


@pytest_asyncio.fixture
async def robot_server() -> AsyncIterator[Server]:
    srv = await start_server(robot_rate=1000, robot_burst=1000)
    yield srv
    await srv.shutdown()


@pytest_asyncio.fixture
async def client(robot_server: Server) -> AsyncIterator[Client]:
    c = Client(robot_server.udp_port)
    yield c
    c.close()


async def test_plain_text_question_gets_the_answer(client: Client) -> None:
    reply = (await client.ask("话费怎么查")).decode()
    assert reply.startswith(BALANCE) and reply.endswith("\n")


async def test_json_question_gets_intent_and_confidence(client: Client) -> None:
    reply = json.loads(await client.ask(json.dumps({"id": 7, "q": "流量还剩多少"})))
    assert reply["id"] == 7 and reply["intent"] == "data_usage"
    assert 0.6 <= reply["confidence"] <= 1 and reply["answer"].startswith("查询流量")


async def test_json_fallback_has_null_intent(client: Client) -> None:
    reply = json.loads(await client.ask(json.dumps({"id": "x1", "q": "今天天气怎么样"}, ensure_ascii=False)))
    assert reply["id"] == "x1" and reply["intent"] is None and reply["answer"].startswith("抱歉,我没有听懂")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"x" * 5000, "oversized"),
        (b"\xff\xfe\xfd", "undecodable"),
        (b"{not json", "malformed_json"),
        (b'{"id": 1}', "missing_question"),
        (b'{"id": {"a": 1}, "q": "hi"}', "bad_id"),
        (b"   ", "empty"),
    ],
)
async def test_bad_datagrams_are_dropped_and_counted_never_answered(
    client: Client, robot_server: Server, payload: bytes, reason: str
) -> None:
    client.send(payload)
    reply = await client.ask("话费怎么查")  # the next good question is answered, and nothing came before it
    assert reply.decode().startswith(BALANCE)
    assert robot_server.hub.udp_dropped == {reason: 1}


async def test_replies_never_exceed_one_datagram(client: Client) -> None:
    reply = await client.ask(json.dumps({"id": "i" * 128, "q": "话费怎么查" * 30}, ensure_ascii=False))
    assert len(reply) <= MAX_REPLY
    assert json.loads(reply)["id"] == "i" * 128


def test_json_reply_is_cut_to_fit() -> None:
    data = json_reply("x" * 128, Answer("长" * 2000, "a", 0.9))
    assert len(data) <= MAX_REPLY
    assert json.loads(data)["answer"].startswith("长")


async def test_flood_from_one_source_is_limited_then_recovers() -> None:
    srv = await start_server(robot_rate=20, robot_burst=5)
    c = Client(srv.udp_port)
    try:
        for _ in range(30):
            c.send("话费怎么查")
        got = 0
        while not await c.silent(0.3):
            got += 1
        assert 5 <= got <= 8  # the burst, plus what refilled while we sent
        assert srv.hub.udp_dropped["rate_source"] >= 22
        # tokens come back at 20/s: keep asking until answered again (bounded wait, no blind sleep)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3
        answered = False
        while not answered and loop.time() < deadline:
            c.send("话费怎么查")
            answered = not await c.silent(0.1)
        assert answered
    finally:
        c.close()
        await srv.shutdown()


async def test_global_limit_applies_to_everyone_together() -> None:
    srv = await start_server(robot_rate=1000, robot_burst=1000, robot_global_rate=3)
    clients = [Client(srv.udp_port) for _ in range(4)]
    try:
        for c in clients:
            for _ in range(3):
                c.send("话费怎么查")
        answered = 0
        for c in clients:
            while not await c.silent(0.2):
                answered += 1
        assert answered <= 4
        assert srv.hub.udp_dropped["rate_global"] >= 8
    finally:
        for c in clients:
            c.close()
        await srv.shutdown()


async def test_robot_node_on_tcp_uses_the_same_knowledge_base(robot_server: Server) -> None:
    from tests.conftest import Caller

    c = await Caller.dial(robot_server.tcp_port)
    c.send("8")
    await c.expect("我是智能客服")
    c.send("流两还剩多少")
    await c.expect("查询流量:发送短信 CXLL")
    c.send("#")
    await c.expect("欢迎致电中国移动 10086")
    c.close()


async def test_nc_u_gets_an_answer(robot_server: Server) -> None:
    proc = await asyncio.create_subprocess_exec(
        system_tool("nc"),
        "-u",
        "-w1",
        "127.0.0.1",
        str(robot_server.udp_port),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate("话费怎么查\n".encode()), 10)
    assert out.decode().startswith(BALANCE)


async def test_hotline_ask_command(robot_server: Server) -> None:
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        "ask",
        "--port",
        str(robot_server.udp_port),
        "--json",
        "5G套餐多少钱",
        stdout=subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0
    assert json.loads(out)["intent"] == "plan_5g"


async def test_hotline_ask_without_a_server_says_so() -> None:
    import sys

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))  # a port where nobody answers
        port = s.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app",
            "ask",
            "--port",
            str(port),
            "--timeout",
            "0.3",
            "话费",
            stderr=subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 1 and b"no answer from 127.0.0.1" in err


def _endpoint() -> RobotEndpoint:
    config = load_config(CONFIG)
    assert config.graph is not None and config.robot is not None
    hub = Hub(Settings(robot_rate=1e9, robot_burst=1e9, robot_global_rate=1e9), config.graph, config.robot)
    return RobotEndpoint(hub)


ENDPOINT = _endpoint()


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_never_raise_and_replies_fit(data: bytes) -> None:
    reply = ENDPOINT._reply(data, "192.0.2.1", 0.0)
    assert reply is None or len(reply) <= MAX_REPLY


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.sampled_from(["id", "q", "x"]), json_values, max_size=3) | json_values)
def test_any_json_never_raises_and_replies_fit(value: Any) -> None:
    data = json.dumps(value, ensure_ascii=False).encode()
    if not data.startswith(b"{"):
        data = b"{" + data
    reply = ENDPOINT._reply(data, "192.0.2.1", 0.0)
    assert reply is None or (len(reply) <= MAX_REPLY and "answer" in json.loads(reply))


async def test_answers_from_the_reply_cache_are_counted_in_metrics(
    client: Client, robot_server: Server
) -> None:
    from tests.test_operations import http_get, metric

    for _ in range(3):  # the first is matched, the next two come from the cache
        assert (await client.ask("话费怎么查")).decode().startswith(BALANCE)
    await client.ask("今天天气怎么样")
    text = await http_get(robot_server.admin_port, "/metrics")
    assert metric(text, "hotline_robot_queries_total", intent="balance") == 3
    assert metric(text, "hotline_robot_queries_total", intent="none") == 1
