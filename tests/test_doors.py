"""Both doors flooded at once, against a real server started with a low `ulimit -n`: the agent port and
the admin port hold their caps, and a new caller is still greeted (README.md, "The doors")."""

from __future__ import annotations

import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator

import pytest

from tests.conftest import ServerProcess
from tests.helpers import CONFIG

WELCOME = "结束通话请输入 exit。".encode()


def _limited(soft: int, hard: int, env: dict[str, str]) -> ServerProcess:
    """`hotline serve` under `ulimit -Sn soft -Hn hard`, as a shell would start it."""
    command = f"ulimit -Sn {soft} && ulimit -Hn {hard} && exec {shlex.quote(sys.executable)} -m app serve"
    return ServerProcess(["sh", "-c", f"{command} --config {shlex.quote(str(CONFIG))}"], env=env)


def _open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.fixture
def flood() -> Iterator[list[socket.socket]]:
    socks: list[socket.socket] = []
    yield socks
    for s in socks:
        s.close()


def _dial(port: int, source: str) -> socket.socket:
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    return s


def test_a_caller_is_greeted_while_both_doors_are_flooded(flood: list[socket.socket]) -> None:
    proc = _limited(
        soft=100,  # the server raises it to the hard limit at start
        hard=400,
        env={
            "HOTLINE_LOG_FORMAT": "json",
            "HOTLINE_RELOAD_WATCH": "false",
            "HOTLINE_MAX_SESSIONS": "100",
            "HOTLINE_MAX_AGENT_CONNECTIONS": "100",
            "HOTLINE_MAX_HTTP_CONNECTIONS": "100",
        },
    )
    try:
        # 250 idle connections to each door (more than the file limit in all), each address within its cap
        for i in range(250):
            flood.append(_dial(proc.admin_port, f"127.0.10.{i // 50 + 1}"))
            flood.append(_dial(proc.agent_port, f"127.0.11.{i // 10 + 1}"))
        flooded = time.monotonic()
        # at once, long before any timeout could free a descriptor (the header deadline is 10 s)
        with socket.create_connection(("127.0.0.1", proc.tcp_port), timeout=3) as caller:
            greeting = b""
            while WELCOME not in greeting:
                chunk = caller.recv(4096)
                assert chunk, "the caller was hung up on"
                greeting += chunk
        assert time.monotonic() - flooded < 5
        assert _open_files(proc.proc.pid) < 300  # the connections past the caps were closed
        with socket.create_connection(("127.0.0.1", proc.tcp_port), timeout=5) as health:
            pass  # the caller port still accepts
        refused = {line["reason"] for line in proc.lines if line.get("event") == "refused"}
        proc.wait_for("refused", reason="agent_connections")
        proc.wait_for("refused", reason="http_connections")
        assert health is not None and refused <= {"agent_connections", "http_connections"}
    finally:
        proc.stop()
    lines = proc.drain()
    assert not [line for line in lines if "Too many open files" in str(line)]
    assert not [line for line in lines if line.get("event") == "file_limit_low"]  # 400 holds the caps


def test_a_file_limit_that_cannot_hold_the_caps_is_named_at_start() -> None:
    proc = _limited(soft=300, hard=300, env={"HOTLINE_LOG_FORMAT": "json", "HOTLINE_RELOAD_WATCH": "false"})
    try:
        warning = proc.wait_for("file_limit_low")
    finally:
        proc.stop()
    assert warning["limit"] == 300
    assert warning["needed"] == 10_000 + 1_000 + 1_000 + 64  # max_sessions + both doors' caps + reserve
