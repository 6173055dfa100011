"""An agent's look at a call's transcript so far: the terminal desk's /history and the browser
console's {"cmd": "history"} (one function for both). The read runs off the session's path."""

from __future__ import annotations

import asyncio
from typing import Protocol

import structlog

from app.desk.commands import Out
from app.desk.events import Error, HistoryLine, Info, Message
from app.desk.model import Agent

log = structlog.get_logger("hotline.agent")


class Transcripts(Protocol):
    """Where transcripts are read (app.records.Recorder)."""

    async def last_lines(self, session_id: str, count: int) -> list[tuple[str, str | None, str]]: ...


def send_history(
    transcripts: Transcripts | None, agent: Agent, count: int, out: Out, tasks: set[asyncio.Task[None]]
) -> None:
    """The last `count` transcript lines of the agent's offered or connected call, as HistoryLine
    messages through `out` once read, or an Error or Info saying why not (`transcripts` None: none
    are kept). The reading task is kept in `tasks` until it is done."""
    call = agent.call or agent.offer
    if call is None:
        out(Error("not in a call"))
    elif transcripts is None:
        out(Error("no transcripts are kept"))
    else:
        task = asyncio.get_running_loop().create_task(_read(transcripts, call.id, count, out))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def _read(transcripts: Transcripts, call_id: str, count: int, out: Out) -> None:
    try:
        lines = await transcripts.last_lines(call_id, count)
    except Exception:  # the database is unwell: the agent gets an answer, the log the reason
        log.exception("history_failed", call_id=call_id)
        out(Error("the history cannot be read now"))
        return
    found: list[Message] = [HistoryLine(call_id, who, by, text) for who, by, text in lines]
    out(*(found or [Info(f"no history for {call_id}")]))
