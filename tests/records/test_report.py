"""`hotline report` and `hotline report abandoned` as an operator runs them (a real CLI process), on
desk calls in SQLite and in PostgreSQL: the exact keys in JSON and CSV, counts, service level with
short abandons, the 90th percentile wait, per-queue thresholds from desk.yaml, by day and hour in the
server's zone (and across a daylight-saving change), by agent, and the abandoned list with the
caller's phone; then a real server whose caller gave a phone number and hung up in the queue."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from app import zone
from app.desk.passwords import hash_password
from app.records import database as dbm
from app.records.report import ABANDONED_KEYS, AGENT_KEYS, QUEUE_KEYS, buckets
from tests.conftest import RecordsAt, ServerProcess
from tests.helpers import CONFIG, REPO
from tests.net.test_agents import Line, _close_clients

__all__ = ["_close_clients"]  # autouse: every line client closed after each test
SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = dt.date(2026, 11, 30)
T0 = dt.datetime(2026, 11, 30, 10, 0, tzinfo=SHANGHAI).timestamp()
PASSWORD = "report-pass-1"
DESK = """
version: 1
queues:
  default: {{ring_timeout: 1s, wrap_up: 1s}}
  vip: {{service_level_seconds: 10s, short_abandon: 0s}}
agents:
  - {{id: "1001", name: 小王, password_hash: "{hash}", queues: [default, vip]}}
  - {{id: "1002", name: 小李, password_hash: "{hash}", queues: [default]}}
"""

# call id, queue, joined (seconds after T0), outcome (None: still waiting), waited, talked, agent, csat
Row = tuple[str, str, float, str | None, float, float | None, str | None, int | None]
ROWS: list[Row] = [
    *[
        (f"a{i}", "default", i * 60.0, "answered", w, 100.0, "1001" if i < 4 else "1002", s)
        for i, (w, s) in enumerate([(5, 5), (10, 4), (12, 1), (15, None), (20, None), (25, None), (30, None)])
    ],
    ("ab1", "default", 500.0, "abandoned", 2.0, None, None, None),  # a short abandon: out of the level
    ("ab2", "default", 600.0, "abandoned", 40.0, None, None, None),
    ("to1", "default", 700.0, "timeout", 600.0, None, None, None),
    ("bu1", "default", 800.0, "busy", 0.0, None, None, None),
    ("cl1", "default", 900.0, "closed", 0.0, None, None, None),
    ("cb1", "default", 1000.0, "callback", 100.0, 60.0, "1001", None),
    ("wa1", "default", 1100.0, None, 0.0, None, None, None),
    ("v1", "vip", 0.0, "answered", 8.0, 50.0, "1001", None),
    ("v2", "vip", 60.0, "answered", 12.0, 70.0, "1001", None),
    ("v3", "vip", 120.0, "abandoned", 1.0, None, None, None),  # short_abandon 0: in the level
    ("tomorrow", "default", 86400.0, "answered", 1.0, 10.0, "1001", None),
]
PHONES = {"ab2": "13800138000", "to1": "13912345678"}


def hotline(*args: str, zone: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HOTLINE_TIMEZONE"}  # default: Asia/Shanghai
    if zone is not None:
        env["HOTLINE_TIMEZONE"] = zone
    return subprocess.run(
        [sys.executable, "-m", "app", *args], capture_output=True, text=True, timeout=60, cwd=REPO, env=env
    )


def _config(tmp_path: Path) -> Path:
    folder = tmp_path / "config"
    shutil.copytree(CONFIG, folder)
    (folder / "desk.yaml").write_text(DESK.format(hash=hash_password(PASSWORD)), encoding="utf-8")
    return folder


def _seed(records_at: RecordsAt, rows: list[Row], base: float = T0, misses: int = 0) -> None:
    if records_at.kind == "sqlite":
        dbm.prepare_folder(records_at.folder)
    db = dbm.connect(records_at.database, create=True)
    db.begin()
    for call_id, queue, at, outcome, waited, talked, agent, csat in rows:
        joined = base + at
        dbm.desk_joined(db, call_id, queue, joined, PHONES.get(call_id))
        if outcome is None:
            continue
        answered = joined + waited if talked is not None else None
        ended = joined + waited + (talked or 0.0)
        by = "agent" if agent else "caller"
        end = dbm.DeskCallEnded(call_id, queue, joined, answered, agent, ended, by, outcome, 1, 0)
        dbm.desk_ended(db, end)
        if csat is not None:
            dbm.desk_note(db, call_id, "csat", csat)
    for i in range(misses):
        dbm.desk_missed(db, f"a{i}", "default", "1002", base + 30 + i)
    db.commit()
    db.close()


@pytest.fixture
def seeded(records_at: RecordsAt, tmp_path: Path) -> list[str]:
    """The rows above on record (and two offers 1002 let ring out); the options that report on them."""
    _seed(records_at, ROWS, misses=2)
    return [*records_at.cli, "--config", str(_config(tmp_path))]


def test_the_report_by_queue_in_json_and_csv(seeded: list[str]) -> None:
    out = hotline("report", "--from", DAY.isoformat(), "--json", *seeded)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [list(r) for r in rows] == [["queue", *QUEUE_KEYS]] * 2  # exactly these keys, in this order
    default, vip = rows
    assert (
        default
        == {
            "queue": "default",
            "offered": 14,  # every desk call that joined that day, the one still waiting too
            "answered": 7,
            "abandoned": 2,
            "short_abandoned": 1,
            "timeout": 1,
            "busy": 1,
            "closed": 1,
            "callbacks": 1,
            "service_level": 0.556,  # 5 within 20 s (20 s itself is within) of 7 answered + 2 abandoned - 1 short + 1 timeout
            "avg_wait": 75.9,  # of the 10 who waited live: 759 s
            "p90_wait": 40.0,  # the 9th of 10 waits in order
            "avg_talk": 95.0,  # 7 answered at 100 s and a callback at 60 s
            "csat_avg": 3.33,
            "csat_count": 3,
        }
    )
    # vip's own thresholds: answered within 10 s, and no abandon is short
    assert (vip["queue"], vip["service_level"], vip["short_abandoned"], vip["p90_wait"]) == (
        "vip",
        0.333,
        0,
        12.0,
    )
    table = hotline("report", "--from", DAY.isoformat(), *seeded).stdout.splitlines()
    assert table[0] == "2026-11-30 (Asia/Shanghai), by queue"
    assert table[1].split()[:3] == ["QUEUE", "OFFERED", "ANSWERED"]
    assert table[2].split()[:2] == ["default", "14"] and "56%" in table[2].split()
    sheet = list(
        csv.reader(io.StringIO(hotline("report", "--from", DAY.isoformat(), "--csv", *seeded).stdout))
    )
    assert sheet[0] == ["queue", *QUEUE_KEYS]
    assert sheet[1] == [
        "default",
        "14",
        "7",
        "2",
        "1",
        "1",
        "1",
        "1",
        "1",
        "0.556",
        "75.9",
        "40.0",
        "95.0",
        "3.33",
        "3",
    ]
    only = json.loads(
        hotline("report", "--from", DAY.isoformat(), "--queue", "vip", "--json", *seeded).stdout
    )
    assert [r["queue"] for r in only] == ["vip"]
    two_days = json.loads(
        hotline("report", "--from", "2026-11-30", "--to", "2026-12-01", "--json", *seeded).stdout
    )
    assert two_days[0]["offered"] == 15 and two_days[0]["answered"] == 8  # with the next day's call


def test_a_level_is_null_when_nothing_counted_and_empty_days_have_no_rows(seeded: list[str]) -> None:
    rows = json.loads(hotline("report", "--from", "2026-12-01", "--json", *seeded).stdout)
    assert [(r["queue"], r["offered"]) for r in rows] == [("default", 1)]
    none = hotline("report", "--from", "2026-12-05", "--json", *seeded)
    assert none.returncode == 0 and json.loads(none.stdout) == []
    assert hotline("report", "--from", "2026-12-05", *seeded).stdout.splitlines()[-1] == "no desk calls"


def test_by_agent(seeded: list[str]) -> None:
    rows = json.loads(hotline("report", "--from", DAY.isoformat(), "--by", "agent", "--json", *seeded).stdout)
    assert [list(r) for r in rows] == [list(AGENT_KEYS)] * 2
    assert rows == [
        {
            "agent": "1001",
            "name": "小王",
            "answered": 6,  # 4 in default, 2 in vip
            "callbacks": 1,
            "talked": 580.0,
            "avg_talk": 82.9,
            "missed": 0,
            "csat_avg": 3.33,
            "csat_count": 3,
        },
        {
            "agent": "1002",
            "name": "小李",
            "answered": 3,
            "callbacks": 0,
            "talked": 300.0,
            "avg_talk": 100.0,
            "missed": 2,
            "csat_avg": None,
            "csat_count": 0,
        },
    ]
    vip = json.loads(
        hotline("report", "--by", "agent", "--queue", "vip", "--from", "2026-11-30", "--json", *seeded).stdout
    )
    assert [(r["agent"], r["answered"], r["missed"]) for r in vip] == [("1001", 2, 0)]
    sheet = hotline(
        "report", "--from", DAY.isoformat(), "--by", "agent", "--csv", *seeded
    ).stdout.splitlines()
    assert sheet[0] == ",".join(AGENT_KEYS)


def test_days_and_hours_are_the_server_zones(records_at: RecordsAt, tmp_path: Path) -> None:
    late = dt.datetime(2026, 11, 30, 23, 30, tzinfo=SHANGHAI).timestamp()  # 15:30 UTC
    _seed(records_at, [("n1", "default", 0.0, "answered", 5.0, 10.0, "1001", None),
                       ("n2", "default", 3600.0, "abandoned", 9.0, None, None, None)], base=late)  # fmt: skip
    opts = [*records_at.cli, "--config", str(_config(tmp_path)), "--from", "2026-11-30", "--to", "2026-12-01"]
    by_day = json.loads(hotline("report", "--by", "day", "--json", *opts).stdout)
    assert [list(r)[:2] for r in by_day] == [["queue", "day"]] * 2
    assert [(r["day"], r["offered"], r["answered"], r["abandoned"]) for r in by_day] == [
        ("2026-11-30", 1, 1, 0),
        ("2026-12-01", 1, 0, 1),
    ]
    utc = json.loads(hotline("report", "--by", "day", "--json", *opts, zone="UTC").stdout)
    assert [(r["day"], r["offered"]) for r in utc] == [("2026-11-30", 2)]  # 15:30 and 16:30 UTC
    by_hour = json.loads(hotline("report", "--by", "hour", "--json", *opts).stdout)
    assert [(r["hour"], r["offered"]) for r in by_hour] == [
        ("2026-11-30T23:00:00+08:00", 1),
        ("2026-12-01T00:00:00+08:00", 1),
    ]
    sheet = hotline("report", "--by", "hour", "--csv", *opts).stdout.splitlines()
    assert sheet[0] == ",".join(["queue", "hour", *QUEUE_KEYS])


def test_an_hour_said_twice_when_the_clocks_go_back(records_at: RecordsAt, tmp_path: Path) -> None:
    # New York, 2026-11-01: 01:00-02:00 comes twice (EDT, then EST); the day has 25 hours
    first = dt.datetime(2026, 11, 1, 5, 30, tzinfo=dt.UTC).timestamp()  # 01:30 EDT
    _seed(records_at, [("d1", "default", 0.0, "answered", 5.0, 10.0, "1001", None),
                       ("d2", "default", 3600.0, "answered", 5.0, 10.0, "1001", None),  # 01:30 EST
                       ("d3", "default", 22 * 3600.0, "answered", 5.0, 10.0, "1001", None)],  # 22:30 EST
          base=first)  # fmt: skip
    opts = [*records_at.cli, "--config", str(_config(tmp_path)), "--from", "2026-11-01"]
    by_hour = json.loads(hotline("report", "--by", "hour", "--json", *opts, zone="America/New_York").stdout)
    assert [(r["hour"], r["offered"]) for r in by_hour] == [
        ("2026-11-01T01:00:00-04:00", 1),
        ("2026-11-01T01:00:00-05:00", 1),
        ("2026-11-01T22:00:00-05:00", 1),
    ]
    by_day = json.loads(hotline("report", "--by", "day", "--json", *opts, zone="America/New_York").stdout)
    assert [(r["day"], r["offered"]) for r in by_day] == [("2026-11-01", 3)]


def test_the_abandoned_list(seeded: list[str]) -> None:
    out = hotline("report", "abandoned", "--from", DAY.isoformat(), "--json", *seeded)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [list(r) for r in rows] == [list(ABANDONED_KEYS)] * 4
    assert [(r["call_id"], r["queue"], r["waited"], r["phone"]) for r in rows] == [
        ("to1", "default", 600.0, "13912345678"),  # newest first, timeouts too, the number in full
        ("ab2", "default", 40.0, "13800138000"),
        ("ab1", "default", 2.0, None),
        ("v3", "vip", 1.0, None),
    ]
    assert rows[0]["joined"] == "2026-11-30T10:11:40+08:00"
    vip = json.loads(
        hotline("report", "abandoned", "--queue", "vip", "--from", "2026-11-30", "--json", *seeded).stdout
    )
    assert [r["call_id"] for r in vip] == ["v3"]
    sheet = hotline("report", "abandoned", "--from", DAY.isoformat(), "--csv", *seeded).stdout.splitlines()
    assert sheet[:2] == [",".join(ABANDONED_KEYS), "to1,default,2026-11-30T10:11:40+08:00,600.0,13912345678"]
    table = hotline("report", "abandoned", "--from", DAY.isoformat(), *seeded).stdout.splitlines()
    assert table[1].split() == ["CALL_ID", "QUEUE", "JOINED", "WAITED", "PHONE"]
    assert table[2].split() == ["to1", "default", "2026-11-30T10:11:40+08:00", "600s", "13912345678"]


def test_mistakes_are_told(seeded: list[str], tmp_path: Path) -> None:
    backwards = hotline("report", "--from", "2026-12-01", "--to", "2026-11-30", *seeded)
    assert backwards.returncode == 2 and "--to is before --from" in backwards.stderr
    mixed = hotline("report", "abandoned", "--by", "day", *seeded)
    assert mixed.returncode == 2 and "--by" in mixed.stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "desk.yaml").write_text(
        "version: 1\nqueues:\n  default: {service_level_secs: 10s}\n", encoding="utf-8"
    )
    bad = hotline("report", *seeded[:2], "--config", str(broken))
    assert bad.returncode == 1 and f"{broken / 'desk.yaml'}:3:" in bad.stderr


def test_a_caller_who_gave_their_number_and_hung_up_is_on_the_list(
    tmp_path: Path, records_at: RecordsAt
) -> None:
    config = _config(tmp_path)
    server = ServerProcess(
        [sys.executable, "-m", "app", "serve", "--config", str(config)],
        env={"HOTLINE_LOG_FORMAT": "json", "HOTLINE_RELOAD_WATCH": "false", **records_at.env},
    )
    try:
        agent = Line(server.agent_port)
        agent.expect("HELLO")
        agent.send(f"/login 1002 {PASSWORD}", "/ready")
        agent.expect("OK ready\r\n")
        caller = Line(server.tcp_port)
        caller.expect("结束通话请输入 exit。")
        caller.send("1", "13800138000")  # 话费查询: the number is saved as `phone`
        caller.expect("尊敬的张先生")
        caller.expect("结束通话请输入 exit。")
        caller.send("0")
        caller.expect("正在为您转接人工服务")
        agent.expect("OFFER ")
        call_id = agent.expect("\r\n").split()[0]
        agent.expect(f"MISSED {call_id}")  # rang out (ring_timeout 1s): a miss on record for 1002
        caller.close()
        opts = [*records_at.cli, "--config", str(config)]
        deadline = time.monotonic() + 5.0
        while not (rows := json.loads(hotline("report", "abandoned", "--json", *opts).stdout)):
            assert time.monotonic() < deadline, "the abandoned call was not reported within 5 s"
            time.sleep(0.05)
        assert [(r["call_id"], r["queue"], r["phone"]) for r in rows] == [(call_id, "default", "13800138000")]
        agents = json.loads(hotline("report", "--by", "agent", "--json", *opts).stdout)
        assert [(r["agent"], r["name"], r["missed"], r["answered"]) for r in agents] == [
            ("1002", "小李", 1, 0)
        ]
        queues = json.loads(hotline("report", "--json", *opts).stdout)
        assert [(r["queue"], r["offered"], r["abandoned"]) for r in queues] == [("default", 1, 1)]
    finally:
        server.stop()


def test_desk_calls_of_an_older_database_are_reported_after_the_migration(records_at: RecordsAt) -> None:
    """A database from before the reports' migration (found by the table it makes, not its number)."""
    before = next(i for i, made in enumerate(dbm.TABLES) if "desk_misses" in made)
    if records_at.kind == "sqlite":
        records_at.folder.mkdir()
        old: Any = sqlite3.connect(records_at.database, isolation_level=None)
        for step in range(before):
            old.executescript(dbm.migration(step, "sqlite"))
        old.execute(f"PRAGMA user_version={before}")
    else:
        old = psycopg.connect(records_at.url, autocommit=True)
        for step in range(before):
            old.execute(dbm.migration(step, "postgresql"))
        old.execute(
            f"CREATE TABLE hotline_schema (version INTEGER NOT NULL); INSERT INTO hotline_schema VALUES ({before})"
        )
    mark = "?" if records_at.kind == "sqlite" else "%s"
    old.execute(
        "INSERT INTO desk_calls (call_id, queue, joined, ended, ended_by, outcome, waited, offers, missed)"
        f" VALUES ('old1', 'default', {mark}, {mark}, 'caller', 'abandoned', 30.0, 1, 0)",
        (T0, T0 + 30),
    )
    old.close()
    dbm.connect(records_at.database, create=False).close()  # the server's start migrates
    out = hotline("report", "abandoned", "--from", DAY.isoformat(), "--json", *records_at.cli)
    assert out.returncode == 0, out.stderr
    assert [(r["call_id"], r["waited"], r["phone"]) for r in json.loads(out.stdout)] == [("old1", 30.0, None)]
    rows = json.loads(hotline("report", "--from", DAY.isoformat(), "--json", *records_at.cli).stdout)
    assert [(r["queue"], r["offered"], r["abandoned"], r["service_level"]) for r in rows] == [
        ("default", 1, 1, 0.0)
    ]


def test_buckets_follow_the_zones_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zone, "_zone", [ZoneInfo("America/New_York")])
    spring = buckets(dt.date(2026, 3, 8), dt.date(2026, 3, 8), "hour")  # 02:00 never happens
    assert len(spring) == 23 and [b.label[11:13] for b in spring[:3]] == ["00", "01", "03"]
    assert (
        all(b.end - b.start == 3600 for b in spring)
        and spring[-1].end == buckets(dt.date(2026, 3, 9), dt.date(2026, 3, 9), None)[0].start
    )
    (day,) = buckets(dt.date(2026, 3, 8), dt.date(2026, 3, 8), "day")
    assert (day.label, day.end - day.start) == ("2026-03-08", 23 * 3600)
    monkeypatch.setattr(zone, "_zone", [ZoneInfo("Asia/Kathmandu")])  # +05:45
    hours = buckets(dt.date(2026, 12, 1), dt.date(2026, 12, 2), "hour")
    assert len(hours) == 48 and hours[0].label == "2026-12-01T00:00:00+05:45"
    assert hours[0].start == dt.datetime(2026, 11, 30, 18, 15, tzinfo=dt.UTC).timestamp()
