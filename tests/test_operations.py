"""Operations: limits seen by the client and in /metrics, live reload from disk, shutdown at scale."""

from __future__ import annotations

import asyncio
import re
import resource
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from app.server import Server
from tests.conftest import Caller, ServerProcess, start_server, wait_until
from tests.helpers import CONFIG

WELCOME = "欢迎致电中国移动 10086"
BYE = "感谢您致电中国移动 10086,再见!"


async def http_get(port: int, path: str) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data.decode()


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" ([0-9.e+-]+)$"
    m = re.search(pattern, text, re.M)
    assert m is not None, f"{name} {labels} not in metrics"
    return float(m.group(1))


async def test_metrics_show_the_live_state(server: Server) -> None:
    c = await Caller.dial(server.tcp_port)
    await c.expect(WELCOME)
    c.send("x", "1", "13800138000", "8", "流两还剩多少")
    await c.expect("查询流量")
    text = await http_get(server.admin_port, "/metrics")
    assert text.startswith("HTTP/1.1 200 OK")
    assert metric(text, "hotline_sessions_active") == 1
    assert metric(text, "hotline_sessions_total") == 1
    assert metric(text, "hotline_node_visits_total", node="main") == 2
    assert metric(text, "hotline_node_visits_total", node="find_account") == 1
    assert metric(text, "hotline_invalid_inputs_total") == 1
    assert metric(text, "hotline_robot_queries_total", intent="data_usage") == 1
    c.send("exit")
    await c.closed()
    text = await http_get(server.admin_port, "/metrics")
    assert metric(text, "hotline_sessions_active") == 0
    assert metric(text, "hotline_session_duration_seconds_count") == 1
    c.close()


async def test_per_address_limit_refuses_politely_and_counts() -> None:
    srv = await start_server(max_sessions_per_address=2)
    try:
        a, b = await Caller.dial(srv.tcp_port), await Caller.dial(srv.tcp_port)
        await a.expect(WELCOME)
        await b.expect(WELCOME)
        c = await Caller.dial(srv.tcp_port)
        assert "线路繁忙" in await c.closed()
        text = await http_get(srv.admin_port, "/metrics")
        assert metric(text, "hotline_refused_total", reason="max_sessions_per_address") == 1
        a.close()
        await a.writer.wait_closed()
        # a place is free again once a caller leaves
        assert await wait_until(lambda: srv.hub.per_address.get("127.0.0.1", 0) < 2)
        d = await Caller.dial(srv.tcp_port)
        await d.expect(WELCOME)
        for x in (b, c, d):
            x.close()
    finally:
        await srv.shutdown()


async def test_a_burst_of_twice_the_line_rate_is_answered_then_the_rest_is_ignored() -> None:
    srv = await start_server(max_lines_per_second=5)
    try:
        c = await Caller.dial(srv.tcp_port)
        await c.expect("结束通话请输入 exit。")
        c.send(*["9"] * 30)  # 30 "repeat"s at once: a burst of 10 (twice the rate) is allowed
        answered = await c.expect("您输入得太快了")
        assert answered.count("结束通话请输入 exit。") == 10
        c.close()
    finally:
        await srv.shutdown()


async def test_lines_over_the_rate_are_ignored_with_a_notice() -> None:
    srv = await start_server(max_lines_per_second=5)
    try:
        c = await Caller.dial(srv.tcp_port)
        await c.expect(WELCOME)
        c.send(*["9"] * 100)  # a pasted flood of "repeat"
        await c.expect("您输入得太快了")
        text = await http_get(srv.admin_port, "/metrics")
        assert metric(text, "hotline_refused_total", reason="lines_per_second") >= 1
        assert srv.hub.stats.node_visits["main"] == 1  # repeats do not re-enter; the session is alive
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        answered = False
        while not answered and loop.time() < deadline:  # tokens come back at 5 per second
            c.send("2")
            try:
                await c.expect("剩余 7.5 GB", timeout=0.3)
                answered = True
            except TimeoutError:
                pass
        assert answered
        c.close()
    finally:
        await srv.shutdown()


async def test_first_input_deadline() -> None:
    srv = await start_server(first_input_timeout=0.3)
    try:
        c = await Caller.dial(srv.tcp_port)
        await c.expect(WELCOME)
        assert BYE in await c.closed(timeout=3)
        assert srv.hub.refusals["first_input_timeout"] == 1
        ok = await Caller.dial(srv.tcp_port)  # a caller who speaks in time is not affected
        ok.send("2")
        await ok.expect("剩余 7.5 GB")
        await asyncio.sleep(0.5)  # past its first-input deadline (0.3 s, 50 ms ticks): nothing may happen
        ok.send("#")
        await ok.expect("欢迎致电中国移动 10086")
        assert srv.hub.refusals["first_input_timeout"] == 1
        c.close()
        ok.close()
    finally:
        await srv.shutdown()


def _copy_config(tmp_path: Path) -> Path:
    folder = tmp_path / "config"
    shutil.copytree(CONFIG, folder)
    return folder


def _greeting(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        data = b""
        while b"exit" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.decode()


def _wait(cond: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_an_edit_on_disk_reaches_the_next_caller_within_a_second(tmp_path: Path) -> None:
    folder = _copy_config(tmp_path)
    proc = ServerProcess([sys.executable, "-m", "app", "serve", "--config", str(folder)])
    try:
        menu = folder / "menu.yaml"
        text = menu.read_text(encoding="utf-8")
        edited = time.monotonic()
        menu.write_text(text.replace("欢迎致电中国移动", "您好,欢迎致电中国移动"), encoding="utf-8")
        assert _wait(lambda: "您好,欢迎致电中国移动" in _greeting(proc.tcp_port), 5)
        assert time.monotonic() - edited < 2.0  # debounce 0.3 s + load; well inside a second when quiet
        reloaded = proc.wait_for("menu_reloaded", trigger="file")
        assert reloaded["nodes_changed"] == ["main"]

        menu.write_text(text.replace('"2": data_usage', '"2": data_usag'), encoding="utf-8")
        rejected = proc.wait_for("menu_rejected", trigger="file")
        assert ":38:12: error: node 'main' option \"2\" goes to 'data_usag'" in rejected["errors"][0]
        assert "您好,欢迎致电中国移动" in _greeting(proc.tcp_port)  # the old menu stays

        robot = folder / "robot.yaml"
        robot.write_text(
            robot.read_text(encoding="utf-8").replace("发送短信 CXHF", "发送短信 YE"), encoding="utf-8"
        )
        menu.write_text(text, encoding="utf-8")
        assert _wait(lambda: _ask(proc.udp_port, "话费怎么查").startswith("查询话费余额:发送短信 YE"), 5)
    finally:
        assert proc.stop() == 0


def _ask(port: int, question: str) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1)
        s.sendto(question.encode(), ("127.0.0.1", port))
        try:
            return s.recvfrom(4096)[0].decode()
        except TimeoutError:
            return ""


async def test_alternating_good_and_broken_reloads_under_load_drop_no_session(tmp_path: Path) -> None:
    folder = _copy_config(tmp_path)
    srv = await start_server(folder)
    menu = folder / "menu.yaml"
    good = menu.read_text(encoding="utf-8")
    broken = good.replace("start: main", "start: mian")
    try:
        callers = [await Caller.dial(srv.tcp_port) for _ in range(50)]
        for c in callers:
            await c.expect(WELCOME)
        results = []
        for i in range(10):
            menu.write_text(broken if i % 2 else good.replace("10086!", f"10086 ({i})!"), encoding="utf-8")
            results.append(srv.reload("test"))
            for c in callers[i::10]:
                c.send("2")
                await c.expect("剩余 7.5 GB")
        assert results == [True, False] * 5
        assert len(srv.hub.sessions) == 50
        assert srv.hub.reloads == {"ok": 5, "rejected": 5}
        fresh = await Caller.dial(srv.tcp_port)
        await fresh.expect("10086 (8)!")
        for c in [*callers, fresh]:
            c.close()
    finally:
        await srv.shutdown()


def test_sigterm_with_a_thousand_callers() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2500:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    proc = ServerProcess(
        [sys.executable, "-m", "app", "serve", "--config", str(CONFIG)],
        env={"HOTLINE_MAX_SESSIONS_PER_ADDRESS": "2000"},
    )
    socks: list[socket.socket] = []
    try:
        for _ in range(1000):
            s = socket.create_connection(("127.0.0.1", proc.tcp_port), timeout=10)
            socks.append(s)
        assert _wait(lambda: _active(proc.admin_port) == 1000, 20)
        started = time.monotonic()
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(timeout=10) == 0
        elapsed = time.monotonic() - started
        assert elapsed < 5, elapsed
        goodbyes = 0
        for s in socks:
            data = b""
            s.settimeout(5)
            while chunk := s.recv(65536):
                data += chunk
            goodbyes += BYE.encode() in data
        assert goodbyes == 1000
        stopped = proc.wait_for("server_stopped")
        assert stopped["sessions_said_goodbye"] == 1000
    finally:
        for s in socks:
            s.close()
        proc.stop()


def _active(admin_port: int) -> int:
    try:
        with socket.create_connection(("127.0.0.1", admin_port), timeout=2) as s:
            s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    except OSError:
        return -1
    return int(metric(data.decode(), "hotline_sessions_active"))


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_admin_paths(server: Server, path: str) -> None:
    assert (await http_get(server.admin_port, path)).startswith("HTTP/1.1 200 OK")
