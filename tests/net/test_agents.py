"""The agent desk over real sockets: a real server process, callers and agents as line clients."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.desk.passwords import hash_password
from tests.conftest import ServerProcess
from tests.helpers import CONFIG, system_tool
from tests.servers import RedisServer

PASSWORD = "s3cret-pass"
DESK = """
version: 1
queues:
  default:
    title: 人工服务
    announce_every: 1s
    max_wait: {max_wait}
    ring_timeout: 1s
    wrap_up: 0.5s
    max_missed: 2
  closed:
    hours:
      timezone: UTC
      open: {{mon: "00:00-00:01"}}
      closed_dates: [{today}]
agents:
  - {{id: "1001", name: 小王, password_hash: "{hash}", queues: [default]}}
  - {{id: "1002", name: 小李, password_hash: "{hash}", queues: [default]}}
"""


_OPEN: list[Line] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


class Line:
    """A line client: send lines, wait for text to arrive (with a timeout), never sleep blindly."""

    def __init__(self, port: int, source: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
        _OPEN.append(self)
        self.buf = b""
        self.closed = False

    def send(self, *lines: str) -> None:
        self.sock.sendall(b"".join(line.encode() + b"\r\n" for line in lines))

    def _read(self, deadline: float) -> None:
        """One read (or none, at the deadline); notes when the server closed."""
        left = deadline - time.monotonic()
        if left <= 0 or self.closed:
            return
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.closed = True
        self.buf += chunk

    def expect(self, text: str, timeout: float = 8.0) -> str:
        """Everything up to and including `text`; consumed."""
        deadline = time.monotonic() + timeout
        want = text.encode()
        while want not in self.buf:
            if time.monotonic() >= deadline or self.closed:
                raise AssertionError(f"{text!r} not received; got {self.buf.decode(errors='replace')!r}")
            self._read(deadline)
        i = self.buf.index(want) + len(want)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out.decode(errors="replace")

    def wait_closed(self, timeout: float = 8.0) -> str:
        deadline = time.monotonic() + timeout
        while not self.closed:
            assert time.monotonic() < deadline, f"still open; got {self.buf!r}"
            self._read(deadline)
        return self.buf.decode(errors="replace")

    def close(self) -> None:
        self.sock.close()


def _config(tmp_path: Path, max_wait: str = "10m") -> Path:
    folder = tmp_path / "config"
    shutil.copytree(CONFIG, folder)
    today = time.strftime("%Y-%m-%d", time.gmtime())
    (folder / "desk.yaml").write_text(
        DESK.format(hash=hash_password(PASSWORD), max_wait=max_wait, today=today), encoding="utf-8"
    )
    return folder


@pytest.fixture(scope="module")
def shared_redis() -> Iterator[list[RedisServer]]:
    """A redis-server for the scenarios' shared-desk runs, started the first time one asks."""
    started: list[RedisServer] = []
    yield started
    for server in started:
        server.stop()


@pytest.fixture(params=["in_process", "redis"])
def desk_server(
    request: pytest.FixtureRequest, tmp_path: Path, shared_redis: list[RedisServer]
) -> Iterator[ServerProcess]:
    """The scenario's server: once with the desk in process, once with it in a real Redis (the same
    scenarios pass either way: docs/agent-desk.md, "Replicas: the desk shared through Redis")."""
    env = {"HOTLINE_LOG_FORMAT": "json"}
    if request.param == "redis":
        if not shared_redis:
            shared_redis.append(RedisServer())
        shared_redis[0].flush()
        env["HOTLINE_REDIS_URL"] = shared_redis[0].url
    proc = ServerProcess([sys.executable, "-m", "app", "serve", "--config", str(_config(tmp_path))], env=env)
    yield proc
    proc.stop()


def _agent(server: ServerProcess, agent_id: str = "1001", ready: bool = True) -> Line:
    a = Line(server.agent_port)
    a.expect("HELLO hotline agent desk: /login ID PASSWORD\r\n")
    a.send(f"/login {agent_id} {PASSWORD}")
    a.expect(f"OK login {agent_id} ")
    if ready:
        a.send("/ready")
        a.expect("OK ready\r\n")
    return a


def _offered(agent: Line) -> str:
    """Wait for an OFFER (and its first CONTEXT line); its call id."""
    offer = agent.expect("CONTEXT")
    assert "OFFER " in offer, offer
    return offer.split("OFFER ")[1].split()[0]


def _connected(
    server: ServerProcess, agent: Line, agent_id: str = "1001", free: bool = True
) -> tuple[Line, str]:
    """A new caller who pressed 0, offered to `agent` (logged in as `agent_id`), who accepts: the
    caller, who heard that agent's number, and the call id. `free`: the agent is idle when the
    caller joins (not in wrap-up), so the offer rings at once."""
    caller = _caller_in_queue(server)
    call_id = _offered(agent)
    agent.send("/accept")
    agent.expect(f"CONNECTED {call_id}\r\n")
    heard = caller.expect(f"工号 {agent_id} 为您服务。")
    assert "等待期间,留言请按 1,返回上一级菜单请按 *。" in heard, heard  # the keys, with the first
    if free:  # the offer rang at once: no position or estimate was said
        assert "预计等待" not in heard, heard
    return caller, call_id


def _caller_in_queue(server: ServerProcess) -> Line:
    c = Line(server.tcp_port)
    c.expect("结束通话请输入 exit。")
    c.send("0")
    c.expect("正在为您转接人工服务")
    return c


def test_two_terminals_talk_caller_hears_position_and_agent_sees_context(desk_server: ServerProcess) -> None:
    agent = _agent(desk_server, ready=False)
    caller = Line(desk_server.tcp_port)
    caller.expect("结束通话请输入 exit。")
    caller.send("1", "1380013801")  # refused by the input's pattern (a shortcut): still a secret
    caller.expect("手机号码格式不正确")
    caller.send("13800138000")
    caller.expect("尊敬的张先生")
    caller.send("8", "我要转人工")
    caller.expect("您前面还有 0 位客户,预计等待 3 分钟。")
    caller.send("还要多久?")
    caller.expect("请稍候,坐席接通后会立即为您服务。按 1 留言,按 * 返回。")
    agent.send("/ready")
    offer = agent.expect("CONTEXT")
    assert "OFFER " in offer and "queue=default" in offer and "from=127.0.0.1:" in offer
    call_id = offer.split("OFFER ")[1].split()[0]
    context = agent.expect(f"CONTEXT {call_id} asked 我要转人工\r\n")
    assert "path main>ask_phone>find_account>balance>main>robot>agent" in context
    assert "var:phone *******8000" in context and "13800138000" not in context  # sensitive: masked
    agent.expect(f"CONTEXT {call_id} transcript /history, or: hotline calls show {call_id}\r\n")
    agent.send("/accept")
    agent.expect(f"CONNECTED {call_id}\r\n")
    caller.expect("工号 1001 为您服务。")
    caller.send("我的话费不对", "#")  # while connected even # is chat
    agent.expect("CALLER 我的话费不对\r\nCALLER #\r\n")
    agent.send("请稍等,我帮您查")
    caller.expect("客服 1001:请稍等,我帮您查\r\n")
    agent.send("/history")  # the call so far, from the transcript
    history = agent.expect(f"HISTORY {call_id} agent/1001 请稍等,我帮您查\r\n")
    assert f"HISTORY {call_id} caller *******8000\r\n" in history and "13800138000" not in history
    assert f"HISTORY {call_id} caller 我的话费不对\r\nHISTORY {call_id} caller #\r\n" in history
    agent.send("/queue")
    agent.expect("QUEUE default waiting=0 longest=0s available=0 busy=1\r\n")
    agent.send("/end solved")
    agent.expect(f"ENDED {call_id} by=agent\r\n")
    caller.expect("本次服务已结束,感谢您的耐心。\r\n请对本次服务评价")  # the survey, then main
    caller.send("2")
    caller.expect("感谢您的评价!\r\n欢迎致电中国移动 10086!")
    caller.send("exit")
    caller.wait_closed()
    ended = desk_server.wait_for("session_ended", session_id=call_id)
    assert ended["agent"] == "1001" and "talked" in ended and "waited" in ended
    done = desk_server.wait_for("call_completed", session_id=call_id)
    assert done["by"] == "agent" and done["disposition"] == "solved"
    assert all("13800138000" not in str(line) and PASSWORD not in str(line) for line in desk_server.lines)
    desk_server.stop()  # SIGTERM: what was gathered is written before the process ends
    shown = subprocess.run(
        [sys.executable, "-m", "app", "calls", "show", call_id, "--json", "--data", str(desk_server.data)],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = json.loads(shown.stdout)["lines"]
    assert "13800138000" not in shown.stdout  # the number typed at a sensitive input, masked
    said = [(line["direction"], line.get("agent"), line["text"]) for line in lines]
    assert ("caller", None, "*******8000") in said
    assert ("caller", None, "******3801") in said and "1380013801" not in shown.stdout
    assert ("agent", "1001", "请稍等,我帮您查") in said and ("caller", None, "我的话费不对") in said
    assert said[-1] == ("system", None, "感谢您致电中国移动 10086,再见!")


def test_login_failures_look_the_same_and_are_limited_per_address(desk_server: ServerProcess) -> None:
    a = Line(desk_server.agent_port)
    a.expect("HELLO")
    a.send("/login 1001 wrong-password")
    a.expect("ERR login failed\r\n")
    a.send("/login 9999 wrong-password")  # unknown id: the same answer
    a.expect("ERR login failed\r\n")
    a.send("/login 1001", "/ready", "/accept", "hello")
    a.expect("ERR usage: /login ID PASSWORD\r\n")
    a.expect("ERR not logged in: /login ID PASSWORD\r\n")
    for _ in range(2):
        a.send("/login 1001 nope-nope")
        a.expect("ERR login failed\r\n")
    a.send("/login 1001 nope-nope")  # the 5th failure
    a.expect("ERR too many attempts\r\n")
    a.wait_closed()
    b = Line(desk_server.agent_port)  # the right password does not help within the minute
    b.expect("HELLO")
    b.send(f"/login 1001 {PASSWORD}")
    b.expect("ERR too many attempts\r\n")
    b.wait_closed()
    desk_server.wait_for("login_failed")
    assert all(
        "nope-nope" not in str(line) and "wrong-password" not in str(line) for line in desk_server.lines
    )


def test_reject_miss_and_auto_break(desk_server: ServerProcess) -> None:
    a1 = _agent(desk_server, "1001")
    caller = _caller_in_queue(desk_server)
    call_id = _offered(a1)
    a1.send("/reject")
    a1.expect(f"OK reject {call_id}\r\n")
    a2 = _agent(desk_server, "1002")
    a2.expect(f"OFFER {call_id} ")  # the caller kept their place; offered to the other agent
    a2.expect(f"MISSED {call_id}\r\n", timeout=5)  # ring_timeout 1s
    a2.expect(f"OFFER {call_id} ", timeout=10)  # no other agent: again to this one after the cooldown
    a2.expect(f"MISSED {call_id}\r\nOK break\r\n", timeout=5)  # max_missed 2: on break
    a2.send("/ready")
    a2.expect("OK ready")
    a2.expect(f"OFFER {call_id} ", timeout=10)
    a2.send("/accept")
    a2.expect(f"CONNECTED {call_id}")
    caller.expect("工号 1002 为您服务。")
    a1.send("/accept")
    a1.expect("ERR no offer to accept\r\n")


def test_caller_hangs_up_while_offered_and_while_connected(desk_server: ServerProcess) -> None:
    agent = _agent(desk_server)
    caller = _caller_in_queue(desk_server)
    call_id = _offered(agent)
    caller.close()  # while offered
    agent.expect(f"ENDED {call_id} by=caller\r\n")
    desk_server.wait_for("queue_abandoned", session_id=call_id)
    caller, call_id = _connected(desk_server, agent)
    caller.send("exit")  # a hang-up key still works while connected
    caller.expect("再见")
    agent.expect(f"ENDED {call_id} by=caller\r\n")
    agent.send("hello?")
    agent.expect("ERR not in a call\r\n")


def test_agent_drop_mid_call_sends_the_caller_on(desk_server: ServerProcess) -> None:
    agent = _agent(desk_server)
    caller = _caller_in_queue(desk_server)
    agent.expect("CONTEXT")
    agent.send("/accept")
    caller.expect("为您服务")
    agent.close()
    caller.expect("本次服务已结束,感谢您的耐心。\r\n请对本次服务评价")  # the survey, then main
    caller.send("2")
    caller.expect("感谢您的评价!\r\n欢迎致电中国移动 10086!")
    desk_server.wait_for("agent_logout", agent="1001")


def test_waiting_keys_leave_the_queue_and_no_agent_means_busy(desk_server: ServerProcess) -> None:
    caller = Line(desk_server.tcp_port)
    caller.expect("结束通话请输入 exit。")
    caller.send("0")  # nobody logged in: busy, then on_busy (leave_message)
    caller.expect("抱歉,目前所有坐席均忙。\r\n请留言")
    caller.send("#")  # no message after all: back to the top
    caller.expect("欢迎致电中国移动 10086!")
    agent = _agent(desk_server, ready=False)
    caller.send("0")
    caller.expect("您前面还有 0 位客户")
    caller.send("*")  # back to the menu: leaves the queue
    caller.expect("欢迎致电中国移动 10086!")
    desk_server.wait_for("queue_abandoned")
    agent.send("/queue")
    agent.expect("QUEUE default waiting=0")


def test_bad_input_from_an_agent_harms_nobody(desk_server: ServerProcess) -> None:
    agent = _agent(desk_server)
    other = Line(desk_server.agent_port)
    other.expect("HELLO")
    other.send(f"/login 1001 {PASSWORD}")  # the same agent twice: the second is refused
    other.expect("ERR already logged in elsewhere\r\n")
    garbage = bytes(b for b in range(256) if b not in (3, 4))  # Ctrl-C / Ctrl-D would hang up
    other.sock.sendall(b"\xff\xfb\x01\xff\xfd\x03" + garbage + b"\r\n")  # telnet + garbage
    other.sock.sendall(b"x" * (10 << 20) + b"\r\n")  # a 10 MiB line
    other.send("/help")
    other.expect("ERR line too long, ignored\r\n", timeout=20)
    other.expect("INFO /login ID PASSWORD")
    agent.send("/end", "/bogus", "/accept", "有人吗")
    agent.expect(
        "ERR not in a call\r\nERR unknown command: /bogus\r\nERR no offer to accept\r\nERR not in a call\r\n"
    )
    _caller_in_queue(desk_server)  # the desk still works for everyone
    agent.expect("OFFER")


def test_caller_and_agent_hang_up_at_the_same_instant(desk_server: ServerProcess) -> None:
    agent = _agent(desk_server)
    for _ in range(5):
        caller, call_id = _connected(desk_server, agent, free=False)  # maybe still in wrap-up
        caller.send("exit")  # both at once: whichever the server reads first ends the call
        agent.send("/end")
        caller.wait_closed()
        ended = agent.expect(f"ENDED {call_id} by=")
        assert ended.count(f"ENDED {call_id}") == 1
        agent.send("/queue")  # the answer to /end, if the caller's hang-up came first, is an ERR
        rest = agent.expect("QUEUE default waiting=0")
        assert f"ENDED {call_id}" not in rest and rest.replace("ERR not in a call\r\n", "").startswith(
            ("agent\r\n", "caller\r\n")
        ), rest
    assert not any(line.get("level") in ("error", "critical") for line in desk_server.lines)


def test_reload_while_calls_are_connected(desk_server: ServerProcess, tmp_path: Path) -> None:
    """Both calls go on; an agent removed from desk.yaml is logged out when their call ends; the
    callers on the line keep the menu they started with; a broken desk.yaml changes nothing."""
    folder = tmp_path / "config"
    first, second = _agent(desk_server, "1001"), _agent(desk_server, "1002")
    caller_a, call_a = _connected(desk_server, first, "1001")  # longest idle
    caller_b, call_b = _connected(desk_server, second, "1002")

    desk = folder / "desk.yaml"
    desk.write_text(desk.read_text(encoding="utf-8").split('  - {id: "1002"')[0], encoding="utf-8")
    menu = folder / "menu.yaml"
    menu.write_text(
        menu.read_text(encoding="utf-8").replace(
            'agent_says: "客服 {agent.id}:{text}"', 'agent_says: "坐席{agent.id}说:{text}"'
        ),
        encoding="utf-8",
    )
    desk_server.proc.send_signal(signal.SIGHUP)
    desk_server.wait_for("menu_reloaded")

    caller_a.send("还在吗")
    first.expect("CALLER 还在吗\r\n")
    second.send("在的")
    caller_b.expect("客服 1002:在的")  # the menu this caller started with
    second.send("/end")
    second.expect(f"ENDED {call_b} by=agent\r\n")
    assert "INFO logged out: this agent was removed from desk.yaml" in second.wait_closed()
    caller_b.expect("本次服务已结束")
    desk_server.wait_for("agent_logout", agent="1002")

    first.send("/end")
    first.expect(f"ENDED {call_a} by=agent\r\n")  # 1001 stays logged in and takes the next caller
    caller_c = _caller_in_queue(desk_server)
    _offered(first)
    first.send("/accept", "您好")
    caller_c.expect("坐席1001说:您好")  # a new caller gets the new menu

    desk.write_text("version: 1\nqueues: [oops\n", encoding="utf-8")
    desk_server.proc.send_signal(signal.SIGHUP)
    desk_server.wait_for("menu_rejected")
    first.send("/queue")
    first.expect("QUEUE default waiting=0")
    caller_c.send("谢谢")
    first.expect("CALLER 谢谢\r\n")


def test_sigterm_with_a_call_connected_tells_both_sides(desk_server: ServerProcess) -> None:
    agent = _agent(desk_server)
    caller, call_id = _connected(desk_server, agent)
    desk_server.proc.send_signal(signal.SIGTERM)
    agent.expect(f"ENDED {call_id} by=server\r\n")
    heard = caller.wait_closed()
    # `ended`, then the goodbye: nothing between (not the main menu)
    assert heard.strip() == "本次服务已结束,感谢您的耐心。\r\n感谢您致电中国移动 10086,再见!", heard
    assert desk_server.wait_exit() == 0
    done = desk_server.wait_for("call_completed", session_id=call_id)
    assert done["by"] == "server"  # what the agent saw


def test_a_disposition_after_the_caller_hung_up(desk_server: ServerProcess) -> None:
    agent = _agent(desk_server)
    agent.send("/disposition 已解决")
    agent.expect("ERR no call to give a disposition\r\n")
    caller, call_id = _connected(desk_server, agent)
    agent.send("/disposition 已解决")
    agent.expect("ERR in a call: /end DISPOSITION\r\n")
    caller.send("exit")
    agent.expect(f"ENDED {call_id} by=caller\r\n")
    agent.send("/disposition 需回访", "/disposition 已解决", "/disposition")
    agent.expect("OK disposition\r\nOK disposition\r\nERR usage: /disposition TEXT\r\n")
    first = desk_server.wait_for("call_disposition", session_id=call_id, disposition="需回访")
    assert first["agent"] == "1001" and first["queue"] == "default"
    desk_server.wait_for("call_disposition", session_id=call_id, disposition="已解决")  # replaces it
    deadline = time.monotonic() + 8
    while True:  # until wrap-up (0.5 s) is over: it ends in silence, no line comes unasked
        agent.send("/queue")
        answer = agent.expect("\r\n")
        assert answer.startswith("QUEUE default waiting=0 "), answer
        if "available=1" in answer or time.monotonic() > deadline:
            break
        time.sleep(0.3)  # within the agent's line rate; the loop's condition is the answer itself
    assert "available=1" in answer


def test_closed_queue_and_max_wait(tmp_path: Path) -> None:
    folder = _config(tmp_path, max_wait="2s")
    menu = folder / "menu.yaml"
    text = menu.read_text(encoding="utf-8")
    menu.write_text(
        text.replace('      "0": agent\n', '      "0": agent\n      "5": closed_line\n', 1)
        + ("  closed_line:\n    type: transfer\n    queue: closed\n    next: main\n"),
        encoding="utf-8",
    )
    server = ServerProcess([sys.executable, "-m", "app", "serve", "--config", str(folder)])
    try:
        caller = Line(server.tcp_port)
        caller.expect("结束通话请输入 exit。")
        caller.send("5")
        caller.expect("现在不是人工服务时间")
        caller.expect("欢迎致电")
        server.wait_for("queue_closed", queue="closed")
        agent = _agent(server, ready=False)
        caller.send("0")
        caller.expect("您前面还有 0 位客户")
        caller.expect("抱歉,目前所有坐席均忙。", timeout=6)  # max_wait 2s
        server.wait_for("queue_timeout")
        agent.close()
    finally:
        server.stop()


def test_an_agent_with_real_nc(desk_server: ServerProcess) -> None:
    import subprocess

    caller = Line(desk_server.tcp_port)
    caller.expect("结束通话请输入 exit。")
    proc = subprocess.Popen(
        [system_tool("nc"), "127.0.0.1", str(desk_server.agent_port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(f"/login 1002 {PASSWORD}\n/ready\n".encode())
        proc.stdin.flush()
        desk_server.wait_for("agent_status", agent="1002", status="available")
        caller.send("0")
        desk_server.wait_for("call_offered", agent="1002")
        proc.stdin.write("/accept\n您好,请讲\n".encode())
        proc.stdin.flush()
        caller.expect("客服 1002:您好,请讲")
        proc.stdin.write(b"/logout\n")
        proc.stdin.close()  # nc ends when both sides are done
        out = proc.stdout.read().decode()
        assert out.startswith("HELLO hotline agent desk")
        assert "OK login 1002 小李\r\nOK ready\r\nOFFER " in out and "CONNECTED " in out
        assert out.endswith("OK logout\r\n")
        caller.expect("本次服务已结束")
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
