"""Baseline: a bare uvloop asyncio.Protocol, the Python ceiling (benchmark only)."""

from __future__ import annotations

import asyncio
import sys

import uvloop

from benchmarks.baselines.menu2 import MAIN, answer


class Menu(asyncio.Protocol):
    __slots__ = ("buf", "state", "transport")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.state = 0
        self.buf = b""
        transport.write(MAIN)  # type: ignore[attr-defined]

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
    uvloop.run(main(int(sys.argv[1])))
