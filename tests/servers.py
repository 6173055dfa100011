"""Throwaway database servers for the tests that share state between replicas: a real `redis-server`
and a real PostgreSQL (Debian's packages, installed by `make test`), each on a free port, in a
temporary folder, stopped after."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from tests.helpers import listed_system_tools, system_tool


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """redis-server with AOF on (as the compose file runs it); `stop()` and `start()` again keep the
    port and the data, as a restart in production would."""

    def __init__(self) -> None:
        self.program = system_tool("redis-server")
        self.folder = Path(tempfile.mkdtemp(prefix="hotline-test-redis-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.program,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.folder),
                "--save", "",
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--logfile", str(self.folder / "redis.log"),
            ],
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not self.ping():
            assert self.proc.poll() is None, (self.folder / "redis.log").read_text()
            assert time.monotonic() < deadline, "redis-server did not answer within 10 s"
            time.sleep(0.02)

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def command(self, *args: str) -> bytes:
        """One command, its raw RESP reply (tests read small answers only)."""
        request = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(request.encode())
            return s.recv(65536)

    def flush(self) -> None:
        """Empty, as a new Redis is: no keys and no scripts (a replica must load its own)."""
        assert self.command("FLUSHALL").startswith(b"+OK")
        assert self.command("SCRIPT", "FLUSH").startswith(b"+OK")


def postgres_tool(name: str) -> str:
    """A program of Debian's PostgreSQL server package (not on PATH: /usr/lib/postgresql/VERSION/bin)."""
    tools = listed_system_tools()
    assert "postgres" in tools, "postgres is not in scripts/system-tools: `make test` would not install it"
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    assert found, f"{name} is missing: run `make system-tools` (Debian package {tools['postgres']})"
    return found[-1]


class PostgresServer:
    """A PostgreSQL cluster of its own: initdb in a temporary folder, listening on 127.0.0.1 on a free
    port (and a socket in the folder), password-less for local users. PostgreSQL refuses to run as
    root: when the tests are root, the folder is given to the `postgres` user the package made and the
    server runs as that user. fsync is off unless asked for (the tests test hotline, not the disk;
    the benchmark wants the real cost); `prefix` runs the server under, e.g., taskset. `database()`
    makes a new, empty database and returns its URL."""

    def __init__(self, *, fsync: bool = False, prefix: tuple[str, ...] = ()) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="hotline-test-pg-"))
        self.port = free_port()
        self.fsync = fsync
        self.as_user: list[str] = list(prefix)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
            self.as_user += [shutil.which("runuser") or "runuser", "-u", "postgres", "--"]
        self._run(postgres_tool("initdb"), "-D", str(self.folder / "data"), "-U", "postgres",
                  "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")  # fmt: skip
        self.databases = 0
        self.start()

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self.as_user, *args], capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, f"{' '.join(args)}: {done.stdout}{done.stderr}"

    @property
    def url(self) -> str:
        """The maintenance database (where databases are made)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c max_connections=200 " + (
            "" if self.fsync else "-c fsync=off -c full_page_writes=off"
        )
        self._run(postgres_tool("pg_ctl"), "-D", str(self.folder / "data"), "-o", options,
                  "-l", str(self.folder / "postgres.log"), "-w", "-t", "30", "start")  # fmt: skip

    def stop(self) -> None:
        self._run(postgres_tool("pg_ctl"), "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop")

    def database(self) -> str:
        self.databases += 1
        name = f"hotline_{self.databases}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
