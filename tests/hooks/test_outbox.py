"""The outbox as the recorder writes it, SQLite and PostgreSQL: each event with its record, for the
webhooks that take it, in the same commit; none for a record that could not be stored."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from app.records import database as dbm
from app.records import outbox
from app.records.database import DeskCallEnded, NewTicket
from app.records.recorder import Recorder, RecordError
from tests.conftest import RecordsAt, wait_until


def _events(records_at: RecordsAt) -> list[tuple[str, str, dict[str, Any]]]:
    db = dbm.connect(records_at.database, create=False, readonly=True)
    try:
        rows = db.rows("SELECT webhook, type, body FROM webhook_deliveries ORDER BY id")
    finally:
        db.close()
    return [(r["webhook"], r["type"], json.loads(r["body"])) for r in rows]


async def test_each_event_goes_to_the_outbox_with_its_record(records_at: RecordsAt) -> None:
    rec = Recorder(records_at.target, 30)
    woken = asyncio.Event()
    rec.on_outbox = woken.set
    rec.hooks = {"ticket.created": ("crm", "audit"), "call.completed": ("crm",),
                 "survey.answered": ("crm",), "callback.booked": ("crm",)}  # fmt: skip
    rec.start()
    try:
        now = time.time()
        ticket_id = await rec.save_ticket(
            NewTicket(
                "s1", "127.0.0.1:5000", "default", "请回电", {"phone": "13800138000"}, "13800138000", now
            )
        )
        # in the ticket's own commit: there when the caller hears the number, woken at once
        assert [(w, t) for w, t, _ in _events(records_at)] == [
            ("crm", "ticket.created"),
            ("audit", "ticket.created"),
        ]
        assert woken.is_set()
        db = dbm.connect(records_at.database, create=False, readonly=True)
        shown = dbm.get_ticket(db, ticket_id)
        db.close()
        assert _events(records_at)[0][2]["data"] == shown
        rec.desk_joined("s1", "default", now)
        rec.desk_ended(
            DeskCallEnded("s1", "default", now, now + 3, "1001", now + 60, "agent", "answered", 1, 0)
        )
        rec.desk_disposition("s1", "已解决")  # a note: no event
        rec.desk_score("s1", 4)
        rec.desk_joined("s2", "default", now)
        rec.desk_callback("s2", "13900000000", "[]", 3600.0)
        rec.flush()
        assert await wait_until(lambda: len(_events(records_at)) == 5)
        events = _events(records_at)[2:]
        assert [t for _, t, _ in events] == ["call.completed", "survey.answered", "callback.booked"]
        completed, score, callback = (body["data"] for _, _, body in events)
        assert (completed["call_id"], completed["outcome"], completed["agent"], completed["csat"]) == (
            "s1",
            "answered",
            "1001",
            None,  # the record at its end: the score came after
        )
        assert score["score"] == 4 and score["call"]["csat"] == 4 and score["call"]["disposition"] == "已解决"
        assert callback["call_id"] == "s2" and callback["callback"] == "13900000000"
        ids = {body["type"]: body for _, _, body in events}
        assert all(set(b) == {"type", "timestamp", "data"} for b in ids.values())
    finally:
        await rec.close()


async def test_no_webhook_no_event_and_a_failed_ticket_makes_none(records_at: RecordsAt) -> None:
    if records_at.kind != "sqlite":
        pytest.skip("a read-only file is SQLite's way to fail a commit")
    rec = Recorder(records_at.target, 30)
    rec.start()
    try:
        await rec.save_ticket(NewTicket("s1", "127.0.0.1", None, "无人订阅", {}, None, time.time()))
        assert _events(records_at) == []
        rec.hooks = {"ticket.created": ("crm",)}
        rec.db.execute("PRAGMA query_only = ON")  # every write of the recorder now fails
        with pytest.raises(RecordError):
            await rec.save_ticket(NewTicket("s2", "127.0.0.1", None, "存不下", {}, None, time.time()))
        assert _events(records_at) == []  # rolled back with its ticket
        rec.db.execute("PRAGMA query_only = OFF")
        await rec.save_ticket(NewTicket("s3", "127.0.0.1", None, "又能存了", {}, None, time.time()))
        assert [body["data"]["message"] for _, _, body in _events(records_at)] == ["又能存了"]
    finally:
        await rec.close()


def test_an_event_body_is_compact_json_with_a_utc_timestamp() -> None:
    body = outbox.encode("ticket.created", 1_796_285_327.25, {"message": "话费"})
    assert (
        body == '{"type":"ticket.created","timestamp":"2026-12-03T08:08:47.250Z","data":{"message":"话费"}}'
    )
