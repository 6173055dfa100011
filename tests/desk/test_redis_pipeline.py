"""The shared desk's command stream against a real redis-server: order is kept, whatever Redis knows."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from app.desk.redis import scripts
from app.desk.redis.keys import queue_key
from app.desk.redis.pipeline import Commands
from tests.servers import RedisServer


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


async def _run(redis_server: RedisServer, send: list[tuple[Any, ...]]) -> list[Any]:
    client = Redis.from_url(redis_server.url, decode_responses=True)
    commands = Commands(client)
    runner = asyncio.create_task(commands.run())
    answers: list[Any] = []
    try:
        for args in send:
            if args[0] == "script":
                commands.script(args[1], args[2], args[3], done=answers.append)
            else:
                commands.command(*args, done=answers.append)
        await commands.drained()
        return answers
    finally:
        runner.cancel()
        await client.aclose()


async def test_a_script_redis_does_not_know_yet_keeps_its_place_in_the_batch(
    redis_server: RedisServer,
) -> None:
    """A fresh (or restarted) Redis has no scripts: an ACCEPT sent before a command about the same
    call must still run before it (it once met NOSCRIPT, ran again after, and found the call gone)."""
    redis_server.flush()  # keys and scripts
    calls = queue_key("q", "calls")
    waiting = queue_key("q", "waiting")
    offered = '{"r": "a", "s": "1", "p": "", "c": "[]", "x": ",", "oa": "7"}'
    answers = await _run(
        redis_server,
        [
            ("HSET", calls, "c1", offered),
            ("script", scripts.ACCEPT, [waiting, calls], ["c1", "7", "b"]),
            ("HDEL", calls, "c1"),  # what came next, e.g. the end of that call
        ],
    )
    assert answers == [1, ["a", 0, 0], 1]  # accepted (the caller's replica, offers, missed), then gone
    assert redis_server.command("HEXISTS", calls, "c1") == b":0\r\n"


async def test_redis_away_answers_each_command_with_the_error(redis_server: RedisServer) -> None:
    redis_server.stop()
    try:
        answers = await _run(redis_server, [("GET", "x"), ("script", scripts.END, ["k"], ["c", "a"])])
    finally:
        redis_server.start()
    assert len(answers) == 2 and all(isinstance(a, Exception) for a in answers)
