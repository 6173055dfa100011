"""The compose cluster's balancer: deploy/haproxy.cfg itself, run by a real HAProxy in front of two
real replicas sharing a real Redis (the addresses rewritten from compose's names to this machine's)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ServerProcess
from tests.helpers import CONFIG, REPO, system_tool
from tests.net.test_agents import Line, _close_clients
from tests.servers import RedisServer, free_port

__all__ = ["_close_clients"]  # autouse: every line client closed after each test


class Balancer:
    def __init__(self, replicas: dict[str, ServerProcess], folder: Path) -> None:
        self.ports = {"callers": free_port(), "agents": free_port(), "console": free_port()}
        text = (REPO / "deploy" / "haproxy.cfg").read_text(encoding="utf-8")
        for name, port in self.ports.items():  # each frontend on a free local port
            text = re.sub(rf"(frontend {name}\n    bind )\S+", rf"\g<1>127.0.0.1:{port}", text)
        for name, proc in replicas.items():  # compose's service names -> this machine's ports
            for compose_port, port in (
                (10086, proc.tcp_port),
                (10087, proc.agent_port),
                (9108, proc.admin_port),
            ):
                text = text.replace(f"{name}:{compose_port}", f"127.0.0.1:{port} port {proc.admin_port}")
        text = re.sub(r"\n    log stdout.*", "", text)
        text = re.sub(r"maxconn \d+", "maxconn 4000", text)  # within this machine's file limit
        text = re.sub(r"\n    nameserver dns .*", "\n    nameserver dns 127.0.0.1:53", text)
        self.config = folder / "haproxy.cfg"
        self.config.write_text(text, encoding="utf-8")
        self.proc = subprocess.Popen(
            [system_tool("haproxy"), "-f", str(self.config), "-db"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def dial(self) -> Line:
        """A caller through the balancer, once it takes calls (its health checks need a moment)."""
        deadline = time.monotonic() + 15
        while True:
            try:
                caller = Line(self.ports["callers"])
                caller.expect("结束通话请输入 exit。", timeout=3)
                return caller
            except (AssertionError, OSError):
                assert self.proc.poll() is None, self.proc.stderr.read() if self.proc.stderr else ""
                assert time.monotonic() < deadline, "the balancer took no call within 15 s"
                time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Balancer, dict[str, ServerProcess]]]:
    redis = RedisServer()
    replicas: dict[str, ServerProcess] = {}
    balancer = None
    try:
        for name in ("hotline-1", "hotline-2"):
            replicas[name] = ServerProcess(
                [sys.executable, "-m", "app", "serve", "--config", str(CONFIG)],
                env={
                    "HOTLINE_LOG_FORMAT": "json",
                    "HOTLINE_REDIS_URL": redis.url,
                    "HOTLINE_REPLICA": name,
                    "HOTLINE_PROXY_PROTOCOL": "true",
                    "HOTLINE_PROXY_FROM": "127.0.0.1",
                    "HOTLINE_RELOAD_WATCH": "false",
                },
            )
        balancer = Balancer(replicas, tmp_path)
        yield balancer, replicas
    finally:
        if balancer is not None:
            balancer.stop()
        for proc in replicas.values():
            proc.stop()
        redis.stop()


def _served_by(replicas: dict[str, ServerProcess], caller: Line) -> str:
    """The replica whose log names this caller's own address (the PROXY header's, not HAProxy's)."""
    peer = f"127.0.0.1:{caller.sock.getsockname()[1]}"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for name, proc in replicas.items():
            try:
                proc.wait_for("session_started", timeout=0.1, peer=peer)
            except AssertionError:
                continue
            return name
    raise AssertionError(f"no replica logged a session from {peer}")


def test_the_balancer_spreads_callers_with_their_own_address_and_skips_a_dead_replica(
    cluster: tuple[Balancer, dict[str, ServerProcess]],
) -> None:
    balancer, replicas = cluster
    served = {_served_by(replicas, balancer.dial()) for _ in range(4)}
    assert served == {"hotline-1", "hotline-2"}  # round robin, and each saw the caller's address
    os.kill(replicas["hotline-1"].proc.pid, signal.SIGKILL)
    after = [_served_by(replicas, balancer.dial()) for _ in range(4)]
    assert after == ["hotline-2"] * 4  # redispatched at once, then skipped by the health check


def _agent_from(balancer: Balancer, source: str, password: str) -> Line:
    """A terminal agent through the balancer from its own address, after one /login."""
    agent = Line(balancer.ports["agents"], source=source)
    agent.expect("HELLO")
    agent.send(f"/login 1001 {password}")
    return agent


def test_behind_the_balancer_a_lock_out_is_the_guessers_alone(
    cluster: tuple[Balancer, dict[str, ServerProcess]],
) -> None:
    """Five bad guesses from one address lock that address out on every replica, and nobody else:
    the balancer tells the replicas who is connecting (PROXY headers for agents, X-Forwarded-For for
    the console) and the replicas count together through Redis."""
    balancer, _ = cluster
    balancer.dial()  # the replicas are in service
    for i in range(5):  # leastconn spreads the guesses over both replicas
        guess = _agent_from(balancer, "127.0.20.1", "wrong")
        guess.expect("ERR too many attempts\r\n" if i == 4 else "ERR login failed\r\n")
        guess.close()
    _agent_from(balancer, "127.0.20.1", "demo1001").expect("ERR too many attempts\r\n")
    _agent_from(balancer, "127.0.20.2", "demo1001").expect("OK login 1001 ")

    port = balancer.ports["console"]

    def login(source: str, password: str) -> int:
        """POST /login as the console's form does, from `source`; the HTTP status."""
        body = f"id=1002&password={password}".encode()
        request = (
            f"POST /login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as s:
            s.sendall(request)
            return int(s.makefile("rb").readline().split()[1])

    assert [login("127.0.21.1", "wrong") for _ in range(5)] == [401, 401, 401, 401, 429]
    assert login("127.0.21.1", "demo1002") == 429
    assert login("127.0.21.2", "demo1002") == 303


def _networks(service: dict[str, object]) -> set[str]:
    """The networks compose attaches a service to (`default` when it names none)."""
    return set(service.get("networks") or {"default"})  # type: ignore[arg-type]


def test_the_cluster_profile_wires_each_replica_to_what_its_urls_name() -> None:
    """Each replica reaches the Redis and PostgreSQL its URLs name (a service of the profile on a
    network they share, healthy before the replica starts) and the balancer names each replica."""
    import urllib.parse

    import yaml

    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    haproxy = (REPO / "deploy" / "haproxy.cfg").read_text(encoding="utf-8")
    replicas = [name for name, s in services.items() if "HOTLINE_REPLICA" in (s.get("environment") or {})]
    assert replicas == ["hotline-1", "hotline-2"]
    for name in replicas:
        replica = services[name]
        assert replica["profiles"] == ["cluster"] and replica["environment"]["HOTLINE_REPLICA"] == name
        for variable in ("HOTLINE_REDIS_URL", "HOTLINE_DATABASE_URL"):
            host = urllib.parse.urlsplit(replica["environment"][variable]).hostname
            assert host in services, f"{name}: {variable} names {host}, not a service"
            assert services[host]["profiles"] == ["cluster"]
            assert _networks(services[host]) & _networks(replica), f"{name} cannot reach {host}"
            assert replica["depends_on"][host] == {"condition": "service_healthy"}
            assert "healthcheck" in services[host]
        assert _networks(services["balancer"]) & _networks(replica)
        assert f"server {name} {name}:10086" in haproxy
