"""The records database: creation, migrations, refusals that leave the file alone, ticket numbers."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from app.records import database as dbm
from app.records.database import DatabaseError, NewTicket

DAY = 1_795_000_000.0  # 2026-11-18, some time of day in every time zone's 18th or 19th


def ticket(message: str = "话费扣错了", created: float = DAY) -> NewTicket:
    return NewTicket("s1", "127.0.0.1", "default", message, {"phone": "13800138000"}, "13800138000", created)


def test_a_new_database_is_in_wal_mode_at_the_current_version(tmp_path: Path) -> None:
    path = dbm.prepare_folder(tmp_path / "data")
    db = dbm.connect(path, create=True)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == dbm.VERSION
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    db.close()


def test_ticket_ids_count_up_within_a_day_and_start_again_the_next(tmp_path: Path) -> None:
    db = dbm.connect(tmp_path / "h.db", create=True)
    db.execute("BEGIN")
    ids = dbm.insert_tickets(db, [ticket(), ticket(created=DAY + 1)])
    ids += dbm.insert_tickets(db, [ticket(created=DAY + 86400)])
    db.execute("COMMIT")
    day, next_day = dbm.ticket_day(DAY), dbm.ticket_day(DAY + 86400)
    assert ids == [f"T{day}-0001", f"T{day}-0002", f"T{next_day}-0001"]
    stored = dbm.get_ticket(db, ids[1])
    assert stored is not None
    assert (stored["message"], stored["vars"], stored["callback"], stored["status"]) == (
        "话费扣错了",
        {"phone": "13800138000"},
        "13800138000",
        "open",
    )
    assert [t["id"] for t in dbm.list_tickets(db)] == [ids[2], ids[1], ids[0]]  # newest first
    assert dbm.close_ticket(db, ids[0], "已回电", DAY + 100)
    assert [t["id"] for t in dbm.list_tickets(db, "closed")] == [ids[0]]
    assert not dbm.close_ticket(db, "T19990101-0001", None, DAY)


def test_an_older_database_is_migrated_and_keeps_its_tickets(tmp_path: Path) -> None:
    path = tmp_path / "hotline.db"
    old = sqlite3.connect(path, isolation_level=None)
    old.executescript(dbm.MIGRATIONS[0])  # what the previous release created
    old.execute("PRAGMA user_version=1")
    old.execute(
        "INSERT INTO tickets (id, day, seq, created, session_id, caller, queue, message, vars)"
        " VALUES ('T20261101-0001', '20261101', 1, 1.0, 's', '127.0.0.1', NULL, '旧留言', '{}')"
    )
    old.close()
    db = dbm.connect(path, create=False)
    assert db.execute("PRAGMA user_version").fetchone()[0] == dbm.VERSION
    kept = dbm.get_ticket(db, "T20261101-0001")
    assert kept is not None and kept["message"] == "旧留言" and kept["callback"] is None


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"this is not a database at all, just text" * 100, "not a usable database"),
        (None, "newer hotline (schema 99"),
        ("foreign", "not a hotline database"),
        ("mislaid", "not a hotline database of schema 2 (no table chunks, texts)"),
    ],
)
def test_a_database_it_cannot_use_is_refused_and_left_as_it_is(
    tmp_path: Path, content: bytes | str | None, words: str
) -> None:
    path = tmp_path / "hotline.db"
    if content is None:
        db = sqlite3.connect(path)
        db.execute("PRAGMA user_version=99")
        db.close()
    elif content == "mislaid":  # claims schema 2, with another layout (an early development build)
        db = sqlite3.connect(path)
        db.executescript(
            "CREATE TABLE tickets (id TEXT); CREATE TABLE calls (id TEXT); CREATE TABLE lines (t REAL);"
        )
        db.execute("PRAGMA user_version=2")
        db.commit()
        db.close()
    elif content == "foreign":
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE accounts (id INTEGER)")
        db.commit()
        db.close()
    else:
        assert isinstance(content, bytes)
        path.write_bytes(content)
    before = path.read_bytes()
    with pytest.raises(DatabaseError) as caught:
        dbm.connect(path, create=True)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and words in message and "\n" not in message
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hotline.db"]  # no -wal or -shm left behind


def test_a_data_folder_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("x")
    with pytest.raises(DatabaseError, match="the data folder is not a folder"):
        dbm.prepare_folder(tmp_path / "data")


def test_transcripts_older_than_the_retention_are_purged_tickets_stay(tmp_path: Path) -> None:
    db = dbm.connect(tmp_path / "h.db", create=True)
    db.execute("BEGIN")
    dbm.call_started(db, "old", DAY - 40 * 86400, "127.0.0.1")
    dbm.call_started(db, "new", DAY, "127.0.0.1")
    dbm.insert_lines(db, [("old", DAY - 40 * 86400, "caller", "main", None, "1")] * 3)
    dbm.insert_lines(db, [("new", DAY, "caller", "main", None, "2")])
    dbm.insert_tickets(db, [ticket(created=DAY - 40 * 86400)])
    db.execute("COMMIT")
    assert dbm.purge_lines(db, DAY - 30 * 86400) == 1  # the old call's one chunk of three lines
    assert [c["session_id"] for c in dbm.list_calls(db)] == ["new"] and dbm.get_call(db, "old") is None
    assert db.execute("SELECT count(*) FROM chunks").fetchone()[0] == 1
    assert len(dbm.list_tickets(db)) == 1
