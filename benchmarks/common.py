"""Shared benchmark plumbing: free ports, CPU pinning, servers in subprocesses, the C load tools."""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TOOLS = REPO.parent / "shared" / "tools"
SERVER_CPU = "0"
CLIENT_CPU = "1"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_file_limit() -> None:
    """Open files up to the hard limit: thousands of sessions, and loadgen and the servers inherit it."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def pinned(cpu: str, argv: Sequence[str]) -> list[str]:
    """argv run on one CPU when taskset exists (the machine has 2 cores: server on 0, load on 1)."""
    return (
        ["taskset", "-c", cpu, *argv] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else list(argv)
    )


def build_tool(name: str) -> Path:
    """Compile ../shared/tools/NAME.c (else benchmarks/NAME.c or benchmarks/baselines/NAME.c) once,
    into a temp folder, named by its source's digest: two checkouts (a baseline commit beside this
    one) never run each other's build."""
    candidates = [TOOLS / f"{name}.c", REPO / "benchmarks" / f"{name}.c"]
    src = next((p for p in candidates if p.exists()), REPO / "benchmarks" / "baselines" / f"{name}.c")
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:12]
    out = Path(tempfile.gettempdir()) / f"hotline-bench-{name}-{digest}"
    if not out.exists():
        subprocess.run(["gcc", "-O2", "-o", str(out), str(src)], check=True)
    return out


class Proc:
    """A server in a subprocess, pinned to the server CPU; waits until its port answers."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        tcp_port: int | None = None,
        udp_port: int | None = None,
        udp_probe: bytes = b"hi",
        cwd: Path | None = None,
    ) -> None:
        self.proc = subprocess.Popen(
            pinned(SERVER_CPU, argv),
            env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=cwd or REPO,  # another checkout (benchmarks.mixed --before) runs its own app/
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{argv} exited with {self.proc.returncode}")
            if (tcp_port is not None and _tcp_up(tcp_port)) or (
                udp_port is not None and _udp_up(udp_port, udp_probe)
            ):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{argv} did not start listening")

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def cpu_seconds(self) -> float:
        """User + system CPU time the server has used so far (the benchmark's cost measure: it does
        not count time the shared machine gave to others)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _tcp_up(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def _udp_up(port: int, probe: bytes) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        try:
            s.sendto(probe, ("127.0.0.1", port))
            s.recvfrom(65535)
        except OSError:
            return False
    return True


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def python() -> str:
    return sys.executable


def targets_table(rows: Sequence[tuple[str, str, bool]]) -> None:
    """The targets table every benchmark ends with: what was asked, this run's figure, met or not."""
    print("\n| target | this run | |\n|---|---|---|")
    for label, text, met in rows:
        print(f"| {label} | {text} | {'met' if met else 'NOT met'} |")
