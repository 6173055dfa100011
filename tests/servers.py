"""Throwaway database servers for the tests that share state between replicas: a real `redis-server`
(Debian's package, installed by `make test`) on a free port, in a temporary folder, stopped after."""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.helpers import system_tool


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
