"""`hotline tickets` and `hotline calls` as an operator runs them, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.records import database as dbm
from app.records.database import NewTicket
from tests.conftest import RecordsAt
from tests.helpers import REPO
from tests.servers import PostgresServer

T0 = 1_795_000_000.0


def hotline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args], capture_output=True, text=True, timeout=60, cwd=REPO
    )


@pytest.fixture
def data(records_at: RecordsAt) -> list[str]:
    """Records of two tickets and a call; the CLI's options that read them."""
    if records_at.kind == "sqlite":
        dbm.prepare_folder(records_at.folder)
    db = dbm.connect(records_at.database, create=True)
    db.begin()
    dbm.insert_tickets(
        db,
        [
            NewTicket(
                "s1", "10.0.0.7", "default", "话费扣错了,请回电", {"phone": "13800138000"}, "13800138000", T0
            ),
            NewTicket("s2", "10.0.0.8", None, "流量包没生效", {}, None, T0 + 60),
        ],
    )
    dbm.call_started(db, "s1", T0 - 30, "10.0.0.7")
    dbm.insert_lines(
        db,
        [
            ("s1", T0 - 30, "system", "main", None, "欢迎致电中国移动 10086!\n话费查询请按 1"),
            ("s1", T0 - 20, "caller", "main", None, "0"),
            ("s1", T0 - 10, "agent", "agent", "1001", "您好"),
        ],
    )
    dbm.call_ended(db, "s1", T0, 2)
    db.commit()
    db.close()
    return records_at.cli


def test_tickets_list_as_a_table_and_as_json(data: list[str]) -> None:
    day = dbm.ticket_day(T0)
    out = hotline("tickets", "list", *data)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["ID", "CREATED", "STATUS", "QUEUE", "CALLBACK", "MESSAGE"]
    assert lines[1].startswith(f"T{day}-0002") and lines[2].startswith(f"T{day}-0001")  # newest first
    assert lines[2].endswith("13800138000  话费扣错了,请回电")
    tickets = json.loads(hotline("tickets", "list", "--json", *data).stdout)
    assert [t["id"] for t in tickets] == [f"T{day}-0002", f"T{day}-0001"]
    first = tickets[1]
    assert {k: first[k] for k in ("status", "session_id", "caller", "queue", "message", "vars")} == {
        "status": "open",
        "session_id": "s1",
        "caller": "10.0.0.7",
        "queue": "default",
        "message": "话费扣错了,请回电",
        "vars": {"phone": "13800138000"},
    }
    assert first["created"].startswith("20") and "T" in first["created"]


def test_close_a_ticket_then_list_by_status(data: list[str]) -> None:
    day = dbm.ticket_day(T0)
    out = hotline("tickets", "close", f"T{day}-0001", "--note", "已回电", *data)
    assert out.returncode == 0 and out.stdout == f"closed T{day}-0001\n"
    closed = json.loads(hotline("tickets", "list", "--status", "closed", "--json", *data).stdout)
    assert [(t["id"], t["note"]) for t in closed] == [(f"T{day}-0001", "已回电")]
    shown = hotline("tickets", "show", f"T{day}-0001", *data).stdout
    assert "status:     closed" in shown and "已回电" in shown and "var phone:  13800138000" in shown


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["tickets", "show", "T19990101-0001"], "hotline tickets: no ticket T19990101-0001"),
        (["tickets", "close", "T19990101-0001"], "hotline tickets: no ticket T19990101-0001"),
        (["calls", "show", "nope"], "hotline calls: no call nope"),
    ],
)
def test_an_unknown_id_exits_1_with_one_line(data: list[str], args: list[str], line: str) -> None:
    out = hotline(*args, *data)
    assert out.returncode == 1 and out.stderr.splitlines() == [line] and out.stdout == ""


def test_calls_list_and_show(data: list[str]) -> None:
    listed = hotline("calls", "list", *data).stdout.splitlines()
    headers = ["SESSION_ID", "STARTED", "ENDED", "CALLER", "QUEUE", "AGENT", "OUTCOME", "DISPOSITION"]
    assert listed[0].split() == headers and listed[1].startswith("s1 ")
    shown = hotline("calls", "show", "s1", *data).stdout.splitlines()
    assert shown[0].startswith("call s1 from 10.0.0.7, ")
    assert shown[1].split()[1:] == ["system", "main", "欢迎致电中国移动", "10086!"]
    assert shown[2].strip() == "话费查询请按 1"  # a prompt's second line, under the first
    assert shown[4].split()[1:] == ["agent", "1001", "agent", "您好"]
    assert shown[-1] == "(2 lines not kept)"
    call = json.loads(hotline("calls", "show", "s1", "--json", *data).stdout)
    assert (call["session_id"], call["caller"], len(call["lines"])) == ("s1", "10.0.0.7", 3)
    assert {k: call["lines"][2][k] for k in ("direction", "node", "text", "agent")} == {
        "direction": "agent",
        "node": "agent",
        "text": "您好",
        "agent": "1001",
    }


def test_no_database_yet_is_one_clear_line(tmp_path: Path) -> None:
    out = hotline("tickets", "list", "--data", str(tmp_path / "nothing"))
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f"hotline tickets: {tmp_path / 'nothing' / 'hotline.db'}: no database here (the server creates it on its first start)"
    ]


def test_backup_copies_the_database_and_never_overwrites(data: list[str], tmp_path: Path) -> None:
    if data[0] == "--database-url":
        out = hotline("backup", str(tmp_path / "backup.db"), *data)
        assert out.returncode == 1 and out.stderr.splitlines() == [
            f"hotline backup: {data[1]}: the records are in PostgreSQL: back them up with pg_dump"
        ]
        return
    copy = tmp_path / "backup.db"
    out = hotline("backup", str(copy), *data)
    assert out.returncode == 0 and out.stdout == f"backed up to {copy}\n"
    db = dbm.connect(copy, create=False, readonly=True)
    assert len(dbm.list_tickets(db)) == 2 and dbm.get_call(db, "s1") is not None
    db.close()
    again = hotline("backup", str(copy), *data)
    assert again.returncode == 1 and again.stderr.splitlines() == [
        f"hotline backup: {copy}: already exists; give a new file name"
    ]


def test_no_hotline_tables_in_postgresql_yet_is_one_clear_line(postgres_server: PostgresServer) -> None:
    url = postgres_server.database()
    out = hotline("calls", "list", "--database-url", url)
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f"hotline calls: {url}: no hotline tables here (the server creates them on its first start)"
    ]


def test_where_the_records_are_comes_from_the_environment_too(data: list[str]) -> None:
    variable = {"--data": "HOTLINE_DATA", "--database-url": "HOTLINE_DATABASE_URL"}[data[0]]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")} | {variable: data[1]}
    out = subprocess.run(
        [sys.executable, "-m", "app", "tickets", "list", "--json"],
        capture_output=True, text=True, timeout=60, cwd=REPO, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)) == 2


def test_records_an_older_hotline_wrote_are_shown_without_controls_or_bidi_overrides(
    records_at: RecordsAt,
) -> None:
    """Before the line discipline removed C1 controls and bidi overrides, callers' text was stored
    as typed: the CLI, the console's ticket API and /history show it cleaned (app.text)."""
    typed = "话费\x9b31m\x85不对\u202e0008\u202c\x1b[2J"
    clean = "话费31m不对0008[2J"
    if records_at.kind == "sqlite":
        dbm.prepare_folder(records_at.folder)
    db = dbm.connect(records_at.database, create=True)
    db.begin()
    vars_ = {"phone": "1380\u202e0138000", "account": {"户名": "张\u2066三\u2069"}}
    [ticket_id] = dbm.insert_tickets(db, [NewTicket("s9", "10.0.0.9", None, typed, vars_, None, T0)])
    dbm.call_started(db, "s9", T0 - 30, "10.0.0.9")
    dbm.insert_lines(
        db,
        [
            ("s9", T0 - 30, "system", "main", None, "欢迎\u200f致电\n话费查询请按 1"),
            ("s9", T0 - 20, "caller", "main", None, typed),
            ("s9", T0 - 10, "agent", "agent", "1001", "您好\u202e"),
        ],
    )
    dbm.call_ended(db, "s9", T0, 0)
    db.commit()
    dbm.close_ticket(db, ticket_id, "已回电\x85", T0 + 60)
    assert dbm.last_lines(db, "s9", 20) == [  # what /history shows
        ("system", None, "欢迎致电\n话费查询请按 1"),
        ("caller", None, clean),
        ("agent", "1001", "您好"),
    ]
    db.close()
    cli = records_at.cli
    outputs = [
        hotline("tickets", "show", ticket_id, *cli).stdout,
        hotline("tickets", "list", "--status", "closed", *cli).stdout,
        hotline("calls", "show", "s9", *cli).stdout,
    ]
    ticket = json.loads(hotline("tickets", "show", ticket_id, "--json", *cli).stdout)
    call = json.loads(hotline("calls", "show", "s9", "--json", *cli).stdout)
    assert (ticket["message"], ticket["vars"], ticket["note"]) == (
        clean,
        {"phone": "13800138000", "account": {"户名": "张三"}},
        "已回电",
    )
    assert [line["text"] for line in call["lines"]] == ["欢迎致电\n话费查询请按 1", clean, "您好"]
    for out in outputs:
        assert not set(out) & set("\x9b\x85\u202e\u202c\u2066\u2069\u200f\x1b"), out
        assert clean in out
    assert outputs[2].splitlines()[2].strip() == "话费查询请按 1"  # a screen keeps its lines
