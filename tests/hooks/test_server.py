"""Webhooks from the real server process, real receivers on free ports: a ticket, a desk call and a
satisfaction score delivered signed (SQLite); the receiver down and the server killed with kill -9
right after callers heard their ticket numbers, then both back: every event delivered (SQLite and
PostgreSQL); two replicas sharing PostgreSQL deliver each event once."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from app.records import database as dbm
from tests.conftest import RecordsAt, ServerProcess
from tests.helpers import CONFIG, REPO
from tests.hooks.receiver import Receiver, until
from tests.net.test_agents import Line, _close_clients
from tests.records.test_desk_calls import DESK, PASSWORD, _caller
from tests.records.test_durability import leave_messages, metrics_text
from tests.servers import free_port

__all__ = ["_close_clients"]  # autouse: every line client closed after each test
SECRET = "whsec_" + base64.b64encode(b"hotline-test-webhook-key-32bytes").decode()
EVENTS = "[ticket.created, call.completed, survey.answered, callback.booked]"


def hooks_config(tmp_path: Path, url: str, desk: str | None = None) -> Path:
    folder = tmp_path / "config"
    shutil.copytree(CONFIG, folder)
    (folder / "hooks.yaml").write_text(
        f"version: 1\nwebhooks:\n  - name: crm\n    url: {url}\n    events: {EVENTS}\n"
        "    secret: ${TEST_HOOK_SECRET}\n    timeout: 2s\n",
        encoding="utf-8",
    )
    if desk is not None:
        (folder / "desk.yaml").write_text(desk, encoding="utf-8")
    return folder


def serve(config: Path, records_at: RecordsAt) -> ServerProcess:
    return ServerProcess(
        [sys.executable, "-m", "app", "serve", "--config", str(config)],
        env={
            "HOTLINE_LOG_FORMAT": "json",
            "HOTLINE_RELOAD_WATCH": "false",
            "HOTLINE_MAX_SESSIONS_PER_ADDRESS": "1000",
            "HOTLINE_WEBHOOK_RETRY_FIRST": "0.05",
            "HOTLINE_WEBHOOK_RETRY_MAX": "0.5",
            "TEST_HOOK_SECRET": SECRET,
            **records_at.env,
        },
    )


def hotline(*args: str) -> Any:
    out = subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def leave_message(caller: Line, text: str) -> str:
    """At the shipped menu, with nobody logged in: 0, then the message; the ticket number heard."""
    caller.send("0", text)
    caller.expect("工单号是 ")
    return caller.expect("。")[:-1]


def test_a_ticket_a_desk_call_and_a_score_are_delivered_signed(tmp_path: Path) -> None:
    from app.desk.passwords import hash_password

    receiver = Receiver()
    records_at = RecordsAt("sqlite", tmp_path / "data")
    config = hooks_config(tmp_path, receiver.url, DESK.format(hash=hash_password(PASSWORD)))
    server = serve(config, records_at)
    try:
        caller = Line(server.tcp_port)
        ticket_id = leave_message(caller, "请回电 13800138000")
        until(lambda: receiver.of_type("ticket.created", SECRET), what="ticket.created")
        [ticket] = receiver.of_type("ticket.created", SECRET)
        shown = hotline("tickets", "show", ticket_id, "--json", *records_at.cli)
        assert ticket["data"] == shown and ticket["data"]["message"] == "请回电 13800138000"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", ticket["timestamp"])
        until(lambda: receiver.of_type("call.completed", SECRET), what="call.completed (busy)")
        [busy] = receiver.of_type("call.completed", SECRET)
        assert busy["data"]["outcome"] == "busy" and busy["data"]["call_id"] == shown["session_id"]

        agent = Line(server.agent_port)
        agent.expect("HELLO")
        agent.send(f"/login 1001 {PASSWORD}", "/ready")
        agent.expect("OK ready\r\n")
        talker, call_id = _caller(server)
        agent.expect("CONTEXT")
        agent.send("/accept")
        talker.expect("工号 1001 为您服务。")
        agent.send("/end 已解决")
        talker.expect("请对本次服务评价")
        talker.send("1")
        talker.expect("感谢您的评价!")
        until(lambda: receiver.of_type("survey.answered", SECRET), what="survey.answered")
        [score] = receiver.of_type("survey.answered", SECRET)
        assert score["data"]["score"] == 5
        assert score["data"]["call"]["call_id"] == call_id and score["data"]["call"]["agent"] == "1001"
        mine = [b for b in receiver.of_type("call.completed", SECRET) if b["data"]["call_id"] == call_id]
        assert [b["data"]["outcome"] for b in mine] == ["answered"]
        order = [json.loads(r.body)["type"] for r in receiver.requests if call_id in r.body.decode()]
        assert order == ["call.completed", "survey.answered"]  # a call's events in the order written
        assert all(r.verified(SECRET) for r in receiver.requests)
        until(
            lambda: 'hotline_webhook_pending{webhook="crm"} 0.0' in metrics_text(server),
            what="the pending gauge back to 0",
        )
        metrics = metrics_text(server)
        assert 'hotline_webhook_deliveries_total{result="delivered",webhook="crm"} 4.0' in metrics
        listed = hotline("hooks", "list", "--json", *records_at.cli)
        assert sorted(d["type"] for d in listed) == [
            "call.completed", "call.completed", "survey.answered", "ticket.created"
        ]  # fmt: skip
        assert {d["status"] for d in listed} == {"delivered"}
    finally:
        server.stop()
        receiver.close()


async def test_kill_9_right_after_the_ticket_number_with_the_receiver_down_loses_nothing(
    tmp_path: Path, records_at: RecordsAt
) -> None:
    port = free_port()  # nobody listens there yet: every attempt is refused
    config = hooks_config(tmp_path, f"http://127.0.0.1:{port}/hooks")
    server = serve(config, records_at)
    heard: dict[str, str] = {}
    stop = asyncio.Event()

    def on_heard() -> None:
        if len(heard) >= 6 and not stop.is_set():
            stop.set()
            os.kill(server.proc.pid, signal.SIGKILL)  # right after a caller heard a number

    callers = [leave_messages(server.tcp_port, f"c{i}", heard, stop, on_heard) for i in range(3)]
    await asyncio.wait_for(asyncio.gather(*callers), 30)
    assert server.proc.wait(10) == -signal.SIGKILL
    server.stop()
    receiver = Receiver(port)
    again = await asyncio.to_thread(serve, config, records_at)
    try:

        def delivered() -> set[str]:
            return {b["data"]["id"] for b in receiver.of_type("ticket.created", SECRET)}

        await asyncio.to_thread(until, lambda: set(heard) <= delivered(), 30, "every ticket heard delivered")
        assert {b["data"]["message"] for b in receiver.of_type("ticket.created", SECRET)} >= set(
            heard.values()
        )
    finally:
        again.stop()
        receiver.close()


def test_two_replicas_sharing_postgresql_deliver_each_event_once(
    tmp_path: Path, postgres_server: Any
) -> None:
    receiver = Receiver()
    records_at = RecordsAt("postgresql", tmp_path / "data", postgres_server.database())
    config = hooks_config(tmp_path, receiver.url)
    one = serve(config, records_at)
    two = serve(config, RecordsAt("postgresql", tmp_path / "data2", records_at.url))
    try:
        heard = []
        for server in (one, two):
            caller = Line(server.tcp_port)
            heard += [leave_message(caller, f"留言 {i}") for i in range(10)]
        db = dbm.connect(records_at.url, create=False, readonly=True)
        try:

            def settled() -> bool:
                row = db.execute("SELECT count(*) FROM webhook_deliveries WHERE status <> 'delivered'")
                return bool(row.fetchone()[0] == 0)

            until(lambda: len(receiver.requests) >= 40 and settled(), 30, "40 events delivered")
        finally:
            db.close()
        ids = Counter(r.id for r in receiver.requests)
        assert len(ids) == 40 and set(ids.values()) == {1}, ids.most_common(3)  # each once, overall
        assert {b["data"]["id"] for b in receiver.of_type("ticket.created", SECRET)} == set(heard)
        pattern = r'^hotline_webhook_deliveries_total\{result="delivered",webhook="crm"\} (\d+)'
        sent = [re.search(pattern, metrics_text(s), re.M) for s in (one, two)]
        counts = [int(float(m.group(1))) if m else 0 for m in sent]
        assert sum(counts) == 40 and min(counts) > 0, counts  # both replicas sent, none twice
    finally:
        one.stop()
        two.stop()
        receiver.close()


async def test_a_reload_that_adds_hooks_yaml_starts_sending(tmp_path: Path) -> None:
    from tests.conftest import Caller, start_server, wait_until

    receiver = Receiver()
    folder = tmp_path / "config"
    shutil.copytree(CONFIG, folder)
    server = await start_server(folder, reload_watch=False, data=tmp_path / "data")
    try:
        caller = await Caller.dial(server.tcp_port)
        caller.send("0", "第一条")
        await caller.expect("工单号是")
        (folder / "hooks.yaml").write_text(
            f"version: 1\nwebhooks:\n  - {{name: crm, url: '{receiver.url}', events: [ticket.created], "
            f"secret: '{SECRET}'}}\n",
            encoding="utf-8",
        )
        assert server.reload("test")
        caller.send("0", "第二条")
        await caller.expect("工单号是")
        assert await wait_until(lambda: len(receiver.requests) == 1)
        [body] = receiver.of_type("ticket.created", SECRET)
        assert body["data"]["message"] == "第二条"  # the first was stored before there was a webhook
        (folder / "hooks.yaml").unlink()
        assert server.reload("test")
        assert server.hub.records is not None and server.hub.records.hooks["ticket.created"] == ()
        caller.close()
    finally:
        await server.shutdown()
        receiver.close()


def test_a_booked_callback_and_its_end_are_delivered(tmp_path: Path) -> None:
    """callback.booked with the number in full (the CRM dials it), then call.completed with the
    outcome callback once an agent served it: a live caller books one at the shipped menu."""
    from app.desk.passwords import hash_password
    from tests.records.test_callbacks import NUMBER, _agent_on_break, _book

    receiver = Receiver()
    records_at = RecordsAt("sqlite", tmp_path / "data")
    server = serve(
        hooks_config(tmp_path, receiver.url, DESK.format(hash=hash_password(PASSWORD))), records_at
    )
    try:
        agent = _agent_on_break(server)
        caller, call_id = _book(server, NUMBER)
        caller.close()
        until(lambda: receiver.of_type("callback.booked", SECRET), what="callback.booked")
        [booked] = receiver.of_type("callback.booked", SECRET)
        assert (booked["data"]["call_id"], booked["data"]["callback"]) == (call_id, NUMBER)
        agent.send("/ready")
        agent.expect(f"CONTEXT {call_id} callback {NUMBER}\r\n")
        agent.send("/accept")
        agent.expect(f"CONNECTED {call_id}\r\n")
        agent.send("/end 已回电")
        until(lambda: receiver.of_type("call.completed", SECRET), what="call.completed")
        [done] = receiver.of_type("call.completed", SECRET)
        assert (done["data"]["call_id"], done["data"]["outcome"], done["data"]["agent"]) == (
            call_id,
            "callback",
            "1001",
        )
        assert all(r.verified(SECRET) for r in receiver.requests)
    finally:
        server.stop()
        receiver.close()
