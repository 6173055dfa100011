"""Transcripts of real calls (in-process server, real sockets, uvloop), in SQLite and in PostgreSQL:
what is kept, what is masked, and the bound on one call."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from app.net import tcp
from app.records import database as dbm
from app.server import Server
from benchmarks.menus import BY_KEY
from tests.conftest import Caller, RecordsAt, start_server, wait_until


async def hang_up(caller: Caller, server: Server) -> None:
    """The caller says exit and the server has let the session go."""
    caller.send("exit")
    await caller.closed()
    caller.close()
    assert await wait_until(lambda: not server.hub.sessions)


async def stored(server: Server, session_id: str) -> list[tuple[str, str | None, str]]:
    rec = server.hub.records
    assert rec is not None
    return await rec.last_lines(session_id, 1000)


async def test_a_call_past_its_bound_keeps_the_start_says_so_and_goes_on(
    monkeypatch: pytest.MonkeyPatch, records_at: RecordsAt
) -> None:
    monkeypatch.setattr(tcp, "MAX_CALL_BYTES", 400)
    server = await start_server(**records_at.settings)
    try:
        caller = await Caller.dial(server.tcp_port)
        await caller.expect("结束通话请输入 exit。")
        session = next(iter(server.hub.sessions))
        for _ in range(5):
            caller.send("9")  # repeat: the whole main prompt again, ~100 characters each time
            await caller.expect("结束通话请输入 exit。")
        caller.send("2")
        await caller.expect("流量")  # the call goes on past the bound
        caller.send("3")  # a plain keypress (the fast path) after the cut: not kept either
        await caller.expect("套餐办理:5G 套餐请按 1")
        lines = await stored(server, session.session_id)
        assert lines[-1] == ("system", None, tcp.TRUNCATED)  # and nothing after it
        assert sum(len(text) for _, _, text in lines[:-1]) <= 400
        rec = server.hub.records
        assert rec is not None and rec.counters.dropped > 0
        await hang_up(caller, server)
    finally:
        await server.shutdown()
    db = dbm.connect(records_at.database, create=False, readonly=True)
    call = dbm.get_call(db, session.session_id)
    assert call is not None and call["dropped"] == rec.counters.dropped and call["ended"] is not None
    db.close()


async def test_transcripts_off_keeps_no_calls_but_tickets(records_at: RecordsAt) -> None:
    server = await start_server(transcripts=False, **records_at.settings)
    try:
        caller = await Caller.dial(server.tcp_port)
        await caller.expect("结束通话请输入 exit。")
        caller.send("0", "请回电")
        await caller.expect("工单号是 T")
        await hang_up(caller, server)
    finally:
        await server.shutdown()
    rec = server.hub.records
    assert rec is not None
    db = dbm.connect(records_at.database, create=False, readonly=True)
    assert dbm.list_calls(db) == [] and [t["message"] for t in dbm.list_tickets(db)] == ["请回电"]
    db.close()


async def test_rendered_screens_are_kept_in_full_at_their_nodes_with_secrets_masked(
    records_at: RecordsAt, tmp_path: Path
) -> None:
    """A menu whose every prompt renders (the caller's address in each) and whose answer names the
    number typed at a sensitive input: each key and the screen it brought are kept, the screen as
    the caller heard it at the node that then waits, the number masked in both."""
    shape = BY_KEY["templated"]
    folder = shape.folder(tmp_path)
    assert shape.menu is not None
    menu = shape.menu()
    menu["nodes"]["main"]["options"]["4"] = "mine"  # a screen that names the number on a plain keypress
    menu["nodes"]["mine"] = {"type": "message", "text": "号码 {phone} 的服务:请按 1。", "next": "main"}
    (folder / "menu.yaml").write_text(yaml.safe_dump(menu, allow_unicode=True), encoding="utf-8")
    server = await start_server(folder, **records_at.settings)
    try:
        caller = await Caller.dial(server.tcp_port)
        await caller.expect("重听请按 9。")
        session = next(iter(server.hub.sessions))
        me = session.engine.caller
        caller.send("1")  # an option to a rendered submenu, before any variable is set
        await caller.expect(f"{me} 的账户服务")
        caller.send("#")
        await caller.expect("重听请按 9。")
        caller.send("3")
        await caller.expect("11 位手机号码")
        caller.send("13800138000")  # the answer names the number, then main again
        heard = await caller.expect("重听请按 9。")
        assert "号码 13800138000 的账户余额" in heard  # the caller hears it in full
        caller.send("1")  # a rendered screen after a sensitive variable is set
        await caller.expect(f"{me} 的账户服务")
        caller.send("#")
        await caller.expect("重听请按 9。")
        caller.send("4")  # one that names it
        assert "号码 13800138000 的服务" in await caller.expect("重听请按 9。")
        await hang_up(caller, server)
    finally:
        await server.shutdown()
    db = dbm.connect(records_at.database, create=False, readonly=True)
    call = dbm.get_call(db, session.session_id)
    db.close()
    assert call is not None
    lines = [(line["direction"], line["node"], line["text"]) for line in call["lines"]]
    assert "13800138000" not in str(lines)
    account = f"{me} 的账户服务:余额提醒请按 1,积分查询请按 2。\n返回上级请按 *,返回主菜单请按 #。"
    assert lines[1:3] == [("caller", "main", "1"), ("system", "account", account)]
    assert ("caller", "ask_phone", "*******8000") in lines
    answer = next(text for direction, node, text in lines if direction == "system" and "账户余额" in text)
    assert "号码 *******8000 的账户余额" in answer and answer.endswith(
        f"尊敬的 {me} 用户,欢迎致电!\n账户服务请按 1,业务办理请按 2,话费查询请按 3。重听请按 9。"
    )
    assert lines[-8:-6] == [("caller", "main", "1"), ("system", "account", account)]
    assert lines[-4][:2] == ("caller", "main") and lines[-3][:2] == ("system", "main")
    assert lines[-3][2].startswith("号码 *******8000 的服务:请按 1。\n尊敬的")
