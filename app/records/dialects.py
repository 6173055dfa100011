"""What differs between SQLite and PostgreSQL, in one place: a `Dialect` for each (`SQLITE`,
`POSTGRESQL`), and `Db`, the connection every query of database.py runs through.

database.py is written once for both; each difference is one member of the dialect:

- opening (`SQLite.open`, `PostgreSQL.open`): a file in the data folder, created 0600, in autocommit
  mode; or a URL, in autocommit mode, each statement given 15 s.
- DDL (`ddl`): the types and the extras filled into the blanks of database.MIGRATIONS.
- the schema version (`version`, `set_version`): SQLite's `user_version`; PostgreSQL's table
  `hotline_schema`.
- what is there (`inspect`): the tables, and a database of someone else's refused.
- the session (`set_up_session`): a SQLite writer in WAL mode with a small cache; a PostgreSQL reader
  read-only.
- placeholders (`execute`, `executemany`): the queries are written with `?`, psycopg takes `%s`.
- reconnection (`PostgreSQL.execute`): a connection the server closed is made again (with the
  session's settings) for a statement outside a transaction; a SQLite file never goes away.
- transactions (`begin`, `rollback`): the writer's lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: an
  advisory lock held to the commit) and how durable the commit is (SQLite synchronous=FULL or NORMAL,
  PostgreSQL synchronous_commit on or off); nothing to roll back on a lost PostgreSQL connection.
- claiming rows (`skip_locked`, `begin(writing=True)`): PostgreSQL's replicas claim webhook deliveries
  at once, each skipping the rows another holds; SQLite's one writer takes the write lock first.
- migrating (`migrating`): one migrator at a time (SQLite: BEGIN IMMEDIATE; PostgreSQL: a session
  advisory lock taken before the transaction).
- numbers for shared texts (`text_numbers`): after the last one (SQLite has one writer); the n-th
  block, n from a sequence (PostgreSQL: replicas write at once).
- backup (`backup`): SQLite's online backup; PostgreSQL's own tools (pg_dump).
"""

from __future__ import annotations

import os
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import psycopg

from app.logs import without_password

FILE_MODE = 0o600  # every file hotline keeps in the data folder (database.tighten)
DatabaseErrors = (sqlite3.Error, psycopg.Error)  # what a query can raise on either

# The connection of each dialect: Db[C] and Dialect[C] go together.
C = TypeVar("C", sqlite3.Connection, psycopg.Connection[Any])


class DatabaseError(Exception):
    """The data folder or its database cannot be used; the message is one line naming the path."""


def one_line(exc: BaseException) -> str:
    """An error's message on one line (psycopg's span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def is_postgres(target: str | Path) -> bool:
    """`target` is a PostgreSQL URL (else the path of a SQLite file or of the data folder)."""
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


class Cursor(Protocol):
    """What the queries use of a cursor (sqlite3's and psycopg's alike)."""

    @property
    def description(self) -> Any: ...
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Db(Generic[C]):
    """One connection to the records database, in autocommit mode (transactions are begun and
    committed explicitly), with the dialect that speaks to it. `where` names it in messages (a path,
    or the URL masked). Whatever differs, a method hands to the dialect with this Db: so code holding
    a Db of either dialect (AnyDb) needs no test of which it is, and each dialect gets its own
    connection type."""

    def __init__(self, dialect: Dialect[C], conn: C, where: str, url: str = "") -> None:
        self.dialect: Dialect[C] = dialect
        self.conn: C = conn
        self.where = where
        self.url = url  # PostgreSQL: to connect again after the server went away (never shown)
        self.settings: list[str] = []  # of this session, made again on a new connection

    @property
    def kind(self) -> str:
        """The dialect's name: "sqlite" or "postgresql"."""
        return self.dialect.name

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        return self.dialect.execute(self, sql, args)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.dialect.executemany(self, sql, rows)

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cur = self.execute(sql, args)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur]

    def begin(self, *, lock: int = 0, durable: bool = True, writing: bool = False) -> None:
        """Start a transaction. `lock`: as the writer (SQLite: BEGIN IMMEDIATE; PostgreSQL: that
        advisory lock, held to the commit). `durable`: the commit reaches the disk before it returns.
        `writing`: it will write after reading (SQLite: BEGIN IMMEDIATE, so that it waits for the
        other writer rather than fail; PostgreSQL: no lock, rows are locked as they are claimed)."""
        self.dialect.begin(self, lock=lock, durable=durable, writing=writing)

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        self.dialect.rollback(self)

    def close(self) -> None:
        self.conn.close()

    def setting(self, statement: str) -> None:
        """A session setting (PostgreSQL's SET) that a new connection gets too."""
        self.execute(statement)
        self.settings.append(statement)

    def text_numbers(self, block: int) -> range:
        return self.dialect.text_numbers(self, block)

    def backup(self, dest: Path) -> None:
        self.dialect.backup(self, dest)


# A Db of either dialect: what connect() returns and the queries take.
AnyDb = Db[sqlite3.Connection] | Db[psycopg.Connection[Any]]


class Dialect(ABC, Generic[C]):
    """How one database does what database.py needs (see the module's docstring); one instance of
    each, shared by all connections."""

    name: ClassVar[str]  # what a Db's `kind` says
    ddl: ClassVar[Mapping[str, str]]  # what MIGRATIONS' blanks are here
    skip_locked: ClassVar[str]  # ends a SELECT that claims rows several processes may want at once
    utf8_text: ClassVar[str]  # a parameter of UTF-8 bytes, stored as text (no str made in between)

    @abstractmethod
    def execute(self, db: Db[C], sql: str, args: Sequence[Any]) -> Cursor: ...

    @abstractmethod
    def executemany(self, db: Db[C], sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    @abstractmethod
    def begin(self, db: Db[C], *, lock: int, durable: bool, writing: bool = False) -> None: ...

    @abstractmethod
    def rollback(self, db: Db[C]) -> None: ...

    @abstractmethod
    def version(self, db: Db[C]) -> int:
        """The schema version (0: no hotline tables)."""

    @abstractmethod
    def set_version(self, db: Db[C], version: int) -> None: ...

    @abstractmethod
    def inspect(self, db: Db[C], *, create: bool) -> tuple[int, set[str]]:
        """The schema version and the tables there; DatabaseError for a database of someone else's."""

    @abstractmethod
    def set_up_session(self, db: Db[C], *, readonly: bool) -> None:
        """Settings for a reader (`readonly`) or the writer, once the database was found usable."""

    @abstractmethod
    def migrating(self, db: Db[C], lock: int) -> AbstractContextManager[None]:
        """A transaction in which to migrate, the only one migrating (`lock`); committed at the end,
        rolled back on an exception."""

    @abstractmethod
    def text_numbers(self, db: Db[C], block: int) -> range:
        """The numbers this process may give new shared texts (PostgreSQL: `block` of them)."""

    @abstractmethod
    def backup(self, db: Db[C], dest: Path) -> None: ...


@contextmanager
def _transaction(db: Db[C], *, lock: int = 0) -> Iterator[None]:
    db.begin(lock=lock)
    try:
        yield
        db.commit()
    except BaseException:
        db.rollback()
        raise


def _foreign(db: Db[C]) -> DatabaseError:
    return DatabaseError(f"{db.where}: not a hotline database (it has tables of its own); left as it is")


# ---- SQLite: `hotline.db` in the data folder, WAL: one writer (the server's thread), any readers --------


def create_private(path: Path) -> bool:
    """Create the empty file `path` with mode 0600 (not 0644 as SQLite would); False when it exists.
    (SQLite makes a new database 0644 and its -wal, -shm and -journal files with the database's
    mode, so a database created this way keeps every file of it private. An empty file is an empty
    database to SQLite.)"""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE))
    except FileExistsError:
        return False
    return True


class SQLite(Dialect[sqlite3.Connection]):
    """The default: one file in the data folder."""

    name = "sqlite"
    ddl: ClassVar[Mapping[str, str]] = {
        "real": "REAL",
        "int64": "INTEGER",
        "rowid": "",
        "text_blocks": "",
        "serial": "INTEGER PRIMARY KEY",  # the rowid itself: kept across VACUUM
    }
    skip_locked = ""  # one writer: nothing to skip
    utf8_text = "CAST(? AS TEXT)"  # a BLOB cast to TEXT: its bytes, read as the database's UTF-8

    def open(self, path: Path, *, create: bool, readonly: bool) -> Db[sqlite3.Connection]:
        if not path.exists():
            if not create:
                raise DatabaseError(f"{path}: no database here (the server creates it on its first start)")
            try:
                create_private(path)
            except OSError as exc:
                raise DatabaseError(f"{path}: cannot create the database ({exc.strerror})") from None
        mode = "ro" if readonly else ("rwc" if create else "rw")
        try:
            conn = sqlite3.connect(
                f"file:{path}?mode={mode}",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                timeout=10,
            )
        except sqlite3.Error as exc:
            raise DatabaseError(f"{path}: cannot open the database ({exc})") from None
        return Db(self, conn, str(path))

    def execute(self, db: Db[sqlite3.Connection], sql: str, args: Sequence[Any]) -> Cursor:
        return db.conn.execute(sql, args)

    def executemany(self, db: Db[sqlite3.Connection], sql: str, rows: Iterable[Sequence[Any]]) -> None:
        db.conn.executemany(sql, rows)

    def begin(self, db: Db[sqlite3.Connection], *, lock: int, durable: bool, writing: bool = False) -> None:
        db.conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        db.conn.execute("BEGIN IMMEDIATE" if lock or writing else "BEGIN")

    def rollback(self, db: Db[sqlite3.Connection]) -> None:
        db.conn.execute("ROLLBACK")

    def version(self, db: Db[sqlite3.Connection]) -> int:
        return int(db.conn.execute("PRAGMA user_version").fetchone()[0])

    def set_version(self, db: Db[sqlite3.Connection], version: int) -> None:
        db.conn.execute(f"PRAGMA user_version={int(version)}")

    def inspect(self, db: Db[sqlite3.Connection], *, create: bool) -> tuple[int, set[str]]:
        version = self.version(db)
        if version == 0 and db.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise _foreign(db)
        return version, {
            row[0] for row in db.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }

    def set_up_session(self, db: Db[sqlite3.Connection], *, readonly: bool) -> None:
        if not readonly:
            db.conn.execute("PRAGMA journal_mode=WAL")
            db.conn.execute("PRAGMA cache_size=-512")  # KiB: the writer appends, it needs little cache
            db.conn.execute("PRAGMA synchronous=FULL")

    @contextmanager
    def migrating(self, db: Db[sqlite3.Connection], lock: int) -> Iterator[None]:
        with _transaction(db, lock=lock):  # BEGIN IMMEDIATE: the one writer
            yield

    def text_numbers(self, db: Db[sqlite3.Connection], block: int) -> range:
        last = db.conn.execute("SELECT coalesce(max(id), 0) FROM texts").fetchone()[0]
        return range(last + 1, 1 << 62)

    def backup(self, db: Db[sqlite3.Connection], dest: Path) -> None:
        try:
            if not create_private(dest):
                raise DatabaseError(f"{dest}: already exists; give a new file name")
            target = sqlite3.connect(dest)
        except (OSError, sqlite3.Error) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else exc
            raise DatabaseError(f"{dest}: cannot create the backup ({reason})") from None
        try:
            db.conn.backup(target)
        except BaseException:
            target.close()
            dest.unlink(missing_ok=True)
            raise
        target.close()


# ---- PostgreSQL: `HOTLINE_DATABASE_URL`, shared by replicas ----------------------------------------


class PostgreSQL(Dialect[psycopg.Connection[Any]]):
    """The tables in the URL's database (its default schema), written by every replica at once."""

    name = "postgresql"
    ddl: ClassVar[Mapping[str, str]] = {
        "real": "DOUBLE PRECISION",
        "int64": "BIGINT",
        "rowid": "rowid BIGINT GENERATED ALWAYS AS IDENTITY,",
        "text_blocks": "CREATE SEQUENCE text_blocks;",  # a replica's numbers for texts: a block each
        "serial": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    }
    skip_locked = " FOR UPDATE SKIP LOCKED"  # replicas claim at once: each skips the rows another holds
    utf8_text = "convert_from(?, 'UTF8')"  # bytea to text (checked as UTF-8 by the server)

    def __init__(self) -> None:
        self._marks: dict[str, str] = {}  # a query with ? marks -> with psycopg's %s marks

    def open(self, url: str) -> Db[psycopg.Connection[Any]]:
        where = without_password(url)
        return Db(self, self._connect(url, where), where, url)

    def _connect(self, url: str, where: str) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(
                url,
                autocommit=True,
                connect_timeout=10,
                application_name="hotline",
                # ms: a stuck server fails a write, never hangs the writer
                options="-c statement_timeout=15000",
            )
        except psycopg.Error as exc:
            raise DatabaseError(f"{where}: cannot connect ({one_line(exc)})") from None

    def _reconnect(self, db: Db[psycopg.Connection[Any]]) -> psycopg.Connection[Any]:
        conn = db.conn = self._connect(db.url, db.where)
        for statement in db.settings:
            conn.execute(statement)
        return conn

    def _q(self, sql: str) -> str:
        out = self._marks.get(sql)
        if out is None:
            out = self._marks[sql] = sql.replace("%", "%%").replace("?", "%s")
        return out

    def execute(self, db: Db[psycopg.Connection[Any]], sql: str, args: Sequence[Any]) -> Cursor:
        conn = db.conn
        if conn.closed:
            conn = self._reconnect(db)
        idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        try:
            return conn.execute(self._q(sql), args)
        except psycopg.OperationalError:
            # The server restarted since the last statement (its connection is found closed only
            # now): outside a transaction nothing was done, so once more on a new connection.
            if not (idle and conn.closed):
                raise
            return self._reconnect(db).execute(self._q(sql), args)

    def executemany(self, db: Db[psycopg.Connection[Any]], sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with db.conn.cursor() as cur:
            cur.executemany(self._q(sql), rows)

    def begin(
        self, db: Db[psycopg.Connection[Any]], *, lock: int, durable: bool, writing: bool = False
    ) -> None:
        # one round trip (lock is one of our constants, never outside input)
        sync = "" if durable else "; SET LOCAL synchronous_commit = off"
        db.execute(f"BEGIN{sync}" + (f"; SELECT pg_advisory_xact_lock({int(lock)})" if lock else ""))

    def rollback(self, db: Db[psycopg.Connection[Any]]) -> None:
        if not db.conn.closed:
            db.conn.execute("ROLLBACK")

    def version(self, db: Db[psycopg.Connection[Any]]) -> int:
        if db.execute("SELECT to_regclass('hotline_schema')").fetchone()[0] is None:
            return 0
        row = db.execute("SELECT version FROM hotline_schema").fetchone()
        return int(row[0]) if row else 0

    def set_version(self, db: Db[psycopg.Connection[Any]], version: int) -> None:
        db.execute("CREATE TABLE IF NOT EXISTS hotline_schema (version INTEGER NOT NULL)")
        db.execute("DELETE FROM hotline_schema")
        db.execute("INSERT INTO hotline_schema (version) VALUES (?)", (version,))

    def inspect(self, db: Db[psycopg.Connection[Any]], *, create: bool) -> tuple[int, set[str]]:
        version = self.version(db)
        tables = {
            row[0]
            for row in db.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
            )
        } - {"hotline_schema"}
        if version == 0 and tables:  # or another replica's migration committed between the two reads:
            version = self.version(db)  # its tables and version commit together, so read it again
        if version == 0 and tables:
            raise _foreign(db)
        if version == 0 and not create:
            raise DatabaseError(
                f"{db.where}: no hotline tables here (the server creates them on its first start)"
            )
        return version, tables

    def set_up_session(self, db: Db[psycopg.Connection[Any]], *, readonly: bool) -> None:
        if readonly:
            db.setting("SET default_transaction_read_only = on")

    @contextmanager
    def migrating(self, db: Db[psycopg.Connection[Any]], lock: int) -> Iterator[None]:
        # Held by the session, taken before the transaction: a transaction begun after it sees the
        # tables another replica made while we waited (a lock taken inside one would not: PostgreSQL
        # reads the catalog afresh only on a table's lock).
        db.execute("SELECT pg_advisory_lock(?)", (lock,))
        try:
            with _transaction(db):
                yield
        finally:
            if not db.conn.closed:
                db.execute("SELECT pg_advisory_unlock(?)", (lock,))

    def text_numbers(self, db: Db[psycopg.Connection[Any]], block: int) -> range:
        n = db.execute("SELECT nextval('text_blocks')").fetchone()[0]
        return range(n * block, (n + 1) * block)

    def backup(self, db: Db[psycopg.Connection[Any]], dest: Path) -> None:
        raise DatabaseError(f"{db.where}: the records are in PostgreSQL: back them up with pg_dump")


SQLITE, POSTGRESQL = SQLite(), PostgreSQL()
