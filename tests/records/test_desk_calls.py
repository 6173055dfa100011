"""Every desk call on record, with real server processes and a terminal agent (SQLite and PostgreSQL):
answered with a disposition, given one later for a call the caller ended, abandoned, turned away busy;
`hotline calls show|list` show them; a desk call whose caller heard `connected` is on disk within
2 s of its end and survives kill -9."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from app.desk.passwords import hash_password
from app.records import database as dbm
from tests.conftest import RecordsAt, ServerProcess
from tests.helpers import CONFIG, REPO
from tests.net.test_agents import Line, _close_clients

__all__ = ["_close_clients"]  # autouse: every line client closed after each test
PASSWORD = "desk-calls-1"
DESK = """
version: 1
queues:
  default:
    title: 人工服务
    ring_timeout: 10s
    wrap_up: 5s
agents:
  - {{id: "1001", name: 小王, password_hash: "{hash}", queues: [default]}}
"""


def _config(tmp_path: Path) -> Path:
    folder = tmp_path / "config"
    shutil.copytree(CONFIG, folder)
    (folder / "desk.yaml").write_text(DESK.format(hash=hash_password(PASSWORD)), encoding="utf-8")
    return folder


def _serve(config: Path, records_at: RecordsAt) -> ServerProcess:
    return ServerProcess(
        [sys.executable, "-m", "app", "serve", "--config", str(config)],
        env={"HOTLINE_LOG_FORMAT": "json", "HOTLINE_RELOAD_WATCH": "false", **records_at.env},
    )


def _caller(server: ServerProcess) -> tuple[Line, str]:
    """A caller who pressed 0, and their session id (the CALL_ID)."""
    caller = Line(server.tcp_port)
    caller.expect("结束通话请输入 exit。")
    port = caller.sock.getsockname()[1]
    caller.send("0")
    caller.expect("正在为您转接人工服务")
    started = server.wait_for("session_started", peer=f"127.0.0.1:{port}")
    return caller, str(started["session_id"])


def _desk_calls(records_at: RecordsAt, call_id: str) -> list[dict[str, Any]]:
    db = dbm.connect(records_at.database, create=False)
    try:
        return dbm.desk_calls_of(db, call_id)
    finally:
        db.close()


def _wait_for(records_at: RecordsAt, call_id: str, outcome: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = [d for d in _desk_calls(records_at, call_id) if d["outcome"] == outcome]
        if found:
            return found[-1]
        assert time.monotonic() < deadline, f"no {outcome} desk call for {call_id} within {timeout} s"
        time.sleep(0.05)


def hotline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args], capture_output=True, text=True, timeout=60, cwd=REPO
    )


def test_every_desk_call_is_on_record(tmp_path: Path, records_at: RecordsAt) -> None:
    server = _serve(_config(tmp_path), records_at)
    try:
        busy, busy_id = _caller(server)  # nobody logged in yet: turned away
        busy.expect("抱歉,目前所有坐席均忙。")
        agent = Line(server.agent_port)
        agent.expect("HELLO")
        agent.send(f"/login 1001 {PASSWORD}", "/ready")
        agent.expect("OK ready\r\n")
        caller, call_id = _caller(server)
        agent.expect("CONTEXT")
        agent.send("/accept")
        caller.expect("工号 1001 为您服务。")
        caller.send("我的话费不对")
        agent.expect("CALLER 我的话费不对\r\n")
        agent.send("/end 已解决")
        caller.expect("本次服务已结束")
        caller.expect("请对本次服务评价")  # the agent ended it: the survey
        caller.send("1")
        caller.expect("感谢您的评价!")
        scored_at = time.monotonic()
        answered = _wait_for(records_at, call_id, "answered", 2.0)
        while answered["csat"] is None:  # the score, on disk within 2 s of the keypress
            assert time.monotonic() - scored_at < 2.0, answered
            time.sleep(0.05)
            answered = _wait_for(records_at, call_id, "answered", 2.0)
        assert answered["csat"] == 5
        assert answered["agent"] == "1001" and answered["ended_by"] == "agent"
        assert answered["disposition"] == "已解决" and answered["offers"] == 1 and answered["missed"] == 0
        assert answered["answered"] is not None and answered["talked"] is not None
        agent.expect(f"ENDED {call_id} by=agent\r\n")
        gone, gone_id = _caller(server)  # waits (the agent is in wrap-up), then hangs up
        gone.expect("位客户")
        gone.close()
        abandoned = _wait_for(records_at, gone_id, "abandoned", 3.0)
        assert abandoned["ended_by"] == "caller" and abandoned["agent"] is None
        assert _wait_for(records_at, busy_id, "busy", 2.0)["ended_by"] == "server"
        shown = json.loads(hotline("calls", "show", call_id, "--json", *records_at.cli).stdout)
        assert [(d["queue"], d["outcome"], d["disposition"], d["csat"]) for d in shown["desk_calls"]] == [
            ("default", "answered", "已解决", 5)
        ]
        assert shown["desk_calls"][0]["joined"].endswith("+08:00")  # the server's zone, with its offset
        listed = hotline("calls", "list", *records_at.cli).stdout.splitlines()
        assert listed[0].split()[4:] == ["QUEUE", "AGENT", "OUTCOME", "DISPOSITION"]
        mine = next(line for line in listed if line.startswith(call_id))
        assert mine.split()[-4:] == ["default", "1001", "answered", "已解决"]
    finally:
        server.stop()


def test_a_disposition_after_the_caller_hung_up_and_kill_9_after_the_end(
    tmp_path: Path, records_at: RecordsAt
) -> None:
    server = _serve(_config(tmp_path), records_at)
    agent = Line(server.agent_port)
    agent.expect("HELLO")
    agent.send(f"/login 1001 {PASSWORD}", "/ready")
    agent.expect("OK ready\r\n")
    caller, call_id = _caller(server)
    agent.expect("CONTEXT")
    agent.send("/accept")
    caller.expect("工号 1001 为您服务。")
    ended_at = time.monotonic()
    caller.close()  # the caller hangs up: ended by the caller
    agent.expect(f"ENDED {call_id} by=caller\r\n")
    answered = _wait_for(records_at, call_id, "answered", 2.0)
    assert answered["ended_by"] == "caller" and time.monotonic() - ended_at < 2.5
    agent.send("/disposition 需回访")  # in wrap-up, for a call the caller ended
    agent.expect("OK disposition\r\n")
    deadline = time.monotonic() + 2.0
    while _desk_calls(records_at, call_id)[-1]["disposition"] != "需回访":
        assert time.monotonic() < deadline, "the disposition was not on disk within 2 s"
        time.sleep(0.05)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)
    server.stop()
    again = _desk_calls(records_at, call_id)
    assert [(d["outcome"], d["disposition"]) for d in again] == [("answered", "需回访")]  # across kill -9
