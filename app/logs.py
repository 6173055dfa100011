"""structlog set-up: JSON lines on stdout for machines, readable console output on a terminal.

Sessions bind `session_id` and `peer` with contextvars once; every line they log carries both.
The filtering logger drops below-level calls at almost no cost, so debug logging can stay in place.
"""

from __future__ import annotations

import logging
import sys
import urllib.parse
from typing import Any

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def without_password(url: str) -> str:
    """A server URL fit for logs and messages (Redis, PostgreSQL): its password replaced by ***."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{parts.username or ''}:***@{host}").geturl()


def _event_first(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """JSON lines read best as {"event", "level", "timestamp", ...the rest}."""
    head: dict[str, Any] = {k: event.pop(k) for k in ("event", "level", "timestamp") if k in event}
    return {**head, **event}


def configure(level: str = "info", fmt: str = "json") -> None:
    """Configure structlog for the whole process."""
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if fmt == "console":
        processors.append(structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty()))
    else:
        processors += [
            structlog.processors.format_exc_info,
            _event_first,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.WriteLoggerFactory(),  # sys.stdout as it is when a line is written
        cache_logger_on_first_use=False,
    )


def enabled(level: str) -> bool:
    """Whether `level` passes the configured filter (used to skip building debug-only data)."""
    logger = structlog.get_logger()
    return bool(logger.is_enabled_for(_LEVELS[level])) if hasattr(logger, "is_enabled_for") else True
