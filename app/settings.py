"""The one frozen settings object: environment variables `HOTLINE_*`, overridden by `hotline serve` flags.

Validated before anything binds, with `extra="forbid"` so a misspelt name is an error, not a default.
"""

from __future__ import annotations

import codecs
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

Port = Annotated[int, Field(ge=0, le=65535)]


def _addresses(text: str) -> str:
    import ipaddress  # noqa: PLC0415

    for part in text.split(","):
        if part.strip():
            try:
                ipaddress.ip_address(part.strip())
            except ValueError:
                raise ValueError(f"{part.strip()!r} is not an IP address (e.g. 10.0.0.5,10.0.0.6)") from None
    return text


_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"{_LABEL}(\.{_LABEL})*\.?")


def _host_names(text: str | None) -> str | None:
    import ipaddress  # noqa: PLC0415

    for part in (p.strip() for p in (text or "").split(",")):
        if not part:
            continue
        try:
            ipaddress.ip_address(part)
        except ValueError:
            if not _HOST_NAME.fullmatch(part):
                raise ValueError(
                    f"{part!r} is not a host name (names only, no scheme or port: e.g. hotline.example.com)"
                ) from None
    return text


def _database_url(url: str | None) -> str | None:
    if url is not None and not url.startswith(("postgresql://", "postgres://")):
        raise ValueError(
            "must be a PostgreSQL URL, postgresql://USER:PASSWORD@HOST:5432/DATABASE (unset: SQLite)"
        )
    return url


def _timezone(name: str) -> str:
    from app.zone import parse  # noqa: PLC0415

    parse(name)
    return name


def _encoding(name: str) -> str:
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        raise ValueError(f"unknown encoding {name!r}; use utf-8, gbk or gb18030") from None
    if codec not in ("utf-8", "gbk", "gb18030"):
        raise ValueError(f"encoding {name!r} is not supported; use utf-8, gbk or gb18030")
    return codec


class Settings(BaseSettings):
    """Every setting of `hotline serve`, with its default. The README's settings table mirrors this."""

    model_config = SettingsConfigDict(env_prefix="HOTLINE_", extra="forbid", frozen=True)

    config: Path = Field(
        Path("config"),
        description="folder holding menu.yaml, robot.yaml, desk.yaml and the data files the menu names",
    )
    host: str = Field("127.0.0.1", description="address to bind (0.0.0.0 for every interface)")
    tcp_port: Port = Field(10086, description="the caller menu (telnet / nc); 0 picks a free port")
    udp_port: Port = Field(10086, description="the UDP robot; 0 picks a free port")
    admin_port: Port = Field(
        9108,
        description="HTTP: the agent console, the board, /healthz, /readyz, /metrics; 0 picks a free port",
    )
    agent_port: Port = Field(
        10087, description="terminal agents (the agent desk, nc / telnet); 0 picks a free port"
    )
    log_format: Literal["auto", "console", "json"] = Field(
        "auto", description="auto: console on a terminal, json otherwise"
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="log level")
    encoding: Annotated[str, AfterValidator(_encoding)] = Field(
        "utf-8", description="caller text encoding: utf-8, gbk or gb18030"
    )
    max_line: Annotated[int, Field(ge=16, le=1 << 20)] = Field(
        1024, description="longest input line in bytes; longer lines are refused and dropped"
    )
    max_output: Annotated[int, Field(ge=4096)] = Field(
        256 * 1024, description="bytes queued for a caller who does not read before they are cut off"
    )
    max_sessions: Annotated[int, Field(ge=1)] = Field(
        10000, description="concurrent callers; past it a caller hears a busy line and is closed"
    )
    max_sessions_per_address: Annotated[int, Field(ge=1)] = Field(
        100, description="concurrent callers from one IP address; past it: a busy line"
    )
    max_lines_per_second: Annotated[float, Field(gt=0)] = Field(
        20.0, description="lines one caller may send per second (bursts of twice that); more are ignored"
    )
    first_input_timeout: Annotated[float, Field(gt=0, le=3600)] = Field(
        60.0, description="seconds a new caller may stay silent before the first line; then goodbye"
    )
    proxy_protocol: bool = Field(
        False,
        description="callers and agents come through a TCP load balancer that sends a PROXY header "
        "(v1 or v2)",
    )
    proxy_from: Annotated[str, AfterValidator(_addresses)] = Field(
        "127.0.0.1,::1",
        description="load balancers trusted to send PROXY headers (caller and agent ports) and "
        "X-Forwarded-* headers (admin port), comma-separated",
    )
    max_agent_connections: Annotated[int, Field(ge=1)] = Field(
        1000, description="open connections to the agent port, all addresses together; past it: closed"
    )
    max_http_connections: Annotated[int, Field(ge=1)] = Field(
        1000, description="open connections to the admin (HTTP) port, all addresses together; past it: closed"
    )
    allowed_hosts: Annotated[str | None, AfterValidator(_host_names)] = Field(
        None,
        description="host names the admin port answers to besides localhost, loopback and the bound "
        "address (comma-separated; others get 421)",
    )
    timezone: Annotated[str, AfterValidator(_timezone)] = Field(
        "Asia/Shanghai",
        description="the server's day: ticket ids, the board's 今日, reports, times the CLI prints, "
        "{now.date}, and queue hours that name no zone",
    )
    reload_watch: bool = Field(True, description="reload when a file in the config folder changes")
    data: Path = Field(Path("data"), description="folder of the tickets and transcripts database (created)")
    transcripts: bool = Field(True, description="keep a transcript of every call in the data folder")
    transcript_days: Annotated[int, Field(ge=0)] = Field(
        30, description="days transcripts are kept (0: for ever); tickets are kept"
    )
    udp_max_datagram: Annotated[int, Field(ge=64, le=65000)] = Field(
        1024, description="largest robot question in bytes; larger datagrams are dropped"
    )
    robot_rate: Annotated[float, Field(gt=0)] = Field(
        5.0, description="robot replies per second to one sender address (token bucket)"
    )
    robot_burst: Annotated[float, Field(ge=1)] = Field(
        20.0, description="robot replies one sender may get at once before robot_rate applies"
    )
    robot_global_rate: Annotated[float, Field(gt=0)] = Field(
        20000.0, description="robot replies per second to everyone together"
    )
    secret: Annotated[SecretStr | None, Field(min_length=16)] = Field(
        None, description="signs the console's session cookies; unset: one generated in the data folder"
    )
    session_hours: Annotated[float, Field(gt=0, le=24 * 30)] = Field(
        12.0, description="hours a console login lasts"
    )
    agent_reconnect_grace: Annotated[float, Field(ge=0, le=3600)] = Field(
        30.0, description="seconds a browser agent whose last page closed stays logged in"
    )
    redis_url: str | None = Field(
        None,
        description="share queues, agents and calls with other replicas through this Redis "
        "(redis://host:6379/0); unset: all in this process",
    )
    database_url: Annotated[str | None, AfterValidator(_database_url)] = Field(
        None,
        description="keep tickets and transcripts in this PostgreSQL database, shared by replicas "
        "(postgresql://user:password@host:5432/hotline); unset: SQLite in the data folder",
    )
    replica: Annotated[str | None, Field(max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")] = Field(
        None, description="this replica's name in Redis; unset: host-pid-random (a restart is a new replica)"
    )
    webhook_retry_first: Annotated[float, Field(gt=0, le=3600)] = Field(
        1.0, description="seconds before a failed webhook delivery is tried again; doubled each time"
    )
    webhook_retry_max: Annotated[float, Field(gt=0, le=86400)] = Field(
        600.0, description="longest wait in seconds between two attempts of a webhook delivery"
    )
    webhook_retry_for: Annotated[float, Field(gt=0, le=30 * 86400)] = Field(
        86400.0, description="seconds a webhook delivery is tried before it is failed (and kept)"
    )
    shutdown_grace: Annotated[float, Field(ge=0, le=600)] = Field(
        5.0, description="seconds to let callers finish after the goodbye on shutdown"
    )

    def resolved_log_format(self) -> str:
        if self.log_format != "auto":
            return self.log_format
        return "console" if sys.stdout.isatty() else "json"


class SettingsError(ValueError):
    """Settings that cannot be used, with one line per problem naming the variable and flag."""


def load_settings(**overrides: Any) -> Settings:
    """Environment first, then `overrides` (flags, None meaning "not given") on top."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False):
            name = str(err["loc"][0]) if err["loc"] else "?"
            lines.append(f"HOTLINE_{name.upper()} / --{name.replace('_', '-')}: {err['msg']}")
        raise SettingsError("\n".join(lines)) from None
