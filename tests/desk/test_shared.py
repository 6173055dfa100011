"""Replicas sharing the desk through a real Redis and their records through a real PostgreSQL, as in
the compose cluster: `hotline serve` processes, callers and agents as line clients on different
replicas (docs/agent-desk.md, "Replicas: the desk shared through Redis")."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.desk.passwords import hash_password
from app.records import database as dbm
from tests.conftest import ServerProcess
from tests.net.test_agents import PASSWORD, Line, _agent, _caller_in_queue, _close_clients, _config, _offered
from tests.servers import PostgresServer, RedisServer
from tests.web.test_site import Web, recv

__all__ = ["_close_clients"]  # autouse: every line client closed after each test


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


class Replicas:
    def __init__(self, redis: RedisServer, config: Path, database_url: str) -> None:
        self.redis = redis
        self.config = config
        self.database_url = database_url
        self.started: list[ServerProcess] = []

    def start(self, name: str, env: dict[str, str] | None = None) -> ServerProcess:
        proc = ServerProcess(
            [sys.executable, "-m", "app", "serve", "--config", str(self.config)],
            env={
                "HOTLINE_LOG_FORMAT": "json",
                "HOTLINE_REDIS_URL": self.redis.url,
                "HOTLINE_DATABASE_URL": self.database_url,
                "HOTLINE_REPLICA": name,
                "HOTLINE_RELOAD_WATCH": "false",
                **(env or {}),
            },
        )
        proc.wait_for("desk_shared", replica=name)
        self.started.append(proc)
        return proc

    def stop(self) -> None:
        """Every replica, each asked to stop (and killed after 15 s); their logs say how it went."""
        for proc in self.started:
            proc.proc.terminate()
        for proc in self.started:
            proc.stop()


@pytest.fixture
def replicas(
    redis_server: RedisServer, postgres_server: PostgresServer, tmp_path: Path
) -> Iterator[Replicas]:
    """Replicas on one Redis (emptied) and one new PostgreSQL database."""
    if not redis_server.ping():
        redis_server.start()
    redis_server.flush()
    group = Replicas(redis_server, _config(tmp_path), postgres_server.database())
    yield group
    group.stop()


def _shared_agent(
    replicas: Replicas, server: ServerProcess, agent_id: str = "1001", ready: bool = True
) -> Line:
    """An agent logged in on `server`, once every replica can see them (the writes are asynchronous):
    logged in and, when `ready`, free to take a call (a caller joining on another replica before
    that would hear an estimate)."""
    agent = _agent(server, agent_id, ready)
    end = time.monotonic() + 5
    while replicas.redis.command("HEXISTS", "hotline:{q:default}:agents", agent_id) != b":1\r\n" or (
        ready and replicas.redis.command("ZSCORE", "hotline:{q:default}:free", agent_id).startswith(b"$-1")
    ):
        assert time.monotonic() < end, f"agent {agent_id} never reached Redis (ready: {ready})"
        time.sleep(0.02)
    return agent


def _queue_line(agent: Line, wanted: str, timeout: float = 8.0) -> None:
    """Ask /queue until its line shows `wanted` (the shared summary is refreshed every second)."""
    end = time.monotonic() + timeout
    while True:
        agent.send("/queue")
        line = agent.expect("\r\n")
        if wanted in line:
            return
        assert time.monotonic() < end, f"/queue never showed {wanted!r}; last: {line!r}"
        time.sleep(0.1)


def test_a_caller_on_one_replica_talks_with_an_agent_on_another(replicas: Replicas) -> None:
    a, b = replicas.start("a"), replicas.start("b")
    agent = _shared_agent(replicas, b)
    caller = _caller_in_queue(a)
    heard = caller.expect("等待期间,留言请按 1")  # the keys; an agent is free on the other replica:
    assert "预计等待" not in heard  # the offer rings at once, so no estimate
    call_id = _offered(agent)
    assert " path main>agent\r\n" in agent.expect("\r\n")  # the rest of the first CONTEXT line
    agent.send("/accept")
    agent.expect(f"CONNECTED {call_id}\r\n")
    caller.expect("工号 1001 为您服务。")
    caller.send("我的话费不对", "#")
    agent.expect("CALLER 我的话费不对\r\nCALLER #\r\n")
    agent.send("请稍等,我帮您查")
    caller.expect("客服 1001:请稍等,我帮您查\r\n")
    agent.send("/end solved")
    agent.expect(f"ENDED {call_id} by=agent\r\n")
    caller.expect("本次服务已结束,感谢您的耐心。\r\n请对本次服务评价")  # the survey, then main
    caller.send("2")
    caller.expect("感谢您的评价!\r\n欢迎致电中国移动 10086!")
    connected = b.wait_for("call_connected", session_id=call_id)
    assert connected["agent"] == "1001"
    # and the other way round: the caller hangs up, the agent on the other replica hears it
    caller.send("0")
    caller.expect("正在为您转接人工服务")
    second = _offered(agent)  # once the wrap-up is over
    agent.send("/accept")
    agent.expect(f"CONNECTED {second}\r\n")
    caller.expect("为您服务。")
    caller.close()
    agent.expect(f"ENDED {second} by=caller\r\n")


def test_with_shared_postgresql_an_agent_reads_the_history_of_a_caller_on_another_replica(
    replicas: Replicas,
) -> None:
    """The transcript is written by the caller's replica; with one PostgreSQL for both, the agent's
    /history on the other replica reads it (within the half second the writer gathers lines), and
    tickets from either replica share one numbering."""
    a, b = replicas.start("a"), replicas.start("b")
    agent = _shared_agent(replicas, b)
    caller = _caller_in_queue(a)
    call_id = _offered(agent)
    agent.send("/accept")
    agent.expect(f"CONNECTED {call_id}\r\n")
    caller.expect("工号 1001 为您服务。")
    caller.send("我的话费不对")
    agent.expect("CALLER 我的话费不对\r\n")
    end = time.monotonic() + 5
    while True:
        agent.send("/history")
        lines = agent.expect("\r\n")
        if lines.startswith(f"HISTORY {call_id} "):
            history = lines + agent.expect(f"HISTORY {call_id} caller 我的话费不对\r\n", timeout=2)
            break
        assert lines == f"INFO no history for {call_id}\r\n", lines  # not flushed by replica a yet
        assert time.monotonic() < end, "replica b never read what replica a wrote"
        time.sleep(0.1)
    assert f"HISTORY {call_id} caller 0\r\n" in history  # the key that asked for an agent, on a
    agent.send("/end")
    agent.expect(f"ENDED {call_id} by=agent\r\n")
    caller.expect("请对本次服务评价")
    caller.send("1")
    caller.expect("欢迎致电中国移动 10086!")
    numbers = []
    for replica in (a, b):  # and a ticket left on each: one numbering for both
        other = _caller_in_queue(replica)
        other.send("1", "请回电")
        other.expect("工单号是 T")
        numbers.append(int(other.expect("。").split("-")[1].rstrip("。")))
    assert numbers == [1, 2]


def test_positions_follow_join_time_across_replicas(replicas: Replicas) -> None:
    a, b = replicas.start("a"), replicas.start("b")
    agent = _shared_agent(replicas, a, ready=False)
    callers = []
    for i, replica in enumerate((a, b, a, b)):
        caller = _caller_in_queue(replica)
        caller.expect(f"您前面还有 {i} 位客户")
        callers.append(caller)
    _queue_line(agent, "QUEUE default waiting=4 ")
    ports = [c.sock.getsockname()[1] for c in callers]
    agent.send("/ready")
    agent.expect("OK ready\r\n")
    for port in ports:  # offered first come, first served, whichever replica they called
        offer = agent.expect("CONTEXT")
        assert f"from=127.0.0.1:{port}" in offer, (port, offer)
        call_id = offer.split("OFFER ")[1].split()[0]
        agent.send("/accept")
        agent.expect(f"CONNECTED {call_id}\r\n")
        agent.send("/end")
        agent.expect(f"ENDED {call_id} by=agent\r\n")


def test_an_agent_id_is_logged_in_on_one_replica_at_a_time(replicas: Replicas) -> None:
    a, b = replicas.start("a"), replicas.start("b")
    _shared_agent(replicas, a)
    second = Line(b.agent_port)
    second.expect("HELLO")
    second.send(f"/login 1001 {PASSWORD}")
    second.expect("ERR already logged in elsewhere\r\n")
    second.wait_closed()


def test_a_killed_replicas_waiting_callers_are_never_offered(replicas: Replicas) -> None:
    a, b = replicas.start("a"), replicas.start("b")
    agent = _shared_agent(replicas, b, ready=False)
    for _ in range(2):
        _caller_in_queue(a).expect("位客户")
    _queue_line(agent, "QUEUE default waiting=2 ")
    os.kill(a.proc.pid, signal.SIGKILL)
    _queue_line(agent, "QUEUE default waiting=0 ", timeout=6.0)  # lease 3 s + janitor round
    b.wait_for("replica_reaped", replica="a")
    with urllib.request.urlopen(f"http://127.0.0.1:{b.admin_port}/metrics", timeout=5) as response:
        metrics = response.read().decode()
    assert "hotline_replicas_reaped_total 1.0" in metrics and "hotline_shared_up 1.0" in metrics
    fresh = _caller_in_queue(b)
    agent.send("/ready")
    offer = agent.expect("CONTEXT")  # the first offer is the live caller's
    assert f"from=127.0.0.1:{fresh.sock.getsockname()[1]}" in offer, offer


def test_a_killed_replicas_calls_end_for_the_other_side(replicas: Replicas) -> None:
    a, b, c = replicas.start("a"), replicas.start("b"), replicas.start("c")
    agent_b = _shared_agent(replicas, b, "1001")
    caller_a = _caller_in_queue(a)  # caller on a, agent on b
    call_a = _offered(agent_b)
    agent_b.send("/accept")
    caller_a.expect("工号 1001 为您服务。")
    agent_c = _shared_agent(replicas, c, "1002")  # agent on c, caller on b
    caller_b = _caller_in_queue(b)
    call_b = _offered(agent_c)
    agent_c.send("/accept")
    caller_b.expect("工号 1002 为您服务。")
    os.kill(a.proc.pid, signal.SIGKILL)
    agent_b.expect(f"ENDED {call_a} by=caller\r\n", timeout=8.0)
    os.kill(c.proc.pid, signal.SIGKILL)
    caller_b.expect("本次服务已结束,感谢您的耐心。\r\n请对本次服务评价", timeout=8.0)  # `ended`, the survey
    caller_b.send("3")
    caller_b.expect("感谢您的评价!\r\n欢迎致电中国移动 10086!")  # then `next`
    assert call_b


def test_redis_stopped_and_started_mid_queue(replicas: Replicas) -> None:
    a, b = replicas.start("a"), replicas.start("b")
    local_agent = _shared_agent(replicas, a, "1002")
    local_caller = _caller_in_queue(a)  # both ends on a
    local_call = _offered(local_agent)
    local_agent.send("/accept")
    local_caller.expect("工号 1002 为您服务。")
    agent = _shared_agent(replicas, b, "1001", ready=False)
    waiting = _caller_in_queue(a)
    waiting.expect("您前面还有 0 位客户")
    replicas.redis.stop()
    local_caller.send("还在吗")  # a call within one replica goes on without Redis
    local_agent.expect("CALLER 还在吗\r\n")
    local_agent.send("在的")
    local_caller.expect("客服 1002:在的\r\n")
    late = _caller_in_queue(a)  # a new transfer takes on_busy
    late.expect("抱歉,目前所有坐席均忙。")
    a.wait_for("desk_shared_unavailable")
    replicas.redis.start()
    a.wait_for("desk_shared_restored", timeout=10)
    b.wait_for("desk_shared_restored", timeout=10)
    agent.send("/ready")
    agent.expect("OK ready\r\n")
    offer = agent.expect("CONTEXT", timeout=10)  # the caller who waited through it is served
    assert f"from=127.0.0.1:{waiting.sock.getsockname()[1]}" in offer, offer
    assert local_call


STRESS_DESK = """
version: 1
queues:
  default:
    title: 人工服务
    max_waiting: 2000
    max_wait: 10m
    announce_every: 5s
    ring_timeout: 10s
    wrap_up: 0s
agents:
{agents}
"""


async def test_two_replicas_500_callers_each_50_agents_every_caller_answered_once(
    redis_server: RedisServer, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    if not redis_server.ping():
        redis_server.start()
    redis_server.flush()
    config = _config(tmp_path)
    password_hash = hash_password(PASSWORD)
    agents = "\n".join(
        f'  - {{id: "{2000 + i}", name: 坐席{i}, password_hash: "{password_hash}", queues: [default]}}'
        for i in range(50)
    )
    (config / "desk.yaml").write_text(STRESS_DESK.format(agents=agents), encoding="utf-8")
    group = Replicas(redis_server, config, postgres_server.database())
    env = {"HOTLINE_MAX_SESSIONS_PER_ADDRESS": "5000", "HOTLINE_MAX_LINES_PER_SECOND": "1000"}
    try:
        a, b = group.start("a", env), group.start("b", env)
        answered: dict[str, int] = {}  # call id -> CONNECTED lines, over every agent
        callers_done = asyncio.Event()

        async def agent(agent_id: str, port: int) -> None:
            # each agent from a machine of their own (the agent port holds 10 unauthenticated
            # connections per address), logging in again when the password checks are busy
            source = f"127.0.60.{int(agent_id) - 1999}"
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
            login = f"/login {agent_id} {PASSWORD}\r\n/ready\r\n".encode()
            writer.write(login)
            said: list[str] = []
            while not callers_done.is_set():
                try:
                    line = (await asyncio.wait_for(reader.readline(), 0.5)).decode()
                except TimeoutError:
                    continue
                said = [*said[-5:], line]
                if line.startswith("ERR busy"):
                    await asyncio.sleep(0.05)
                    writer.write(login)
                elif line.startswith("OFFER "):
                    writer.write(b"/accept\r\n")
                elif line.startswith("CONNECTED "):
                    call_id = line.split()[1]
                    answered[call_id] = answered.get(call_id, 0) + 1
                    writer.write(b"/end\r\n")  # at once: the end may reach Redis before the answer
                elif not line:
                    raise AssertionError(f"agent {agent_id} was disconnected after {said}")
            writer.close()

        async def caller(port: int) -> int:
            """How many times this caller heard an agent answer."""
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            seen = b""
            while b"exit" not in seen:
                seen += await reader.read(4096)
            writer.write(b"0\r\n")
            while (
                b"\xe6\x9c\xac\xe6\xac\xa1\xe6\x9c\x8d\xe5\x8a\xa1\xe5\xb7\xb2\xe7\xbb\x93\xe6\x9d\x9f"
                not in seen
            ):
                chunk = await reader.read(4096)  # until 本次服务已结束 (the agent ended the call)
                assert chunk and "坐席均忙" not in seen.decode(errors="replace"), seen.decode(
                    errors="replace"
                )
                seen += chunk
            writer.close()
            return seen.decode().count("为您服务。")

        agents_running = [
            asyncio.create_task(agent(str(2000 + i), (a if i % 2 else b).agent_port)) for i in range(50)
        ]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30  # every agent logged in, ready, and seen by both replicas
        while redis_server.command("ZCARD", "hotline:{q:default}:free") != b":50\r\n":
            assert loop.time() < deadline, redis_server.command("ZCARD", "hotline:{q:default}:free")
            await asyncio.sleep(0.05)
        counts = await asyncio.wait_for(
            asyncio.gather(*(caller((a if i % 2 else b).tcp_port) for i in range(1000))), 120
        )
        callers_done.set()
        await asyncio.gather(*agents_running)
        assert counts == [1] * 1000  # every caller answered, exactly once
        assert len(answered) == 1000 and set(answered.values()) == {1}  # no call answered twice
    finally:
        group.stop()
    db = dbm.connect(group.database_url, create=False, readonly=True)  # both replicas' transcripts
    try:
        calls = db.rows("SELECT session_id, ended FROM calls")
        assert {c["session_id"] for c in calls} >= set(answered) and all(c["ended"] for c in calls)
        for call_id in list(answered)[:20]:
            said = [text for _, _, text in dbm.last_lines(db, call_id, 1000)]
            assert "0" in said and any("为您服务。" in text for text in said), said
    finally:
        db.close()


async def test_the_board_on_one_replica_shows_agents_logged_in_on_another(
    replicas: Replicas,
) -> None:
    desk = replicas.config / "desk.yaml"
    desk.write_text(
        desk.read_text(encoding="utf-8")
        + f'  - {{id: "9001", name: 老张, password_hash: "{hash_password(PASSWORD)}", role: supervisor}}\n',
        encoding="utf-8",
    )
    a, b = replicas.start("a"), replicas.start("b")
    _shared_agent(replicas, b, "1001")
    boss = Web(a.admin_port)
    try:
        assert (await boss.login("9001", PASSWORD)).status == 303
        board = await boss.ws()
        deadline = asyncio.get_running_loop().time() + 8
        while True:  # the shared picture is read once a second
            snap = await recv(board, "board", timeout=5)
            rows = [(r["id"], r["status"], r.get("replica")) for r in snap["agents"]]
            if ("1001", "available", "b") in rows:
                break
            assert asyncio.get_running_loop().time() < deadline, rows
        assert rows == [("1001", "available", "b")]  # a supervisor at a board is no agent
        assert snap["queues"][0]["available"] == 1 and snap["queues"][0]["logged_in"] == 1
    finally:
        await boss.close()


def test_a_callback_is_booked_once_across_replicas_and_outlives_its_replica(replicas: Replicas) -> None:
    """A callback booked on a is one place in the shared queue: the same number booked on b keeps
    the first; a is killed, b adopts the callback, and b's agent is offered it with the number."""
    from tests.records.test_callbacks import NUMBER, _book

    a, b = replicas.start("a"), replicas.start("b")
    agent = _shared_agent(replicas, b, ready=False)  # on break: callers wait, the estimate is long
    first, call_id = _book(a, NUMBER)
    first.close()
    _, again_id = _book(b, NUMBER)
    b.wait_for("callback_duplicate", session_id=again_id)
    db = dbm.connect(replicas.database_url, create=False)
    end = time.monotonic() + 2
    while not [r for r in dbm.desk_calls_of(db, call_id) if r["callback"] == NUMBER]:  # on disk within 1 s
        assert time.monotonic() < end, "the booking never reached the database"
        time.sleep(0.05)
    os.kill(a.proc.pid, signal.SIGKILL)
    b.wait_for("callback_adopted", session_id=call_id, timeout=15.0)  # once a's lease lapsed
    agent.send("/ready")
    offer = agent.expect(f"CONTEXT {call_id} callback {NUMBER}\r\n")
    assert f"OFFER {call_id} queue=default waited=" in offer and " from=callback\r\n" in offer, offer
    agent.send("/accept")
    agent.expect(f"CONNECTED {call_id}\r\n")
    agent.send("/end 已回电")
    agent.expect(f"ENDED {call_id} by=agent\r\n")
    try:
        end = time.monotonic() + 3
        while (rows := dbm.desk_calls_of(db, call_id))[-1]["outcome"] is None:
            assert time.monotonic() < end, rows
            time.sleep(0.05)
        assert [(r["outcome"], r["agent"], r["callback"]) for r in rows] == [("callback", "1001", NUMBER)]
    finally:
        db.close()
