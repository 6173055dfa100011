"""Baseline: bare asyncio streams, one coroutine per session (benchmark only).
argv: PORT uvloop|asyncio [TABLE.json] (the two-screen menu, or the mixed workload's reply table)."""

from __future__ import annotations

import asyncio
import sys

from benchmarks.baselines.menu2 import MAIN, answer
from benchmarks.baselines.table import Table

GREETING = MAIN


async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(GREETING)
    state = 0
    try:
        while line := await reader.readline():
            state, reply = answer(state, line)
            writer.write(reply)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(session, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) > 3:
        table = Table(sys.argv[3])
        GREETING, answer = table.greeting, table.answer  # the mixed workload's replies
    if sys.argv[2] == "uvloop":
        import uvloop

        uvloop.run(main(int(sys.argv[1])))
    else:
        asyncio.run(main(int(sys.argv[1])))
