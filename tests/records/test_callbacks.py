"""Queued callbacks with a real server, a terminal agent and both databases: a caller waiting long
books one (the number asked, typed masked), keeps their place, and an agent who gets ready is offered
it `from=callback` with the number in full; the same number booked twice keeps one place; the desk
call's outcome is `callback` with the number kept in full; a restart brings a pending callback back."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from app.records import database as dbm
from tests.conftest import RecordsAt, ServerProcess
from tests.net.test_agents import Line, _close_clients
from tests.records.test_desk_calls import PASSWORD, _config, _desk_calls, hotline

__all__ = ["_close_clients"]  # autouse: every line client closed after each test
NUMBER = "13912345678"


def _serve(config: Path, records_at: RecordsAt) -> ServerProcess:
    return ServerProcess(
        [sys.executable, "-m", "app", "serve", "--config", str(config)],
        env={"HOTLINE_LOG_FORMAT": "json", "HOTLINE_RELOAD_WATCH": "false", **records_at.env},
    )


def _agent_on_break(server: ServerProcess) -> Line:
    """Agent 1001 logged in, not ready: callers wait (the estimate, 3 minutes, is over the menu's 2)."""
    agent = Line(server.agent_port)
    agent.expect("HELLO")
    agent.send(f"/login 1001 {PASSWORD}")
    agent.expect("OK login 1001 ")
    return agent


def _book(server: ServerProcess, number: str) -> tuple[Line, str]:
    """A caller who waits, presses 2, types `number` and hears it booked; and their session id."""
    caller = Line(server.tcp_port)
    caller.expect("结束通话请输入 exit。")
    port = caller.sock.getsockname()[1]
    caller.send("0")
    caller.expect("预计等待")
    caller.expect("如需保留排队位置并由坐席回电,请按 2。")
    caller.send("2")
    caller.expect("请输入您的 11 位手机号码,坐席将回电:")
    caller.send(number)
    heard = caller.expect("欢迎致电中国移动 10086!")
    assert f"坐席将致电 *******{number[-4:]},您可以挂机了。" in heard and number not in heard, heard
    started = server.wait_for("session_started", peer=f"127.0.0.1:{port}")
    return caller, str(started["session_id"])


def _wait_row(records_at: RecordsAt, call_id: str, done: Any, timeout: float = 3.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        rows = _desk_calls(records_at, call_id)
        if rows and done(rows[-1]):
            return rows[-1]
        assert time.monotonic() < deadline, f"desk call {call_id}: {rows}"
        time.sleep(0.05)


def test_a_booked_callback_keeps_its_place_and_is_offered_with_the_number(
    tmp_path: Path, records_at: RecordsAt
) -> None:
    server = _serve(_config(tmp_path), records_at)
    try:
        agent = _agent_on_break(server)
        first, first_id = _book(server, NUMBER)
        first.close()  # booked: the caller hangs up, the place stays
        _wait_row(records_at, first_id, lambda r: r["callback"] == NUMBER)
        _, second_id = _book(server, NUMBER)  # the same number again: one callback, the first place
        server.wait_for("callback_duplicate", session_id=second_id)
        assert _wait_row(records_at, second_id, lambda r: r["outcome"] is not None)["outcome"] == "callback"
        waiting = Line(server.tcp_port)  # a live caller behind the callback
        waiting.expect("结束通话请输入 exit。")
        waiting.send("0")
        waiting.expect("您前面还有 1 位客户")
        agent.send("/queue")
        agent.expect("QUEUE default waiting=2 ")
        agent.send("/ready")
        offer = agent.expect(f"CONTEXT {first_id} callback {NUMBER}\r\n")  # in full: the agent dials it
        assert f"OFFER {first_id} queue=default waited=" in offer and " from=callback\r\n" in offer, offer
        agent.send("/accept")
        agent.expect(f"CONNECTED {first_id}\r\n")
        agent.send("/end 已回电")
        agent.expect(f"ENDED {first_id} by=agent\r\n")
        row = _wait_row(records_at, first_id, lambda r: r["outcome"] is not None)
        assert (row["outcome"], row["agent"], row["disposition"], row["callback"]) == (
            "callback",
            "1001",
            "已回电",
            NUMBER,
        )
        shown = json.loads(hotline("calls", "show", first_id, "--json", *records_at.cli).stdout)
        assert [d["callback"] for d in shown["desk_calls"]] == [NUMBER]  # kept in full, like a ticket's
        typed = [line["text"] for line in shown["lines"] if line["direction"] == "caller"]
        assert NUMBER not in typed and "*******5678" in typed, typed  # the transcript has it masked
        assert NUMBER not in "".join(json.dumps(line) for line in server.lines)  # and the log not at all
        agent.expect("OFFER ")  # after wrap-up: the live caller who came after the callback
    finally:
        server.stop()


def test_a_pending_callback_is_back_in_its_queue_after_a_restart(
    tmp_path: Path, records_at: RecordsAt
) -> None:
    config = _config(tmp_path)
    server = _serve(config, records_at)
    try:
        _agent_on_break(server)
        caller, call_id = _book(server, NUMBER)
        caller.close()
        _wait_row(records_at, call_id, lambda r: r["callback"] == NUMBER)
    finally:
        server.stop()
    db = dbm.connect(records_at.database, create=False)
    try:
        assert [r["call_id"] for r in dbm.pending_callbacks(db)] == [call_id]  # kept booked by the stop
    finally:
        db.close()
    again = _serve(config, records_at)
    try:
        agent = _agent_on_break(again)
        agent.send("/ready")
        agent.expect(f"CONTEXT {call_id} callback {NUMBER}\r\n")
    finally:
        again.stop()
