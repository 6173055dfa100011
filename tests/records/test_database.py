"""The records database, SQLite and PostgreSQL alike: creation, migrations, refusals that leave the
database alone, ticket numbers (also from replicas writing at once)."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.records import database as dbm
from app.records.database import DatabaseError, NewTicket
from tests.conftest import RecordsAt
from tests.servers import PostgresServer

DAY = 1_795_000_000.0  # 2026-11-18, some time of day in every time zone's 18th or 19th


def ticket(message: str = "话费扣错了", created: float = DAY) -> NewTicket:
    return NewTicket("s1", "127.0.0.1", "default", message, {"phone": "13800138000"}, "13800138000", created)


def new_database(at: RecordsAt) -> dbm.Db:
    if at.kind == "sqlite":
        dbm.prepare_folder(at.folder)
    return dbm.connect(at.database, create=True)


def test_a_new_database_is_at_the_current_version(records_at: RecordsAt) -> None:
    db = new_database(records_at)
    if db.kind == "sqlite":
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == dbm.VERSION
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    else:
        assert db.execute("SELECT version FROM hotline_schema").fetchall() == [(dbm.VERSION,)]
        assert db.execute("SHOW synchronous_commit").fetchone()[0] == "on"
    db.close()


def test_ticket_ids_count_up_within_a_day_and_start_again_the_next(records_at: RecordsAt) -> None:
    db = new_database(records_at)
    db.begin(lock=dbm.TICKET_LOCK)
    ids = dbm.insert_tickets(db, [ticket(), ticket(created=DAY + 1)])
    ids += dbm.insert_tickets(db, [ticket(created=DAY + 86400)])
    db.commit()
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
    db.close()


def test_replicas_numbering_tickets_at_once_never_share_a_number(postgres_server: PostgresServer) -> None:
    """Four connections (replicas) start on an empty database together, then each stores 50 tickets
    in batches: the migration runs once, and the numbers of a day are 1..200, each once, and count up
    in the order the batches committed."""
    url = postgres_server.database()
    start = threading.Barrier(4)
    got: list[list[str]] = []
    errors: list[BaseException] = []

    def replica(n: int) -> None:
        try:
            start.wait()
            db = dbm.connect(url, create=True)
            for i in range(10):
                db.begin(lock=dbm.TICKET_LOCK)
                ids = dbm.insert_tickets(db, [ticket(f"{n}-{i}-{k}") for k in range(5)])
                got.append(ids)  # while the lock is held (to the commit): in commit order
                db.commit()
            db.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=replica, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    numbers = [int(tid.rsplit("-", 1)[1]) for batch in got for tid in batch]
    assert numbers == list(range(1, 201))
    db = dbm.connect(url, create=False, readonly=True)
    assert db.execute("SELECT version FROM hotline_schema").fetchall() == [(dbm.VERSION,)]
    assert len(dbm.list_tickets(db, limit=1000)) == 200
    db.close()


def test_replicas_number_shared_texts_apart(postgres_server: PostgresServer, tmp_path: Path) -> None:
    url = postgres_server.database()
    a, b = dbm.connect(url, create=True), dbm.connect(url, create=True)
    first, second = dbm.text_numbers(a), dbm.text_numbers(b)
    assert set(first).isdisjoint(second) and len(first) == len(second) == dbm.TEXT_BLOCK
    sqlite = dbm.connect(dbm.prepare_folder(tmp_path), create=True)
    assert dbm.text_numbers(sqlite).start == 1  # one writer: numbers after the last
    for db in (a, b, sqlite):
        db.close()


def test_an_older_database_is_migrated_and_keeps_its_tickets(records_at: RecordsAt) -> None:
    if records_at.kind == "sqlite":
        records_at.folder.mkdir()
        old = sqlite3.connect(records_at.database, isolation_level=None)
        old.executescript(dbm.migration(0, "sqlite"))  # what the previous release created
        old.execute("PRAGMA user_version=1")
    else:
        old = psycopg.connect(records_at.url, autocommit=True)  # type: ignore[assignment]
        old.execute(dbm.migration(0, "postgresql"))  # as a first release on PostgreSQL would have
        old.execute(
            "CREATE TABLE hotline_schema (version INTEGER NOT NULL); INSERT INTO hotline_schema VALUES (1)"
        )
    old.execute(
        "INSERT INTO tickets (id, day, seq, created, session_id, caller, queue, message, vars)"
        " VALUES ('T20261101-0001', '20261101', 1, 1.0, 's', '127.0.0.1', NULL, '旧留言', '{}')"
    )
    old.close()
    db = dbm.connect(records_at.database, create=False)
    version = "PRAGMA user_version" if db.kind == "sqlite" else "SELECT version FROM hotline_schema"
    assert db.execute(version).fetchone()[0] == dbm.VERSION
    kept = dbm.get_ticket(db, "T20261101-0001")
    assert kept is not None and kept["message"] == "旧留言" and kept["callback"] is None
    db.close()


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


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        (
            "CREATE TABLE hotline_schema (version INTEGER); INSERT INTO hotline_schema VALUES (99)",
            "newer hotline (schema 99",
        ),
        ("CREATE TABLE accounts (id INTEGER)", "not a hotline database (it has tables of its own)"),
        (
            "CREATE TABLE hotline_schema (version INTEGER); INSERT INTO hotline_schema VALUES (2);"
            "CREATE TABLE tickets (id TEXT); CREATE TABLE calls (id TEXT)",
            "not a hotline database of schema 2 (no table chunks, texts)",
        ),
    ],
)
def test_a_postgresql_database_it_cannot_use_is_refused_and_left_as_it_is(
    postgres_server: PostgresServer, setup: str, words: str
) -> None:
    url = postgres_server.database().replace("postgres@", "postgres:s3cret@")  # trust: any password
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(setup)
        tables = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1"
        before = conn.execute(tables).fetchall()
        with pytest.raises(DatabaseError) as caught:
            dbm.connect(url, create=True)
        assert conn.execute(tables).fetchall() == before
    message = str(caught.value)
    assert (
        message.startswith(url.replace("s3cret", "***") + ": ") and words in message and "\n" not in message
    )
    assert "s3cret" not in message


def test_a_postgresql_server_not_there_is_one_line_without_the_password() -> None:
    from tests.servers import free_port

    url = f"postgresql://hotline:s3cret@127.0.0.1:{free_port()}/hotline"
    with pytest.raises(DatabaseError) as caught:
        dbm.connect(url, create=True)
    message = str(caught.value)
    assert message.startswith("postgresql://hotline:***@127.0.0.1:") and "cannot connect" in message
    assert "s3cret" not in message and "\n" not in message


def test_a_data_folder_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("x")
    with pytest.raises(DatabaseError, match="the data folder is not a folder"):
        dbm.prepare_folder(tmp_path / "data")


def test_transcripts_older_than_the_retention_are_purged_tickets_stay(records_at: RecordsAt) -> None:
    db = new_database(records_at)
    db.begin()
    dbm.call_started(db, "old", DAY - 40 * 86400, "127.0.0.1")
    dbm.call_started(db, "new", DAY, "127.0.0.1")
    dbm.insert_lines(db, [("old", DAY - 40 * 86400, "caller", "main", None, "1")] * 3)
    dbm.insert_lines(db, [("new", DAY, "caller", "main", None, "2")])
    dbm.insert_tickets(db, [ticket(created=DAY - 40 * 86400)])
    db.commit()
    assert dbm.purge_lines(db, DAY - 30 * 86400) == 1  # the old call's one chunk of three lines
    assert [c["session_id"] for c in dbm.list_calls(db)] == ["new"] and dbm.get_call(db, "old") is None
    assert db.execute("SELECT count(*) FROM chunks").fetchone()[0] == 1
    assert len(dbm.list_tickets(db)) == 1
    db.close()


@given(
    st.lists(
        st.one_of(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.text(), st.none(), st.booleans())
    )
)
def test_a_chunk_is_stored_as_the_standard_librarys_json_to_the_byte(chunk: list[object]) -> None:
    """orjson writes the records thread's chunks; what is stored is exactly what json.dumps
    (compact, not ASCII-escaped) would store, so readers and old rows see one format (a string
    orjson refuses, a lone surrogate, goes through the standard library)."""
    expected = json.dumps(chunk, ensure_ascii=False, separators=(",", ":"))
    assert dbm.chunk_json(chunk) == expected.encode()


def test_a_chunk_with_escapes_is_written_as_before_and_a_lone_surrogate_escaped() -> None:
    assert (
        dbm.chunk_json(
            [1764800000123, "k", "main", "１", 7, 1764800000456, "system", None, None, '话费\n查询 "1"']
        )
        == (
            '[1764800000123,"k","main","１",7,1764800000456,"system",null,null,"话费\\n查询 \\"1\\""]'
        ).encode()
    )
    # what orjson refuses (not UTF-8): the standard library's, the surrogate as JSON's escape
    assert dbm.chunk_json(["话费", "\ud800"]) == '["话费","\\ud800"]'.encode()
    assert json.loads(dbm.chunk_json(["话费", "\ud800"])) == ["话费", "\ud800"]
