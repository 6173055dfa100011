"""pydantic models of desk.yaml: queues (hours, strategy, timings, limits) and agents."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app import zone
from app.menu.schema import Duration, DurationOrZero

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SPAN = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
Name = Annotated[str, Field(min_length=1, max_length=100)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


def parse_days(text: str) -> list[int]:
    """ "mon-fri" -> [0..4], "sat,sun" -> [5, 6], "tue" -> [1]; ValueError with a readable message."""
    out: list[int] = []
    for raw in text.split(","):
        part = raw.strip().lower()
        ends = [e.strip() for e in part.split("-")]
        if len(ends) > 2 or any(e not in DAYS for e in ends):
            raise ValueError(f"'{text}' is not a day, a range like mon-fri or a list like sat,sun")
        first, last = DAYS.index(ends[0]), DAYS.index(ends[-1])
        if last < first:
            raise ValueError(f"'{part}' runs backwards; write the days in week order (mon-fri)")
        out += range(first, last + 1)
    return out


def parse_span(text: str) -> tuple[int, int]:
    """ "08:00-20:00" -> minutes after midnight (480, 1200); 24:00 is allowed as an end."""
    m = _SPAN.match(text)
    if m is None:
        raise ValueError(f"'{text}' is not a time span like 08:00-20:00")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or end > 24 * 60:
        raise ValueError(f"'{text}' is not a time span like 08:00-20:00")
    if end <= start:
        raise ValueError(f"'{text}' ends before it starts")
    return start, end


class Hours(_Model):
    """A queue's hours. `closed_dates` and `open_dates` may name a calendar of desk.yaml instead
    (`{calendar: NAME}`, `{calendar: NAME, hours: SPAN}`): the loader puts its dates in first."""

    timezone: str | None = None  # None: the server's (HOTLINE_TIMEZONE)
    open: dict[str, str] = {}
    closed_dates: list[dt.date] = []
    open_dates: dict[dt.date, str] = {}  # make-up working days (调休): open with these hours, any weekday

    @field_validator("open_dates")
    @classmethod
    def _open_dates(cls, value: dict[dt.date, str]) -> dict[dt.date, str]:
        for span in value.values():
            parse_span(span)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            zone.parse(value)
        return value

    @field_validator("open")
    @classmethod
    def _open(cls, value: dict[str, str]) -> dict[str, str]:
        seen: set[int] = set()
        for days, span in value.items():
            parsed = parse_days(days)
            parse_span(span)
            twice = seen.intersection(parsed)
            if twice:
                raise ValueError(f"'{days}' names {DAYS[min(twice)]} again; give each day one span")
            seen.update(parsed)
        return value


class QueueModel(_Model):
    title: Name | None = None
    hours: Hours | None = None
    strategy: Literal["longest_idle", "fewest_calls", "round_robin"] = "longest_idle"
    announce_every: Duration = 30.0
    max_wait: Duration = 600.0
    max_waiting: Annotated[int, Field(ge=1, le=1_000_000)] = 200
    ring_timeout: Duration = 15.0
    wrap_up: DurationOrZero = 10.0
    max_missed: Annotated[int, Field(ge=1, le=100)] = 3
    service_level_seconds: Duration = 20.0  # answered within this counts towards the service level
    service_level_target: Annotated[float, Field(gt=0, le=1)] = 0.8  # the board shows the level against it
    short_abandon: DurationOrZero = 5.0  # an abandon this soon is counted apart, out of the level


class AgentModel(_Model):
    id: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")]
    name: Name
    password_hash: Annotated[str, Field(min_length=1, max_length=500)]
    queues: list[str] = []
    role: Literal["agent", "supervisor"] = "agent"


CannedCode = Annotated[str, Field(min_length=1, max_length=20, pattern=r"^[A-Za-z0-9_-]+$")]
Reply = Annotated[str, Field(min_length=1, max_length=500)]
DEFAULT_DISPOSITIONS = ("已解决", "需回访", "转其他部门", "其他")


class DeskFile(_Model):
    version: Literal[1]
    calendars: dict[Name, list[dt.date]] = {}  # named date lists queues' hours share
    queues: dict[Annotated[str, Field(min_length=1, max_length=100)], QueueModel] = {}
    agents: list[AgentModel] = []
    canned: dict[CannedCode, Reply] = {}  # :code in an agent's chat sends the reply
    dispositions: Annotated[list[Name], Field(max_length=50)] = list(DEFAULT_DISPOSITIONS)
