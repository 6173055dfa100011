"""The promise of a ticket number, with real server processes: kill -9 at random moments right after
callers heard their numbers (SQLite and PostgreSQL); a read-only data folder; a full disk; the CLI
reading it all."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import RecordsAt, ServerProcess
from tests.helpers import CONFIG, REPO

HEARD = re.compile(r"工单号是 (T\d{8}-\d{4,})。")


def hotline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args], capture_output=True, text=True, timeout=60, cwd=REPO
    )


def serve(data: Path, **env: str) -> ServerProcess:
    return ServerProcess(
        [sys.executable, "-m", "app", "serve", "--config", str(CONFIG)],
        env={"HOTLINE_DATA": str(data), "HOTLINE_MAX_SESSIONS_PER_ADDRESS": "1000", **env},
    )


async def leave_messages(
    port: int, name: str, heard: dict[str, str], stop: asyncio.Event, on_heard: object
) -> None:
    """One caller: press 0 (nobody is logged in: a message instead), leave a message, note the
    number heard, again, until the server goes away."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return
    buf = ""
    n = 0
    try:
        while not stop.is_set():
            n += 1
            message = f"{name} 的第 {n} 条留言"
            writer.write(f"0\r\n{message}\r\n".encode())
            while (m := HEARD.search(buf)) is None:
                chunk = await reader.read(65536)
                if not chunk:
                    return
                buf += chunk.decode()
            heard[m.group(1)] = message
            buf = buf[m.end() :]
            on_heard()  # type: ignore[operator]
    except (ConnectionError, OSError):
        return
    finally:
        writer.close()


async def test_every_number_heard_survives_kill_9(records_at: RecordsAt) -> None:
    seed = int(time.time())
    rng = random.Random(seed)
    heard: dict[str, str] = {}
    for _ in range(8):
        server = serve(records_at.folder, **records_at.env)
        stop = asyncio.Event()
        target = len(heard) + rng.randint(1, 60)

        def on_heard(
            server: ServerProcess = server, target: int = target, stop: asyncio.Event = stop
        ) -> None:
            if len(heard) >= target and not stop.is_set():
                stop.set()
                os.kill(server.proc.pid, signal.SIGKILL)  # right after a caller heard a number

        callers = [leave_messages(server.tcp_port, f"c{i}", heard, stop, on_heard) for i in range(20)]
        await asyncio.wait_for(asyncio.gather(*callers), 60)
        assert server.proc.wait(10) == -signal.SIGKILL, f"seed {seed}"
        server.stop()
    out = hotline("tickets", "list", "--json", "--limit", "100000", *records_at.cli)
    assert out.returncode == 0, out.stderr
    stored = {t["id"]: t["message"] for t in json.loads(out.stdout)}
    missing = {tid: msg for tid, msg in heard.items() if stored.get(tid) != msg}
    assert not missing, f"seed {seed}: heard but not stored: {missing}"
    assert len(heard) >= 5


@contextmanager
def mounted(target: Path, *mounts: list[str]) -> Iterator[Path]:
    """`target` with filesystems mounted on it (each `mounts` item: mount's arguments before the
    target), unmounted after. Needs root, as `make test` runs here."""
    target.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a filesystem for the test needs root")
    done = 0
    try:
        for args in mounts:
            subprocess.run(["mount", *args, str(target)], check=True)
            done += not any("remount" in a for a in args)
        yield target
    finally:
        for _ in range(done):
            subprocess.run(["umount", "-l", str(target)], check=True)


def test_a_read_only_data_folder_stops_the_start_with_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with mounted(data, ["--bind", str(data)], ["-o", "remount,ro,bind"]):
        out = hotline("serve", "--config", str(CONFIG), "--data", str(data), "--tcp-port", "0")
    assert out.returncode == 1
    assert out.stderr.splitlines() == [f"hotline: {data}: the data folder is not writable"]


def test_a_full_disk_fails_tickets_politely_and_the_server_goes_on(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with mounted(data, ["-t", "tmpfs", "-o", "size=400k", "tmpfs"]):
        server = serve(data)
        try:
            asyncio.run(fill_the_disk(server))
            metrics = metrics_text(server)
            assert re.search(r"^hotline_ticket_failures_total [1-9]", metrics, re.M), metrics
            server.wait_for("ticket_failed")
        finally:
            server.stop()


async def fill_the_disk(server: ServerProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.tcp_port)
    buf = ""
    long_message = "很长的留言" * 60  # 900 bytes (under the line limit), twice: ticket and transcript
    failed = False
    for _ in range(400):
        writer.write(f"0\r\n{long_message}\r\n".encode())
        while "工单号是" not in buf and "无法保存" not in buf:
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            assert chunk, "the server hung up"
            buf += chunk.decode()
        if "无法保存" in buf:
            failed = True
            break
        buf = ""
    assert failed, "the disk never filled"
    buf = buf[buf.index("无法保存") :]
    while "欢迎致电" not in buf:  # and the call goes on: back to the main menu
        buf += (await asyncio.wait_for(reader.read(65536), 10)).decode()
    writer.write(b"2\r\n")
    while "流量" not in buf:
        buf += (await asyncio.wait_for(reader.read(65536), 10)).decode()
    writer.close()


def metrics_text(server: ServerProcess) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{server.admin_port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def test_a_corrupt_database_stops_the_start_with_one_line_and_is_left_alone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db = data / "hotline.db"
    db.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 40)  # a damaged file, not a database
    before = db.read_bytes()
    out = hotline("serve", "--config", str(CONFIG), "--data", str(data), "--tcp-port", "0")
    assert out.returncode == 1
    assert len(out.stderr.splitlines()) == 1 and out.stderr.startswith(f"hotline: {db}: ")
    assert "left as it is" in out.stderr
    assert db.read_bytes() == before and sorted(p.name for p in data.iterdir()) == ["hotline.db"]


def test_the_server_says_where_its_records_are_never_the_password(records_at: RecordsAt) -> None:
    env = records_at.env
    if records_at.url:  # PostgreSQL here trusts local users: a password is accepted and ignored
        env["HOTLINE_DATABASE_URL"] = records_at.url.replace("postgres@", "postgres:s3cret@")
    server = serve(records_at.folder, **env)
    try:
        started = server.wait_for("server_started")
        expected = (
            records_at.url.replace("postgres@", "postgres:***@")
            if records_at.url
            else str(records_at.database)
        )
        assert started["records"] == expected
    finally:
        server.stop()
    assert "s3cret" not in repr(server.lines)
