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
    opened: dict[dt.date, tuple[int, int]] = field(default_factory=dict)  # open_dates: whatever the weekday

    @classmethod
    def of(cls, hours: Hours) -> OpenHours:
        spans = {day: parse_span(span) for days, span in hours.open.items() for day in parse_days(days)}
        if not hours.open:  # only closed dates: open all day on the others
            spans = dict.fromkeys(range(7), (0, 24 * 60))
        text = ", ".join(f"{days} {span}" for days, span in hours.open.items()) or "all day"
        where = ZoneInfo(hours.timezone) if hours.timezone is not None else None
        opened = {day: parse_span(span) for day, span in hours.open_dates.items()}
        return cls(where, spans, frozenset(hours.closed_dates), text, opened)

    def is_open(self, now: float) -> bool:
        local = dt.datetime.fromtimestamp(now, self.zone or zone.server_zone())
        if local.date() in self.closed:
            return False
        span = self.opened.get(local.date()) or self.spans.get(local.weekday())
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
        data, named = self._calendars(data)
        try:
            model = DeskFile.model_validate(data)
        except pydantic.ValidationError as exc:
            self.pydantic_errors(exc, DeskFile, (), "the desk file")
            return DeskLoadResult(None, self.problems)
        if self.has_errors:  # a calendar not found
            return DeskLoadResult(None, self.problems)
        self._both_open_and_closed(model, data, named)
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

    # ---- calendars: named date lists that queues' hours share -----------------------------------

    def _calendars(self, data: dict[str, Any]) -> tuple[dict[str, Any], dict[tuple[str, str], str]]:
        """`data` with each `{calendar: NAME}` of a queue's closed_dates or open_dates replaced by
        the calendar's dates (open_dates: `{calendar: NAME, hours: SPAN}`, each date with SPAN), and
        which calendar each (queue, key) came from. A name not in `calendars:` is an error here; a
        calendar's bad dates are reported once, where the calendar is (as DeskFile's)."""
        calendars = data.get("calendars")
        calendars = calendars if isinstance(calendars, dict) else {}
        queues = data.get("queues")
        if not isinstance(queues, dict):
            return data, {}
        named: dict[tuple[str, str], str] = {}
        new_queues = dict(queues)
        for qname, q in queues.items():
            hours = q.get("hours") if isinstance(q, dict) else None
            if not isinstance(hours, dict):
                continue
            new_hours = dict(hours)
            for key in ("closed_dates", "open_dates"):
                ref = hours.get(key)
                if not (isinstance(ref, dict) and "calendar" in ref):
                    continue
                where = ("queues", qname, "hours", key)
                dates = self._calendar(ref, where, calendars)
                if dates is None:
                    new_hours.pop(key)
                    continue
                named[(str(qname), key)] = str(ref["calendar"])
                new_hours[key] = dates if key == "closed_dates" else dict.fromkeys(dates, ref.get("hours"))
            new_queues[qname] = {**q, "hours": new_hours}
        return {**data, "queues": new_queues}, named

    def _calendar(
        self, ref: dict[str, Any], where: tuple[str | int, ...], calendars: dict[str, Any]
    ) -> list[dt.date] | None:
        """The dates of the calendar `ref` names (only those that are dates), or None after an error."""
        allowed = {"calendar", "hours"} if where[-1] == "open_dates" else {"calendar"}
        for key in ref:
            if key not in allowed:
                takes = ", ".join(sorted(allowed))
                message = f"{where[-1]} from a calendar takes only {takes}" + suggest(str(key), allowed)
                self.error((*where, key), message, key=True)
                return None
        name = ref["calendar"]
        if where[-1] == "open_dates" and "hours" not in ref:
            self.error(where, f"open_dates from calendar '{name}' needs hours, e.g. hours: \"08:00-20:00\"")
            return None
        if "hours" in ref:
            try:
                parse_span(str(ref["hours"]))
            except ValueError as exc:
                self.error((*where, "hours"), f"{where[-1]}: {exc}")
                return None
        if not isinstance(name, str) or name not in calendars:
            self.error(
                (*where, "calendar"), f"calendar '{name}' is not in calendars" + suggest(str(name), calendars)
            )
            return None
        dates = calendars[name]
        return [d for d in dates if isinstance(d, dt.date)] if isinstance(dates, list) else []

    def _both_open_and_closed(
        self, model: DeskFile, data: dict[str, Any], named: dict[tuple[str, str], str]
    ) -> None:
        """A date in both a queue's open_dates and its closed_dates is an error, where it is written
        (the date in open_dates; or the calendar it came from)."""
        for qname, q in model.queues.items():
            if q.hours is None:
                continue
            both = sorted(set(q.hours.open_dates) & set(q.hours.closed_dates))
            raw_open = data["queues"][qname]["hours"]["open_dates"] if both else {}
            for day in both:
                where: tuple[str | int, ...] = ("queues", qname, "hours")
                origin = ""
                if (qname, "open_dates") in named:
                    where += ("open_dates", "calendar")
                    origin = f" (open_dates from calendar '{named[(qname, 'open_dates')]}')"
                else:
                    key = next((k for k in raw_open if str(k) == day.isoformat()), day.isoformat())
                    where += ("open_dates", key)
                if (qname, "closed_dates") in named:
                    origin += f" (closed_dates from calendar '{named[(qname, 'closed_dates')]}')"
                self.error(
                    where,
                    f"queue '{qname}': {day.isoformat()} is in both open_dates and closed_dates{origin}",
                    key=where[-1] != "calendar",
                )


def load_desk(path: str | Path) -> DeskLoadResult:
    """Load desk.yaml (or the one in a config folder); a missing file is the default desk."""
    p = Path(path)
    if p.is_dir():
        p = p / "desk.yaml"
    if not p.exists():
        return DeskLoadResult(DeskConfig.default())
    return _Loader(str(p)).run(p)
