"""Hostile clients against a real server process, while a well-behaved caller keeps being served.

Each attack runs alongside a caller who asks for data usage over and over; every one of those round
trips must complete (and quickly). The server's resident memory is read from /proc before and after.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
import sys
from collections.abc import Awaitable, Callable, Iterator

import pytest

from tests.conftest import Caller, ServerProcess
from tests.helpers import CONFIG

ANSWER = "剩余 7.5 GB"


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def target() -> Iterator[ServerProcess]:
    proc = ServerProcess(
        [sys.executable, "-m", "app", "serve", "--config", str(CONFIG)],
        env={"HOTLINE_MAX_SESSIONS_PER_ADDRESS": "5000", "HOTLINE_MAX_OUTPUT": "65536"},
    )
    yield proc
    assert proc.stop() == 0


async def well_behaved(port: int, stop: asyncio.Event) -> list[float]:
    """Ask for data usage until told to stop; return each round trip's seconds."""
    caller = await Caller.dial(port)
    loop = asyncio.get_running_loop()
    times = []
    try:
        await caller.expect("结束通话请输入 exit。")
        while not stop.is_set():
            started = loop.time()
            caller.send("2")
            await caller.expect(ANSWER, timeout=5)
            times.append(loop.time() - started)
            await asyncio.sleep(0.1)  # 10 lines a second: brisk for a person, inside the line rate
    finally:
        caller.close()
    return times


async def alongside(port: int, attack: Callable[[], Awaitable[None]]) -> list[float]:
    stop = asyncio.Event()
    good = asyncio.create_task(well_behaved(port, stop))
    try:
        await asyncio.wait_for(attack(), 60)
    finally:
        stop.set()
    times = await good
    assert times, "the well-behaved caller was never answered"
    assert max(times) < 2.0, f"a well-behaved round trip took {max(times):.2f}s"
    return times


async def send_all(port: int, data: bytes, chunk: int = 65536, read: bool = True) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for i in range(0, len(data), chunk):
            writer.write(data[i : i + chunk])
            await writer.drain()
        if read:
            writer.write_eof()
            while await asyncio.wait_for(reader.read(65536), 10):
                pass
    except (ConnectionError, TimeoutError):
        pass
    finally:
        writer.close()


async def test_ten_mebibyte_line(target: ServerProcess) -> None:
    await alongside(target.tcp_port, lambda: send_all(target.tcp_port, b"1" * (10 << 20) + b"\r\n2\r\n"))


async def test_random_bytes(target: ServerProcess) -> None:
    rng = random.Random(1)
    data = bytes(rng.getrandbits(8) for _ in range(1 << 20))
    await alongside(target.tcp_port, lambda: send_all(target.tcp_port, data))


async def test_iac_floods(target: ServerProcess) -> None:
    options = b"".join(bytes([255, cmd, opt]) for cmd in (251, 252, 253, 254) for opt in range(256))
    timing_marks = bytes([255, 253, 6]) * 50000
    endless_subnegotiation = bytes([255, 250, 24]) + b"x" * (1 << 20)

    async def attack() -> None:
        await asyncio.gather(
            send_all(target.tcp_port, options * 50),
            send_all(target.tcp_port, timing_marks),
            send_all(target.tcp_port, endless_subnegotiation),
        )

    await alongside(target.tcp_port, attack)


async def test_control_characters(target: ServerProcess) -> None:
    data = bytes(range(32)) * 20000 + b"\x7f\x08" * 50000
    await alongside(target.tcp_port, lambda: send_all(target.tcp_port, data))


async def test_a_reader_that_never_reads(target: ServerProcess) -> None:
    async def attack() -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", target.tcp_port))
        try:
            for _ in range(200):  # keeps asking for the long main prompt, never reads a byte
                await asyncio.get_running_loop().sock_sendall(sock, b"9\r\n" * 30)
                await asyncio.sleep(0.01)
        except (ConnectionError, OSError):
            pass
        finally:
            sock.close()

    await alongside(target.tcp_port, attack)


async def test_connection_resets(target: ServerProcess) -> None:
    async def attack() -> None:
        for i in range(300):
            s = socket.socket()
            s.setblocking(False)
            await asyncio.get_running_loop().sock_connect(s, ("127.0.0.1", target.tcp_port))
            if i % 2:
                s.send(b"1\r\n13800138000\r\n3\r\n")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()  # RST instead of FIN

    await alongside(target.tcp_port, attack)


async def test_storm_of_connects(target: ServerProcess) -> None:
    async def one() -> None:
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", target.tcp_port)
            writer.close()
        except OSError:
            pass

    async def attack() -> None:
        for _ in range(4):
            await asyncio.gather(*(one() for _ in range(400)))

    await alongside(target.tcp_port, attack)


async def test_pasted_script_of_thousands_of_lines(target: ServerProcess) -> None:
    script = b"".join(
        random.Random(2).choice([b"1\r\n", b"13800138000\r\n", b"3\r\n", b"*\r\n", b"#\r\n", b"x\r\n"])
        for _ in range(20000)
    )
    await alongside(target.tcp_port, lambda: send_all(target.tcp_port, script))


async def test_memory_stays_bounded_after_every_attack(target: ServerProcess) -> None:
    """Runs last in this module: the server has seen every attack above; repeat them and compare RSS."""
    before = rss_kib(target.proc.pid)
    for attack in (
        test_ten_mebibyte_line,
        test_random_bytes,
        test_iac_floods,
        test_control_characters,
        test_pasted_script_of_thousands_of_lines,
    ):
        await attack(target)
    after = rss_kib(target.proc.pid)
    assert after - before < 20 * 1024, f"RSS grew by {after - before} KiB repeating the attacks"
    assert after < 200 * 1024, f"RSS {after} KiB"

    async def fresh() -> None:
        c = await Caller.dial(target.tcp_port)
        c.send("2")
        await c.expect(ANSWER)
        c.close()

    await fresh()


def test_udp_garbage_and_floods_do_not_hurt_tcp_callers(target: ServerProcess) -> None:
    async def run() -> None:
        async def attack() -> None:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setblocking(False)
            rng = random.Random(3)
            for i in range(20000):
                payload = os.urandom(rng.randint(0, 3000)) if i % 3 else "话费怎么查".encode()
                try:
                    s.sendto(payload, ("127.0.0.1", target.udp_port))
                except BlockingIOError:
                    await asyncio.sleep(0.001)
                if i % 500 == 0:
                    await asyncio.sleep(0)
            s.close()

        await alongside(target.tcp_port, attack)

    asyncio.run(run())
