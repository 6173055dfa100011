"""Transcripts of real calls (in-process server, real sockets, uvloop), in SQLite and in PostgreSQL:
what is kept, what is masked, and the bound on one call."""

from __future__ import annotations

import pytest

from app.net import tcp
from app.records import database as dbm
from app.server import Server
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
