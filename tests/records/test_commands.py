"""`hotline tickets` and `hotline calls` as an operator runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.records import database as dbm
from app.records.database import NewTicket
from tests.helpers import REPO

T0 = 1_795_000_000.0


def hotline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args], capture_output=True, text=True, timeout=60, cwd=REPO
    )


@pytest.fixture
def data(tmp_path: Path) -> Path:
    db = dbm.connect(dbm.prepare_folder(tmp_path), create=True)
    db.execute("BEGIN")
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
    db.execute("COMMIT")
    db.close()
    return tmp_path


def test_tickets_list_as_a_table_and_as_json(data: Path) -> None:
    day = dbm.ticket_day(T0)
    out = hotline("tickets", "list", "--data", str(data))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["ID", "CREATED", "STATUS", "QUEUE", "CALLBACK", "MESSAGE"]
    assert lines[1].startswith(f"T{day}-0002") and lines[2].startswith(f"T{day}-0001")  # newest first
    assert lines[2].endswith("13800138000  话费扣错了,请回电")
    tickets = json.loads(hotline("tickets", "list", "--json", "--data", str(data)).stdout)
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


def test_close_a_ticket_then_list_by_status(data: Path) -> None:
    day = dbm.ticket_day(T0)
    out = hotline("tickets", "close", f"T{day}-0001", "--note", "已回电", "--data", str(data))
    assert out.returncode == 0 and out.stdout == f"closed T{day}-0001\n"
    closed = json.loads(
        hotline("tickets", "list", "--status", "closed", "--json", "--data", str(data)).stdout
    )
    assert [(t["id"], t["note"]) for t in closed] == [(f"T{day}-0001", "已回电")]
    shown = hotline("tickets", "show", f"T{day}-0001", "--data", str(data)).stdout
    assert "status:     closed" in shown and "已回电" in shown and "var phone:  13800138000" in shown


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["tickets", "show", "T19990101-0001"], "hotline tickets: no ticket T19990101-0001"),
        (["tickets", "close", "T19990101-0001"], "hotline tickets: no ticket T19990101-0001"),
        (["calls", "show", "nope"], "hotline calls: no call nope"),
    ],
)
def test_an_unknown_id_exits_1_with_one_line(data: Path, args: list[str], line: str) -> None:
    out = hotline(*args, "--data", str(data))
    assert out.returncode == 1 and out.stderr.splitlines() == [line] and out.stdout == ""


def test_calls_list_and_show(data: Path) -> None:
    listed = hotline("calls", "list", "--data", str(data)).stdout.splitlines()
    assert listed[0].split() == ["SESSION_ID", "STARTED", "ENDED", "CALLER"] and listed[1].startswith("s1 ")
    shown = hotline("calls", "show", "s1", "--data", str(data)).stdout.splitlines()
    assert shown[0].startswith("call s1 from 10.0.0.7, ")
    assert shown[1].split()[1:] == ["system", "main", "欢迎致电中国移动", "10086!"]
    assert shown[2].strip() == "话费查询请按 1"  # a prompt's second line, under the first
    assert shown[4].split()[1:] == ["agent", "1001", "agent", "您好"]
    assert shown[-1] == "(2 lines not kept)"
    call = json.loads(hotline("calls", "show", "s1", "--json", "--data", str(data)).stdout)
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


def test_backup_copies_the_database_and_never_overwrites(data: Path, tmp_path: Path) -> None:
    copy = tmp_path / "backup.db"
    out = hotline("backup", str(copy), "--data", str(data))
    assert out.returncode == 0 and out.stdout == f"backed up to {copy}\n"
    db = dbm.connect(copy, create=False, readonly=True)
    assert len(dbm.list_tickets(db)) == 2 and dbm.get_call(db, "s1") is not None
    db.close()
    again = hotline("backup", str(copy), "--data", str(data))
    assert again.returncode == 1 and again.stderr.splitlines() == [
        f"hotline backup: {copy}: already exists; give a new file name"
    ]
