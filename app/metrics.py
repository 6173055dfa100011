"""Prometheus metrics for /metrics, read from plain counters at scrape time.

The hot paths (a caller's line, a robot datagram) only add to ints and dicts on the hub and in the
engine's `Stats`; prometheus-client's labelled counters cost a lock and a lookup per increment,
which at a hundred thousand lines a second would be a tenth of the server's time. This collector
turns those counters into metric families when Prometheus asks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sized
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from app import __version__

if TYPE_CHECKING:
    from app.desk.desk import Desk
    from app.desk.logins import LoginGate
    from app.desk.tallies import Histogram
    from app.menu import Graph
    from app.menu.engine import Stats
    from app.records import Recorder


class Pages(Protocol):
    """The browser side's open pages (app/web/live.py)."""

    def page_counts(self) -> tuple[int, int]:
        """(console pages, boards) open now."""
        ...


class LookupTallies(Protocol):
    """HTTP look-ups (app/net/sources.py's Lookups)."""

    @property
    def seconds(self) -> dict[str, Histogram]:
        """source -> how long its requests took."""
        ...

    @property
    def results(self) -> dict[tuple[str, str], int]:
        """(source, found|missing|error|timeout|breaker) -> look-ups."""
        ...


class HookTallies(Protocol):
    """Webhook deliveries (app/net/hooks.py's Deliveries)."""

    @property
    def results(self) -> dict[tuple[str, str], int]:
        """(webhook, delivered|retried|failed|gone) -> attempts that ended so."""
        ...

    @property
    def pending(self) -> dict[str, int]:
        """webhook -> deliveries pending (all replicas')."""
        ...


class Scraped(Protocol):
    """What the metrics read of the server (app/server.py's Hub provides it); read-only."""

    @property
    def before_scrape(self) -> list[Callable[[], None]]: ...
    @property
    def graph(self) -> Graph: ...
    @property
    def sessions(self) -> Sized: ...
    @property
    def sessions_total(self) -> int: ...
    @property
    def durations(self) -> Histogram: ...
    @property
    def stats(self) -> Stats: ...
    @property
    def udp_dropped(self) -> dict[str, int]: ...
    @property
    def refusals(self) -> dict[str, int]: ...
    @property
    def reloads(self) -> dict[str, int]: ...
    @property
    def desk(self) -> Desk: ...
    @property
    def logins(self) -> LoginGate: ...
    @property
    def records(self) -> Recorder | None: ...
    @property
    def live(self) -> Pages | None: ...
    @property
    def lookups(self) -> LookupTallies: ...
    @property
    def hooks(self) -> HookTallies | None: ...


class HubCollector(Collector):
    """Yields every hotline_* metric from the hub's counters."""

    def __init__(self, hub: Scraped) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        hub = self.hub
        for fold in hub.before_scrape:
            fold()
        info = GaugeMetricFamily("hotline_info", "Version and current menu.", labels=["version", "menu"])
        info.add_metric([__version__, hub.graph.name], 1)
        yield info
        yield GaugeMetricFamily("hotline_sessions_active", "Callers connected now.", value=len(hub.sessions))
        yield CounterMetricFamily(
            "hotline_sessions_total", "Callers accepted since start.", value=hub.sessions_total
        )
        hist = hub.durations
        yield HistogramMetricFamily(
            "hotline_session_duration_seconds",
            "How long calls last.",
            buckets=hist.buckets(),
            sum_value=hist.total_seconds,
        )
        yield _labelled("hotline_node_visits", "Arrivals at each menu node.", "node", hub.stats.node_visits)
        yield CounterMetricFamily(
            "hotline_invalid_inputs", "Caller lines a node did not accept.", value=hub.stats.invalid
        )
        yield _labelled(
            "hotline_robot_queries",
            "Robot questions by the intent answered (none: fallback or clarifying question).",
            "intent",
            hub.stats.robot_queries,
        )
        yield _labelled(
            "hotline_udp_dropped", "Robot datagrams dropped unanswered.", "reason", hub.udp_dropped
        )
        yield _labelled("hotline_refused", "Callers refused or cut off.", "reason", hub.refusals)
        yield _labelled("hotline_menu_reloads", "Config reloads by result.", "result", hub.reloads)
        yield from _desk_metrics(hub)
        yield from _records_metrics(hub)
        yield from _lookup_metrics(hub.lookups)
        if hub.hooks is not None:
            yield from _hook_metrics(hub.hooks)


def _hook_metrics(hooks: HookTallies) -> Iterator[Metric]:
    """Webhook deliveries: attempts by result, and what waits to be sent."""
    total = CounterMetricFamily(
        "hotline_webhook_deliveries",
        "Webhook delivery attempts by webhook and result (delivered, retried, failed, gone).",
        labels=["webhook", "result"],
    )
    for (name, result), count in sorted(hooks.results.items()):
        total.add_metric([name, result], count)
    yield total
    yield _gauge(
        "hotline_webhook_pending", "Webhook deliveries waiting to be sent.", "webhook", hooks.pending
    )


def _lookup_metrics(lookups: LookupTallies) -> Iterator[Metric]:
    """HTTP look-ups of lookup nodes with a source."""
    seconds = HistogramMetricFamily(
        "hotline_lookup_seconds", "How long look-ups sent to a source took.", labels=["source"]
    )
    for name, hist in sorted(lookups.seconds.items()):
        seconds.add_metric([name], hist.buckets(), hist.total_seconds)
    yield seconds
    total = CounterMetricFamily(
        "hotline_lookup",
        "Look-ups by source and result (found, missing, error, timeout, breaker).",
        labels=["source", "result"],
    )
    for (name, result), count in sorted(lookups.results.items()):
        total.add_metric([name, result], count)
    yield total


def _records_metrics(hub: Scraped) -> Iterator[Metric]:
    """Tickets and transcripts (when the server keeps records)."""
    rec = hub.records
    if rec is None:
        return
    c = rec.counters
    yield CounterMetricFamily("hotline_tickets", "Tickets stored.", value=c.tickets)
    yield CounterMetricFamily(
        "hotline_ticket_failures",
        "Tickets that could not be stored (the caller heard `failed`).",
        value=c.ticket_failures,
    )
    yield CounterMetricFamily("hotline_transcript_lines", "Transcript lines written.", value=c.lines)
    yield CounterMetricFamily(
        "hotline_records_commits", "Database commits (tickets share them under load).", value=c.commits
    )
    yield CounterMetricFamily(
        "hotline_transcript_dropped",
        "Transcript lines not kept: a slow or full disk, or a call past its bound.",
        value=c.dropped,
    )


def _desk_metrics(hub: Scraped) -> Iterator[Metric]:
    """The agent desk: queues, agents by status and state, outcomes, wait and talk times."""
    desk = hub.desk
    now = time.time()
    waiting = GaugeMetricFamily("hotline_queue_waiting", "Callers waiting in the queue.", labels=["queue"])
    longest = GaugeMetricFamily(
        "hotline_queue_longest_wait_seconds", "How long the first caller has waited.", labels=["queue"]
    )
    agents = GaugeMetricFamily("hotline_agents", "Logged-in agents.", labels=["queue", "status", "state"])
    calls = CounterMetricFamily("hotline_queue_calls", "Transfers by outcome.", labels=["queue", "outcome"])
    wait = HistogramMetricFamily(
        "hotline_queue_wait_seconds", "Wait before an agent answered.", labels=["queue"]
    )
    talk = HistogramMetricFamily("hotline_queue_talk_seconds", "Talk time with an agent.", labels=["queue"])
    for name, q in sorted(desk.queues.items()):
        _, long, _, _ = desk.queue_summary(name, now)
        waiting.add_metric([name], len(q.waiting))  # this replica's callers: sums over replicas are totals
        longest.add_metric([name], long)
        counts: dict[tuple[str, str], int] = {}
        for a in desk.agents_of(name):
            counts[(a.status, a.state)] = counts.get((a.status, a.state), 0) + 1
        for (status, state), count in sorted(counts.items()):
            agents.add_metric([name, status, state], count)
        for outcome in ("answered", "abandoned", "timeout", "busy", "closed"):
            calls.add_metric([name, outcome], q.outcomes.get(outcome, 0))
        wait.add_metric([name], q.waits.buckets(), q.waits.total_seconds)
        talk.add_metric([name], q.talks.buckets(), q.talks.total_seconds)
    yield from (waiting, longest, agents, calls, wait, talk)
    yield CounterMetricFamily(
        "hotline_agent_login_failures", "Failed agent logins.", value=hub.logins.failed_total
    )
    yield _labelled(
        "hotline_agent_login_refused",
        "Agent logins refused without a password check (locked, busy, throttled).",
        "reason",
        {str(k): v for k, v in hub.logins.refused.items()},
    )
    pages = GaugeMetricFamily(
        "hotline_web_pages", "Open console and board pages (WebSockets).", labels=["page"]
    )
    console, boards = hub.live.page_counts() if hub.live is not None else (0, 0)
    pages.add_metric(["console"], console)
    pages.add_metric(["board"], boards)
    yield pages
    shared = desk.shared_health()
    if shared is not None:  # the replicas' Redis
        yield GaugeMetricFamily(
            "hotline_shared_up", "1 while Redis answers this replica's shared desk.", value=int(shared.up)
        )
        yield CounterMetricFamily("hotline_shared_commands", "Redis commands sent.", value=shared.commands)
        yield CounterMetricFamily(
            "hotline_shared_failures", "Redis commands that failed.", value=shared.failures
        )
        yield CounterMetricFamily(
            "hotline_replicas_reaped", "Replicas whose lapsed lease this one reaped.", value=shared.reaped
        )


def _labelled(name: str, doc: str, label: str, values: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def _gauge(name: str, doc: str, label: str, values: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def registry_for(hub: Scraped) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(hub))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
