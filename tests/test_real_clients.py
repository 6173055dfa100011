"""The real server process, dialled with the real `nc` and `telnet` a caller would use."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pexpect

from tests.conftest import ServerProcess
from tests.helpers import CONFIG, system_tool

WELCOME = "欢迎致电中国移动 10086"
BYE = "感谢您致电中国移动 10086,再见!"


def test_nc_walks_the_menu_and_sees_clean_text(server_process: ServerProcess) -> None:
    script = "1\n13800138000\n3\n1\n1\n*\n*\n1001\nexit\n"
    out = subprocess.run(
        [system_tool("nc"), "-N", "127.0.0.1", str(server_process.tcp_port)],
        input=script.encode(),
        capture_output=True,
        timeout=20,
        check=True,
    ).stdout
    text = out.decode("utf-8")
    assert b"\xff" not in out  # no telnet negotiation for nc users
    for wanted in [
        WELCOME,
        "尊敬的张先生",
        "5G 畅享 128 元套餐请按 1",
        "已成功预约办理 5G 畅享 128 元套餐",
        "业务代码是 1001",
        BYE,
    ]:
        assert wanted in text
    assert text.index("已成功预约办理") < text.index("业务代码是 1001") < text.index(BYE)
    assert text.endswith(BYE + "\r\n")
    server_process.wait_for("session_ended", reason="completed")


def test_telnet_in_a_terminal(server_process: ServerProcess) -> None:
    child = pexpect.spawn(
        system_tool("telnet"),
        ["127.0.0.1", str(server_process.tcp_port)],
        encoding="utf-8",
        timeout=10,
        env={"LANG": "C.UTF-8", "TERM": "xterm"},
    )
    try:
        child.expect("Escape character is")
        child.expect(WELCOME)
        child.expect("结束通话请输入 exit。")
        child.sendline("2")
        child.expect("剩余 7.5 GB")
        child.sendline("3")
        child.expect("套餐办理")
        child.sendline("*")
        child.expect(WELCOME)
        child.sendline("nonsense")
        child.expect("输入有误,请重新输入。")
        child.sendline("quit")
        child.expect(BYE)
        child.expect("Connection closed by foreign host")
        child.expect(pexpect.EOF)
        assert "\ufffd" not in child.before
    finally:
        child.close(force=True)


def test_telnet_without_its_escape_key_takes_a_message_in_chinese(server_process: ServerProcess) -> None:
    """`telnet -E` as the README says: plain telnet takes a byte of some Chinese characters (话 is
    E8 AF 9D) for its escape key ^] and drops to its own prompt."""
    child = pexpect.spawn(
        system_tool("telnet"),
        ["-E", "127.0.0.1", str(server_process.tcp_port)],
        encoding="utf-8",
        timeout=10,
        env={"LANG": "C.UTF-8", "TERM": "xterm"},
    )
    try:
        child.expect("结束通话请输入 exit。")
        child.sendline("0")  # nobody is logged in: a message instead
        child.expect("请留言")
        child.sendline("话费扣错了,请回电")
        child.expect(r"工单号是 (T\d{8}-\d{4})。")
        ticket = child.match.group(1)
        child.sendline("exit")
        child.expect(BYE)
    finally:
        child.close(force=True)
    shown = subprocess.run(
        [sys.executable, "-m", "app", "tickets", "show", ticket, "--data", str(server_process.data)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "message:    话费扣错了,请回电" in shown.stdout


def test_sigterm_says_goodbye_to_connected_callers_and_exits_0() -> None:
    proc = ServerProcess([sys.executable, "-m", "app", "serve", "--config", str(CONFIG)])
    callers = []
    try:
        for _ in range(30):
            s = socket.create_connection(("127.0.0.1", proc.tcp_port), timeout=5)
            callers.append(s)
        for s in callers:
            assert WELCOME.encode() in _read_until(s, "结束通话请输入 exit。".encode())
        started = time.monotonic()
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.wait_exit() == 0  # not stop(): its own SIGTERM could land after the handlers are gone
        assert time.monotonic() - started < 5
        for s in callers:
            assert BYE.encode() in _read_until(s, b"")  # the goodbye, then the server closes
        stopped = proc.wait_for("server_stopped")
        assert stopped["sessions_said_goodbye"] == 30 and stopped["sessions_aborted"] == 0
    finally:
        for s in callers:
            s.close()
        proc.stop()


def test_sigint_stops_cleanly_too(server_process: ServerProcess) -> None:
    server_process.proc.send_signal(signal.SIGINT)
    assert server_process.wait_exit() == 0


def _read_until(s: socket.socket, marker: bytes) -> bytes:
    data = b""
    s.settimeout(5)
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk
        if marker and marker in data:
            return data
