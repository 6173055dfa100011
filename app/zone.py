"""The server's day: HOTLINE_TIMEZONE (default Asia/Shanghai), wherever a day or a time is shown or
numbered: ticket ids, the board's 今日, reports by day and hour, the times the CLI prints (ISO 8601
with the offset), `{now.date}` / `{now.time}` in prompts, and a queue's hours unless they name a zone.

The container sets no TZ and runs in UTC; a ticket left at 07:00 in Beijing must still be dated that
day. So the process's own local zone is never used: `hotline serve` configures the zone from its
settings at start, and the CLI's record commands read HOTLINE_TIMEZONE the same way.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT: Final = "Asia/Shanghai"
_zone: list[ZoneInfo] = []  # the configured zone (one process, one day)


def parse(name: str) -> ZoneInfo:
    """A time zone by its IANA name; ValueError with a readable message."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"'{name}' is not a time zone (e.g. Asia/Shanghai, UTC)") from None


def configure(name: str) -> None:
    """Set the server's zone (from HOTLINE_TIMEZONE / --timezone)."""
    _zone[:] = [parse(name)]


def server_zone() -> ZoneInfo:
    """The configured zone; until configured, HOTLINE_TIMEZONE or the default."""
    if not _zone:
        try:
            configure(os.environ.get("HOTLINE_TIMEZONE") or DEFAULT)
        except ValueError:
            configure(DEFAULT)  # a bad variable is the settings' error to report, not a crash here
    return _zone[0]


def local(t: float) -> dt.datetime:
    """`t` (seconds since the epoch) in the server's zone."""
    return dt.datetime.fromtimestamp(t, server_zone())


def day(t: float) -> dt.date:
    return local(t).date()


def iso(t: float) -> str:
    """ISO 8601 with the offset, to the second: 2026-12-01T07:00:00+08:00."""
    return local(t).isoformat(timespec="seconds")


def next_midnight(t: float) -> float:
    """When the server's day that `t` falls in ends."""
    tomorrow = day(t) + dt.timedelta(days=1)
    return dt.datetime.combine(tomorrow, dt.time(), server_zone()).timestamp()
