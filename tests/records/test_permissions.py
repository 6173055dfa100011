"""The records are private (README.md, "The doors": tickets hold full call-back numbers): the data
folder is 0700 and every file the server or `hotline backup` writes in or from it is 0600, whatever
the umask; a folder an older hotline left readable is tightened at start, once, and the log says so.
Real server processes, a real caller leaving a ticket, the real CLI."""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

from app.records import database as dbm
from app.web.auth import SECRET_FILE
from tests.conftest import ServerProcess
from tests.helpers import CONFIG, REPO

HEARD = re.compile(r"工单号是 (T\d{8}-\d{4,})。")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def serve(data: Path, umask: int = 0) -> ServerProcess:
    """A server whose umask would let everyone read what it creates (0: files 0666, folders 0777)."""
    return ServerProcess(
        [sys.executable, "-m", "app", "serve", "--config", str(CONFIG)],
        env={"HOTLINE_DATA": str(data)},
        umask=umask,
    )


def leave_a_ticket(port: int) -> str:
    """A caller presses 0 (nobody is logged in), leaves a message; the ticket id they heard."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall("0\r\n我的话费不对,请回电 13800138000\r\n".encode())
        heard, deadline = b"", time.monotonic() + 10
        while (m := HEARD.search(heard.decode(errors="replace"))) is None:
            assert time.monotonic() < deadline, heard.decode(errors="replace")
            chunk = sock.recv(65536)
            assert chunk, heard.decode(errors="replace")
            heard += chunk
        return m.group(1)


def test_the_data_folder_and_every_file_in_it_are_private_whatever_the_umask(tmp_path: Path) -> None:
    data = tmp_path / "new" / "data"  # made by the server, with a parent
    server = serve(data)
    try:
        leave_a_ticket(server.tcp_port)
        files = {p.name: mode(p) for p in data.iterdir()}  # while it runs: -wal and -shm are there
    finally:
        server.stop()
    assert mode(data) == 0o700
    assert files == dict.fromkeys(("hotline.db", "hotline.db-wal", "hotline.db-shm", SECRET_FILE), 0o600)
    assert not any(line["event"] == "data_permissions_tightened" for line in server.lines)  # made so
    assert {p.name: mode(p) for p in data.iterdir()} == {"hotline.db": 0o600, SECRET_FILE: 0o600}

    copy = tmp_path / "backups" / "hotline-copy.db"
    copy.parent.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "app", "backup", str(copy), "--data", str(data)],
        capture_output=True, text=True, timeout=60, cwd=REPO, umask=0, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert mode(copy) == 0o600
    assert sorted(p.name for p in copy.parent.iterdir()) == ["hotline-copy.db"]  # no journal left
    with sqlite3.connect(f"file:{copy}?mode=ro", uri=True) as db:
        assert db.execute("SELECT count(*) FROM tickets").fetchone() == (1,)


def test_an_older_data_folder_is_tightened_at_start_and_the_log_says_so_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    old = sqlite3.connect(data / dbm.FILE)  # as an older hotline made it: 0644 under umask 022
    old.execute("PRAGMA journal_mode=WAL")
    old.close()
    (data / SECRET_FILE).write_text("0123456789abcdef" * 4 + "\n")
    notes = data / "README.txt"  # not hotline's: left as it is
    notes.write_text("the operator's own notes\n")
    for path in (data / dbm.FILE, data / SECRET_FILE, notes):
        os.chmod(path, 0o644)

    server = serve(data, umask=0o022)
    try:
        tightened = server.wait_for("data_permissions_tightened")
        assert sorted(tightened["paths"]) == sorted(
            str(p) for p in (data, data / dbm.FILE, data / SECRET_FILE)
        )
        leave_a_ticket(server.tcp_port)  # the tightened database takes tickets as before
        files = {p.name: mode(p) for p in data.iterdir()}
    finally:
        server.stop()
    assert sum(line["event"] == "data_permissions_tightened" for line in server.lines) == 1
    assert mode(data) == 0o700
    assert files == {
        "hotline.db": 0o600,
        "hotline.db-wal": 0o600,  # SQLite gives them the database's mode
        "hotline.db-shm": 0o600,
        SECRET_FILE: 0o600,
        "README.txt": 0o644,
    }

    again = serve(data)  # a second start finds nothing to do
    try:
        leave_a_ticket(again.tcp_port)
    finally:
        again.stop()
    assert not any(line["event"] == "data_permissions_tightened" for line in again.lines)


def test_tighten_never_follows_a_link_out_of_the_folder(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.db"
    outside.write_text("")
    os.chmod(outside, 0o644)
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / dbm.FILE).symlink_to(outside)
    assert dbm.tighten(data) == []
    assert mode(outside) == 0o644
