"""Fixtures: every async test runs on uvloop; servers run in-process on free ports or as a real subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import uvloop

from app import logs
from app.configdir import load_config
from app.server import Server
from app.settings import Settings
from tests.helpers import CONFIG, REPO
from tests.servers import PostgresServer


@pytest.fixture(autouse=True)
def _info_logs() -> Iterator[None]:
    """Tests run at the default level (info) unless they ask for `debug_logs`."""
    logs.configure("info", "console")
    yield
    logs.configure("info", "console")


@pytest.fixture
def debug_logs() -> None:
    logs.configure("debug", "console")


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"uvloop": uvloop.new_event_loop}


async def start_server(config: Path = CONFIG, **overrides: Any) -> Server:
    settings = Settings(
        **{
            "config": config,
            "tcp_port": 0,
            "udp_port": 0,
            "admin_port": 0,
            "agent_port": 0,
            "data": tempfile.mkdtemp(prefix="hotline-test-data-"),
            **overrides,
        }
    )
    result = load_config(settings.config)
    assert result.graph is not None, result.problems
    server = Server(settings, result)
    await server.start("uvloop")
    return server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL for the session, started the first time a test asks (each test takes a
    database of its own: `postgres_server.database()`)."""
    server = PostgresServer()
    yield server
    server.close()


class RecordsAt:
    """Where a test keeps its records: a data folder (SQLite) or a new PostgreSQL database."""

    def __init__(self, kind: str, folder: Path, url: str = "") -> None:
        self.kind, self.folder, self.url = kind, folder, url

    @property
    def target(self) -> Path | str:
        """What the Recorder takes: the data folder, or the URL."""
        return self.url or self.folder

    @property
    def database(self) -> Path | str:
        """What `database.connect` takes: the SQLite file, or the URL."""
        return self.url or self.folder / "hotline.db"

    @property
    def settings(self) -> dict[str, Any]:
        """Settings for a server keeping its records here (the data folder holds the console's secret)."""
        return {"data": self.folder} | ({"database_url": self.url} if self.url else {})

    @property
    def env(self) -> dict[str, str]:
        return {"HOTLINE_DATA": str(self.folder)} | ({"HOTLINE_DATABASE_URL": self.url} if self.url else {})

    @property
    def cli(self) -> list[str]:
        """The options of `hotline tickets|calls` that read these records."""
        return ["--database-url", self.url] if self.url else ["--data", str(self.folder)]


@pytest.fixture(params=["sqlite", "postgresql"])
def records_at(request: pytest.FixtureRequest, tmp_path: Path) -> RecordsAt:
    """The records tests run against both databases the server can keep its records in."""
    if request.param == "sqlite":
        return RecordsAt("sqlite", tmp_path / "data")
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return RecordsAt("postgresql", tmp_path / "data", server.database())


@pytest_asyncio.fixture
async def server() -> AsyncIterator[Server]:
    srv = await start_server()
    yield srv
    await srv.shutdown()


async def wait_until(cond: Callable[[], object], timeout: float = 5.0) -> bool:
    """Poll `cond` until it is true or `timeout` passes (a condition, never a blind sleep)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


class Caller:
    """A test caller over a real TCP socket: send lines, wait for text (with a timeout)."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, encoding: str = "utf-8"
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.encoding = encoding
        self.raw = b""
        self.seen = 0  # end of the text already matched by expect()

    @classmethod
    async def dial(cls, port: int, encoding: str = "utf-8") -> Caller:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, encoding)

    @property
    def text(self) -> str:
        return self.raw.decode(self.encoding, "replace")

    async def expect(self, wanted: str, timeout: float = 5.0) -> str:
        """Wait until `wanted` appears after what was already matched; return the text up to it."""

        async def wait() -> str:
            while True:
                i = self.text.find(wanted, self.seen)
                if i >= 0:
                    got = self.text[self.seen : i + len(wanted)]
                    self.seen = i + len(wanted)
                    return got
                chunk = await self.reader.read(65536)
                if not chunk:
                    raise AssertionError(
                        f"connection closed before {wanted!r}; got {self.text[self.seen :]!r}"
                    )
                self.raw += chunk

        return await asyncio.wait_for(wait(), timeout)

    async def closed(self, timeout: float = 5.0) -> str:
        """Wait for the server to close; return everything not yet matched."""

        async def wait() -> None:
            while chunk := await self.reader.read(65536):
                self.raw += chunk

        await asyncio.wait_for(wait(), timeout)
        rest = self.text[self.seen :]
        self.seen = len(self.text)
        return rest

    def send(self, *lines: str, ending: str = "\r\n") -> None:
        self.writer.write("".join(line + ending for line in lines).encode(self.encoding))

    def close(self) -> None:
        self.writer.close()


@pytest_asyncio.fixture
async def dial(server: Server) -> AsyncIterator[Callable[[], Any]]:
    callers: list[Caller] = []

    async def make() -> Caller:
        caller = await Caller.dial(server.tcp_port)
        callers.append(caller)
        return caller

    yield make
    for c in callers:
        c.close()


class ServerProcess:
    """`hotline serve` as a real subprocess; a thread collects its JSON log lines. `umask`: the
    process's (default: this one's)."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, umask: int = -1) -> None:
        self.data = Path((env or {}).get("HOTLINE_DATA") or tempfile.mkdtemp(prefix="hotline-test-data-"))
        self.proc = subprocess.Popen(
            args,
            umask=umask,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={
                **os.environ,
                "HOTLINE_TCP_PORT": "0",
                "HOTLINE_UDP_PORT": "0",
                "HOTLINE_ADMIN_PORT": "0",
                "HOTLINE_AGENT_PORT": "0",
                "HOTLINE_DATA": str(self.data),
                **(env or {}),
            },
        )
        self.lines: list[dict[str, Any]] = []
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        started = self.wait_for("server_started", timeout=20)
        self.tcp_port: int = started["tcp_port"]
        self.udp_port: int = started["udp_port"]
        self.admin_port: int = started["admin_port"]
        self.agent_port: int = started["agent_port"]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                entry = {"event": "<not json>", "text": line.decode(errors="replace")}
            self._queue.put(entry)
        self._queue.put(None)

    def wait_for(self, event: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        """The first log line with this event (and these fields), waiting up to `timeout`."""

        def matches(entry: dict[str, Any]) -> bool:
            return entry.get("event") == event and all(entry.get(k) == v for k, v in fields.items())

        for entry in self.lines:
            if matches(entry):
                return entry
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                entry = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if entry is None:
                break
            self.lines.append(entry)
            if matches(entry):
                return entry
        raise AssertionError(f"no {event!r} log line with {fields}; got {self.lines}")

    def drain(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Every log line, once the process has ended (after `stop()` or `wait_exit()`)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                entry = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if entry is None:
                self._queue.put(None)  # for the next caller
                break
            self.lines.append(entry)
        return self.lines

    def wait_exit(self, timeout: float = 15.0) -> int:
        """The exit status once the process has ended by itself (after a signal it handles)."""
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.stop()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout=15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._reader.join(timeout=5)
            if self.proc.stdout is not None:
                self.proc.stdout.close()


@pytest.fixture
def server_process() -> Iterator[ServerProcess]:
    proc = ServerProcess([sys.executable, "-m", "app", "serve", "--config", str(CONFIG)])
    yield proc
    proc.stop()
