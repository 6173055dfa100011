"""desk.yaml -> validated queues and agents (DeskConfig), with every problem as path:line:col.

Without a desk.yaml there is one queue, `default`, always open, and no agent: every transfer takes
its `on_busy` way. Passwords are only ever stored as hashes (`hotline passwd` makes one).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pydantic

from app import zone
from app.desk.passwords import well_formed
from app.desk.schema import (
    DEFAULT_DISPOSITIONS,
    AgentModel,
    DeskFile,
    Hours,
    QueueModel,
    parse_days,
    parse_span,
)
from app.yamlfile import HasProblems, Problem, Reporter, read_yaml, suggest

MAX_FILE_BYTES = 1 << 20
DEFAULT_QUEUE = "default"


@dataclass(frozen=True)
class OpenHours:
    """When a queue takes calls: per weekday (0 = Monday) a span in minutes, closed dates, a zone."""

    zone: ZoneInfo | None  # None: the server's (HOTLINE_TIMEZONE), as it is when asked
    spans: dict[int, tuple[int, int]]
    closed: frozenset[dt.date]
    text: str

    @classmethod
    def of(cls, hours: Hours) -> OpenHours:
        spans = {day: parse_span(span) for days, span in hours.open.items() for day in parse_days(days)}
        if not hours.open:  # only closed dates: open all day on the others
            spans = dict.fromkeys(range(7), (0, 24 * 60))
        text = ", ".join(f"{days} {span}" for days, span in hours.open.items()) or "all day"
        where = ZoneInfo(hours.timezone) if hours.timezone is not None else None
        return cls(where, spans, frozenset(hours.closed_dates), text)

    def is_open(self, now: float) -> bool:
        local = dt.datetime.fromtimestamp(now, self.zone or zone.server_zone())
        if local.date() in self.closed:
            return False
        span = self.spans.get(local.weekday())
        if span is None:
            return False
        minute = local.hour * 60 + local.minute
        return span[0] <= minute < span[1]


@dataclass(frozen=True)
class QueueConfig:
    name: str
    model: QueueModel
    hours: OpenHours | None

    @property
    def title(self) -> str:
        return self.model.title or self.name

    def is_open(self, now: float) -> bool:
        return self.hours is None or self.hours.is_open(now)


@dataclass(frozen=True)
class DeskConfig:
    queues: dict[str, QueueConfig]
    agents: dict[str, AgentModel]
    source: str = ""
    canned: dict[str, str] = field(default_factory=dict)  # code -> reply (`:code` in an agent's chat)
    dispositions: tuple[str, ...] = DEFAULT_DISPOSITIONS  # the console's 处理结果 choices

    @classmethod
    def default(cls) -> DeskConfig:
        return cls({DEFAULT_QUEUE: QueueConfig(DEFAULT_QUEUE, QueueModel(), None)}, {})


@dataclass
class DeskLoadResult(HasProblems):
    desk: DeskConfig | None
    problems: list[Problem] = field(default_factory=list)


class _Loader(Reporter):
    def describe(self, path: tuple[str | int, ...]) -> str:
        return ".".join(str(p) for p in path) or "value"

    def run(self, path: Path) -> DeskLoadResult:
        doc = read_yaml(path, self.label, MAX_FILE_BYTES, self.problems)
        if doc is None:
            return DeskLoadResult(None, self.problems)
        self.doc = doc
        data: Any = doc.data
        if not isinstance(data, dict):
            self.error((), "the desk file must be a mapping with version, queues and agents")
            return DeskLoadResult(None, self.problems)
        try:
            model = DeskFile.model_validate(data)
        except pydantic.ValidationError as exc:
            self.pydantic_errors(exc, DeskFile, (), "the desk file")
            return DeskLoadResult(None, self.problems)
        queues = model.queues or {DEFAULT_QUEUE: QueueModel()}
        seen: dict[str, int] = {}
        for i, agent in enumerate(model.agents):
            if agent.id in seen:
                self.error(
                    ("agents", i, "id"),
                    f"agent id '{agent.id}' is used twice (first: agent {seen[agent.id] + 1})",
                )
            seen.setdefault(agent.id, i)
            why = well_formed(agent.password_hash)
            if why is not None:
                self.error(("agents", i, "password_hash"), f"agent '{agent.id}': password_hash {why}")
            for j, q in enumerate(agent.queues):
                if q not in queues:
                    self.error(
                        ("agents", i, "queues", j),
                        f"agent '{agent.id}': queue '{q}' is not in queues" + suggest(q, queues),
                    )
            if agent.role == "agent" and not agent.queues:
                self.warning(
                    ("agents", i), f"agent '{agent.id}' is in no queue and will never be offered a call"
                )
        if self.has_errors:
            return DeskLoadResult(None, self.problems)
        compiled = {
            name: QueueConfig(name, q, OpenHours.of(q.hours) if q.hours is not None else None)
            for name, q in queues.items()
        }
        return DeskLoadResult(
            DeskConfig(
                compiled,
                {a.id: a for a in model.agents},
                self.label,
                dict(model.canned),
                tuple(model.dispositions),
            ),
            self.problems,
        )


def load_desk(path: str | Path) -> DeskLoadResult:
    """Load desk.yaml (or the one in a config folder); a missing file is the default desk."""
    p = Path(path)
    if p.is_dir():
        p = p / "desk.yaml"
    if not p.exists():
        return DeskLoadResult(DeskConfig.default())
    return _Loader(str(p)).run(p)
