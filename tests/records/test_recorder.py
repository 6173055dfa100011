"""The recorder on a real event loop (uvloop) and a real database, SQLite and PostgreSQL: group
commit, transcripts, a full disk, PostgreSQL going away and coming back, shutdown."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from app.records import database as dbm
from app.records import recorder as rmod
from app.records.database import NewTicket
from app.records.recorder import Recorder, RecordError
from tests.conftest import RecordsAt, wait_until
from tests.servers import PostgresServer


def ticket(i: int) -> NewTicket:
    return NewTicket(f"s{i}", "127.0.0.1", None, f"留言 {i}", {}, None, time.time())


async def test_tickets_saved_at_once_share_commits_and_get_distinct_ids(records_at: RecordsAt) -> None:
    rec = Recorder(records_at.target, 30)
    rec.start()
    ids = await asyncio.gather(*(rec.save_ticket(ticket(i)) for i in range(200)))
    assert len(set(ids)) == 200
    assert sorted(ids) == sorted(ids, key=lambda t: int(t.rsplit("-", 1)[1]))  # numbered in order
    assert rec.counters.tickets == 200 and rec.counters.commits < 200  # group commit
    await rec.close()
    db = dbm.connect(records_at.database, create=False, readonly=True)
    stored = {t["id"]: t["message"] for t in dbm.list_tickets(db, limit=1000)}
    assert stored == {tid: f"留言 {i}" for i, tid in enumerate(ids)}
    db.close()


async def test_transcript_lines_are_written_in_order_and_close_flushes_them(records_at: RecordsAt) -> None:
    rec = Recorder(records_at.target, 30)
    rec.start()
    now = time.time()
    rec.call_started("c1", now, "10.0.0.1")
    for i in range(1000):
        rec.line("c1", now + i / 1000, "caller" if i % 2 else "system", "main", None, f"第 {i} 行")
    assert await rec.last_lines("c1", 2) == [("system", None, "第 998 行"), ("caller", None, "第 999 行")]
    rec.line("c1", now + 2, "agent", "agent", "1001", "您好")
    rec.call_ended("c1", now + 3, 0)
    await rec.close()  # no flush tick in between: close writes what is gathered
    db = dbm.connect(records_at.database, create=False, readonly=True)
    call = dbm.get_call(db, "c1")
    assert call is not None and call["ended"] is not None and call["caller"] == "10.0.0.1"
    assert len(call["lines"]) == 1001 and call["lines"][-1] == {
        "time": call["lines"][-1]["time"],
        "direction": "agent",
        "node": "agent",
        "text": "您好",
        "agent": "1001",
    }
    db.close()


async def test_a_full_database_fails_tickets_and_drops_lines_counted_never_blocking(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rec = Recorder(tmp_path, 30)
    rec.start()
    assert await rec.save_ticket(ticket(0))
    pages = rec.db.execute("PRAGMA page_count").fetchone()[0]
    rec.db.execute(f"PRAGMA max_page_count={pages}")  # SQLite's own "database or disk is full"
    with pytest.raises(RecordError, match="full"):
        await rec.save_ticket(NewTicket("s", "a", None, "长留言" * 5000, {}, None, time.time()))
    assert rec.counters.ticket_failures == 1
    for _ in range(3):
        rec.line("c", time.time(), "caller", None, None, "满" * 30000)  # needs pages of its own
        rec.flush()
        await rec.last_lines("c", 1)  # a read after the batch: the batch has been tried
    assert rec.counters.dropped == 3 and rec.counters.write_errors == 3
    logged = capsys.readouterr().out
    assert logged.count("transcript_write_failed") == 1  # one log line per incident, not per batch
    assert "ticket_failed" in logged
    rec.db.execute(f"PRAGMA max_page_count={pages * 100}")  # room again: writing resumes
    assert await rec.save_ticket(ticket(1))
    rec.line("c", time.time(), "caller", None, None, "又好了")
    rec.flush()
    assert await rec.last_lines("c", 1) == [("caller", None, "又好了")]
    assert "transcript_recovered" in capsys.readouterr().out
    await rec.close()


async def test_a_backlog_past_its_bound_drops_new_lines_instead_of_growing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rmod, "MAX_BACKLOG", 100)
    rec = Recorder(tmp_path, 30)
    rec.start()
    rec._backlog = 95  # the thread is behind (a slow disk): 95 lines handed over, not yet written
    for _ in range(10):
        rec.line("c", time.time(), "caller", None, None, "x")
    rec.flush()
    assert rec.counters.dropped == 10 and rec.entries == []
    rec._backlog = 0
    assert await rec.last_lines("c", 10) == []  # dropped: not handed on, not written
    await rec.close()


async def test_a_prompt_said_again_and_again_is_stored_once(records_at: RecordsAt) -> None:
    prompt = "欢迎致电中国移动 10086!\n话费查询请按 1,流量查询请按 2。"
    for run in range(2):  # a restart goes on using the prompt's number
        rec = Recorder(records_at.target, 30)
        rec.start()
        now = time.time()
        for call in ("a", "b"):
            rec.call_started(f"{call}{run}", now, "127.0.0.1")
            rec.line(f"{call}{run}", now, "system", "main", None, prompt, shared=True)
            rec.step(f"{call}{run}", now, "main", "9", "main", prompt)
        assert await rec.last_lines(f"b{run}", 3) == [
            ("system", None, prompt),
            ("caller", None, "9"),
            ("system", None, prompt),
        ]
        await rec.close()
    db = dbm.connect(records_at.database, create=False, readonly=True)
    # once as a line's text and once as main's screen, however often said, across the restart
    assert db.execute("SELECT count(*) FROM texts").fetchone()[0] == 2
    call = dbm.get_call(db, "a1")
    assert call is not None and [line["text"] for line in call["lines"]] == [prompt, "9", prompt]
    db.close()


async def test_calls_interleaved_in_one_batch_each_read_back_in_order(
    records_at: RecordsAt, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop appends every call's lines to one list; the thread sorts them into each call's
    chunk: fixed screens by number (past MAX_SHARED_TEXTS in full), rendered ones and plain lines in
    full, each call in its own order."""
    monkeypatch.setattr(rmod, "MAX_SHARED_TEXTS", 2)
    rec = Recorder(records_at.target, 30)
    rec.start()
    now = time.time()
    for call in ("a", "b"):
        rec.call_started(call, now, "127.0.0.1")
    rec.line("a", now, "system", "main", None, "欢迎", shared=True)  # numbered: 1 of 2
    rec.line("b", now, "system", "main", None, "欢迎", shared=True)
    rec.step("a", now + 1, "main", "1", "bill", "话费 100 元", fresh=True)  # rendered: in full
    rec.step("b", now + 1, "main", "2", "data", "流量菜单")  # numbered: 2 of 2
    rec.line("a", now + 2, "caller", "bill", None, "我要人工")
    rec.step("b", now + 2, "data", "*", "main", "主菜单")  # past the bound: in full
    rec.line("a", now + 3, "agent", "bill", "1001", "您好")
    rec.step("a", now + 4, "bill", "#", "data", "流量菜单")  # a's number for b's screen
    await rec.close()
    db = dbm.connect(records_at.database, create=False, readonly=True)
    assert db.execute("SELECT count(*) FROM texts").fetchone()[0] == 2
    said = {}
    for call in ("a", "b"):
        stored = dbm.get_call(db, call)
        assert stored is not None
        said[call] = [(x["direction"], x["node"], x.get("agent"), x["text"]) for x in stored["lines"]]
    assert said["a"] == [
        ("system", "main", None, "欢迎"),
        ("caller", "main", None, "1"),
        ("system", "bill", None, "话费 100 元"),
        ("caller", "bill", None, "我要人工"),
        ("agent", "bill", "1001", "您好"),
        ("caller", "bill", None, "#"),
        ("system", "data", None, "流量菜单"),
    ]
    assert said["b"] == [
        ("system", "main", None, "欢迎"),
        ("caller", "main", None, "2"),
        ("system", "data", None, "流量菜单"),
        ("caller", "data", None, "*"),
        ("system", "main", None, "主菜单"),
    ]
    assert rec.counters.lines == 12  # a step is two
    db.close()


async def test_a_prompt_numbered_for_a_batch_that_failed_is_stored_with_a_later_one(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, 30)
    rec.start()
    prompt = "话费查询请按 1" * 2000  # needs pages of its own
    pages = rec.db.execute("PRAGMA page_count").fetchone()[0]
    rec.db.execute(f"PRAGMA max_page_count={pages}")  # full: the batch numbering the prompt fails
    rec.step("c", time.time(), "main", "9", "main", prompt)
    rec.flush()
    await rec.last_lines("c", 1)  # a read after the batch: the batch has been tried
    assert rec.counters.write_errors == 1 and rec.counters.dropped == 2
    rec.db.execute(f"PRAGMA max_page_count={pages * 100}")  # room again
    rec.step("c", time.time(), "main", "9", "main", prompt)
    assert await rec.last_lines("c", 2) == [("caller", None, "9"), ("system", None, prompt)]
    await rec.close()


async def test_a_line_with_a_lone_surrogate_is_stored_with_its_batch(records_at: RecordsAt) -> None:
    """Not UTF-8 (a web agent's JSON can carry one): stored escaped, not the whole batch lost."""
    rec = Recorder(records_at.target, 30)
    rec.start()
    rec.line("odd", time.time(), "agent", "agent", "1001", "您好\ud800")
    rec.line("plain", time.time(), "caller", "main", None, "查话费")
    assert await rec.last_lines("odd", 1) == [("agent", "1001", "您好\ud800")]
    assert await rec.last_lines("plain", 1) == [("caller", None, "查话费")]
    assert rec.counters.write_errors == 0
    await rec.close()


async def test_replicas_sharing_postgresql_keep_each_others_transcripts_and_prompts(
    postgres_server: PostgresServer,
) -> None:
    """Two recorders on one database (two replicas): a prompt each numbered on its own reads back
    right from either, and a call one wrote the other can read (an agent's /history)."""
    url = postgres_server.database()
    a, b = Recorder(url, 30), Recorder(url, 30)
    a.start()
    b.start()
    now = time.time()
    a.line("on-a", now, "system", "main", None, "甲的提示", shared=True)
    b.line("on-b", now, "system", "main", None, "乙的提示", shared=True)
    b.step("on-b", now, "main", "1", "bill", "话费查询")
    assert await a.last_lines("on-a", 5) == [("system", None, "甲的提示")]  # written by a's thread by now
    assert await b.last_lines("on-a", 5) == [("system", None, "甲的提示")]  # and read through b
    assert await a.last_lines("on-b", 5) == [
        ("system", None, "乙的提示"),
        ("caller", None, "1"),
        ("system", None, "话费查询"),
    ]
    await a.close()
    await b.close()


async def test_postgresql_away_fails_tickets_drops_lines_and_recovers_by_itself(
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = PostgresServer()  # its own: this test stops it
    try:
        rec = Recorder(server.database(), 30)
        rec.start()
        assert await rec.save_ticket(ticket(0))
        server.stop()
        with pytest.raises(RecordError):
            await rec.save_ticket(ticket(1))
        rec.line("c", time.time(), "caller", None, None, "没人记")
        rec.flush()
        assert await wait_until(lambda: rec.counters.dropped == 1)
        assert rec.counters.ticket_failures == 1 and rec.counters.write_errors == 1
        logged = capsys.readouterr().out
        assert "ticket_failed" in logged and "transcript_write_failed" in logged
        server.start()  # the same port: the thread connects again on its next write
        second = await rec.save_ticket(ticket(2))
        assert int(second.rsplit("-", 1)[1]) == 2  # the failed one took no number
        rec.line("c", time.time(), "caller", None, None, "又好了")
        rec.flush()
        assert await rec.last_lines("c", 1) == [("caller", None, "又好了")]
        assert "transcript_recovered" in capsys.readouterr().out
        server.stop()  # a restart between two writes: the first write after it finds the old
        server.start()  # connection closed, and goes on a new one instead of failing
        assert int((await rec.save_ticket(ticket(3))).rsplit("-", 1)[1]) == 3
        assert rec.counters.ticket_failures == 1
        await rec.close()
    finally:
        server.close()
