"""Baseline: a bare uvloop asyncio.Protocol, the Python ceiling (benchmark only).
argv: PORT [TABLE.json] (the two-screen menu, or the mixed workload's reply table)."""

from __future__ import annotations

import asyncio
import sys

import uvloop

from benchmarks.baselines.menu2 import MAIN, answer
from benchmarks.baselines.table import Table

GREETING = MAIN


class Menu(asyncio.Protocol):
    __slots__ = ("buf", "state", "transport")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.state = 0
        self.buf = b""
        transport.write(GREETING)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        out = []
        while (i := buf.find(b"\n")) >= 0:
            self.state, reply = answer(self.state, buf[:i])
            out.append(reply)
            buf = buf[i + 1 :]
        self.buf = buf
        if out:
            self.transport.write(b"".join(out))  # type: ignore[attr-defined]


async def main(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Menu, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) > 2:
        table = Table(sys.argv[2])
        GREETING, answer = table.greeting, table.answer  # the mixed workload's replies
    uvloop.run(main(int(sys.argv[1])))
