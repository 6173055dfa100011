"""The board's numbers without I/O: today's counts, service level, the last hour, the snapshot."""

from __future__ import annotations

import datetime as dt

from app import zone
from app.desk.board import snapshot
from app.desk.commands import as_json, lines
from app.desk.events import Ok, QueueInfo
from app.desk.tallies import MINUTES, SERVICE_SECONDS, Timeline, Today
from tests.desk.test_core import T0, Link, desk, ready


def test_service_level_counts_answers_within_20_seconds_of_all_answered_abandoned_or_timed_out() -> None:
    today = Today()
    assert today.counts(T0) == (0, 0, None)
    today.answer(T0, 3.0)
    today.answer(T0, SERVICE_SECONDS)
    today.answer(T0, SERVICE_SECONDS + 1)
    today.abandon(T0)
    assert today.counts(T0) == (3, 1, 50)
    today.time_out(T0)
    assert today.counts(T0) == (3, 1, 40)


def test_counts_start_again_at_the_servers_midnight_not_the_processs() -> None:
    """The container runs in UTC; 今日 follows HOTLINE_TIMEZONE (Asia/Shanghai by default): it starts
    again at 16:00 UTC, and not at 00:00 UTC (08:00 in Beijing)."""
    zone.configure("Asia/Shanghai")
    shanghai = dt.timezone(dt.timedelta(hours=8))
    midnight = dt.datetime(2027, 1, 15, tzinfo=shanghai).timestamp()
    today = Today()
    today.answer(midnight - 1, 1.0)
    assert today.counts(midnight - 1) == (1, 0, 100)
    assert today.counts(midnight + 1) == (0, 0, None)
    today.answer(midnight + 1, 1.0)
    utc_midnight = dt.datetime(2027, 1, 15, tzinfo=dt.UTC).timestamp()  # 08:00 in Beijing, same day
    assert today.counts(utc_midnight + 1) == (1, 0, 100)


def test_timeline_keeps_the_peak_and_answers_of_the_last_hour() -> None:
    tl = Timeline()
    start = 60 * 30_000_000.0  # a whole minute
    tl.sample(start, 3)
    tl.sample(start + 10, 7)
    tl.sample(start + 20, 2)
    tl.answer(start + 30)
    tl.answer(start + 70)  # the next minute
    series = tl.series(start + 70)
    assert len(series) == MINUTES
    assert series[-2] == (int(start), 7, 1)
    assert series[-1] == (int(start) + 60, 0, 1)
    # an hour later those minutes are gone, not shown again as the slots come round
    later = tl.series(start + 60 * MINUTES + 70)
    assert all(w == 0 and a == 0 for _, w, a in later)


def test_snapshot_follows_the_desk() -> None:
    d = desk()
    a1, _ = ready(d, "1001")
    callers = [Link() for _ in range(3)]
    for i, c in enumerate(callers):
        assert d.join("default", f"c{i}", c, T0 + i)
    d.accept(a1, T0 + 5)  # c0 waited 5 s
    d.leave("c1", T0 + 6)  # abandoned
    snap = snapshot(d, T0 + 10)
    (q,) = snap["queues"]
    assert (q["waiting"], q["longest"], q["answered"], q["abandoned"], q["service_level"]) == (1, 8, 1, 1, 50)
    assert q["series"][-1][1:] == (3, 1)
    (agent,) = snap["agents"]
    assert (agent["id"], agent["state"], agent["call"], agent["since"]) == ("1001", "in_call", "c0", 5)


def test_one_model_two_encodings() -> None:
    info = QueueInfo("default", "人工服务", 3, 42, 1, 2)
    assert lines(info) == ["QUEUE default waiting=3 longest=42s available=1 busy=2"]
    assert as_json(info) == {
        "type": "queue",
        "queue": "default",
        "title": "人工服务",
        "waiting": 3,
        "longest": 42,
        "available": 1,
        "busy": 2,
    }
    assert lines(Ok("reject", "c9")) == ["OK reject c9"]
    assert as_json(Ok("ready")) == {"type": "ok", "what": "ready", "detail": ""}


def test_a_short_abandon_is_counted_apart_from_the_service_level() -> None:
    today = Today(seconds=20.0, short=5.0)
    today.answer(T0, 10.0)  # within 20 s
    today.abandon(T0, 3.0)  # gave up within 5 s: not held against the queue
    assert today.counts(T0) == (1, 1, 100)
    today.abandon(T0, 60.0)
    assert today.counts(T0) == (1, 2, 50)


def test_the_board_shows_the_level_against_its_target_and_each_agents_satisfaction() -> None:
    d = desk(service_level_target=0.9, service_level_seconds=30)
    a1, _ = ready(d, "1001")
    d.join("default", "c0", Link(), T0)
    d.accept(a1, T0 + 25)  # within the queue's 30 s
    d.scored("1001", 5, T0 + 100)
    d.scored("1001", 4, T0 + 101)
    snap = snapshot(d, T0 + 102)
    (q,) = snap["queues"]
    assert (q["service_level"], q["service_target"], q["service_seconds"]) == (100, 90, 30)
    (agent,) = snap["agents"]
    assert agent["csat"] == 4.5
