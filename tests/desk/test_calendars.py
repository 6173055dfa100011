"""Calendars in desk.yaml: open_dates (make-up working days, 调休) open a date whatever its weekday;
a date both open and closed is an error at its line and column; named calendars under `calendars:`
are shared by queues; an unknown calendar name suggests the nearest; the shipped cn calendars."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

from app.desk.loader import load_desk
from tests.helpers import CONFIG, REPO, problems_as_shown

SHANGHAI = ZoneInfo("Asia/Shanghai")
DESK = """\
version: 1
calendars:
  holidays: [2026-10-01, 2026-10-02]
  workdays: [2026-10-10]
queues:
  default:
    hours:
      timezone: Asia/Shanghai
      open: {mon-fri: "08:00-20:00"}
      closed_dates: [2026-10-01]
      open_dates: {2026-10-10: "09:00-17:00"}
  shared:
    hours:
      open: {mon-fri: "08:00-20:00"}
      closed_dates: {calendar: holidays}
      open_dates: {calendar: workdays, hours: "10:00-16:00"}
  also:
    hours:
      closed_dates: {calendar: holidays}
"""


def at(day: str, hour: int, minute: int = 0) -> float:
    return dt.datetime.combine(dt.date.fromisoformat(day), dt.time(hour, minute), SHANGHAI).timestamp()


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "desk.yaml"
    path.write_text(text, encoding="utf-8")
    result = load_desk(path)
    return problems_as_shown(result, tmp_path, result.desk)


def test_open_dates_open_a_saturday_with_their_hours(tmp_path: Path) -> None:
    (tmp_path / "desk.yaml").write_text(DESK, encoding="utf-8")
    desk = load_desk(tmp_path).desk
    assert desk is not None
    default = desk.queues["default"]
    assert dt.date(2026, 10, 10).weekday() == 5  # a Saturday
    assert default.is_open(at("2026-10-10", 9)) and default.is_open(at("2026-10-10", 16, 59))
    assert not default.is_open(at("2026-10-10", 8, 30))  # its own hours, not Monday's 08:00
    assert not default.is_open(at("2026-10-10", 17))
    assert not default.is_open(at("2026-10-17", 10))  # the next Saturday is closed as ever
    assert default.is_open(at("2026-10-09", 8)) and not default.is_open(at("2026-10-01", 10))


def test_queues_share_a_named_calendar(tmp_path: Path) -> None:
    (tmp_path / "desk.yaml").write_text(DESK, encoding="utf-8")
    desk = load_desk(tmp_path).desk
    assert desk is not None
    shared, also = desk.queues["shared"], desk.queues["also"]
    for q in (shared, also):
        assert not q.is_open(at("2026-10-01", 12)) and not q.is_open(at("2026-10-02", 12))
    assert shared.is_open(at("2026-10-08", 12)) and also.is_open(at("2026-10-08", 3))  # also: all day
    assert shared.is_open(at("2026-10-10", 10)) and not shared.is_open(at("2026-10-10", 9, 59))
    assert not also.is_open(at("2026-10-01", 3)) and also.is_open(at("2026-10-10", 3))


def test_a_date_open_and_closed_is_an_error_where_it_is_written(tmp_path: Path) -> None:
    out = problems(
        tmp_path, DESK.replace("closed_dates: [2026-10-01]", "closed_dates: [2026-10-01, 2026-10-10]")
    )
    assert out == [
        "desk.yaml:11:20: error: queue 'default': 2026-10-10 is in both open_dates and closed_dates"
    ]
    both = DESK.replace("holidays: [2026-10-01, 2026-10-02]", "holidays: [2026-10-01, 2026-10-10]")
    assert problems(tmp_path, both) == [
        "desk.yaml:16:30: error: queue 'shared': 2026-10-10 is in both open_dates and closed_dates (open_dates "
        "from calendar 'workdays') (closed_dates from calendar 'holidays')"
    ]


def test_an_unknown_calendar_suggests(tmp_path: Path) -> None:
    out = problems(
        tmp_path,
        DESK.replace(
            "hours:\n      closed_dates: {calendar: holidays}",
            "hours:\n      closed_dates: {calendar: holidyas}",
        ),
    )
    assert out == [
        "desk.yaml:19:32: error: calendar 'holidyas' is not in calendars (did you mean 'holidays'?)"
    ]
    no_hours = DESK.replace('{calendar: workdays, hours: "10:00-16:00"}', "{calendar: workdays}")
    assert problems(tmp_path, no_hours) == [
        "desk.yaml:16:19: error: open_dates from calendar 'workdays' needs hours, e.g. hours: \"08:00-20:00\""
    ]
    bad_date = DESK.replace("workdays: [2026-10-10]", "workdays: [2026-10-32]")
    out = problems(tmp_path, bad_date)
    assert len(out) == 1 and out[0].startswith("desk.yaml:4:14: error:") and "calendars.workdays" in out[0]


def test_hotline_check_reports_a_conflict(tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(CONFIG, config)
    text = (config / "desk.yaml").read_text(encoding="utf-8")
    conflict = text.replace(
        "  default:\n",
        '  default:\n    hours: {closed_dates: [2026-10-10], open_dates: {2026-10-10: "08:00-20:00"}}\n',
        1,
    )
    (config / "desk.yaml").write_text(conflict, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "app", "check", "--config", str(config)],
        capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "desk.yaml:" in done.stdout and "2026-10-10 is in both open_dates and closed_dates" in done.stdout


def test_the_shipped_china_calendars_of_2026() -> None:
    result = load_desk(CONFIG)
    assert result.desk is not None and result.problems == []
    import yaml

    calendars = yaml.safe_load((CONFIG / "desk.yaml").read_text(encoding="utf-8"))["calendars"]
    holidays, workdays = calendars["cn-holidays-2026"], calendars["cn-workdays-2026"]
    assert len(holidays) == 33 and len(set(holidays)) == 33  # 3 + 9 + 3 + 5 + 3 + 3 + 7 days off
    assert {d.isoformat() for d in workdays} == {
        "2026-01-04", "2026-02-14", "2026-02-28", "2026-05-09", "2026-09-20", "2026-10-10"
    }  # fmt: skip
    assert all(d.weekday() >= 5 for d in workdays)  # make-up days fall on weekends
    assert not set(holidays) & set(workdays)
