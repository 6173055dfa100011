"""The server's lifecycle: one object owns the listeners, the live sessions and the current menu.

Order of events: load the menu (refuse to start on errors) -> bind TCP and admin listeners -> log
`server_started` with the ports actually bound -> serve until SIGTERM/SIGINT (handlers only set an
event) -> stop accepting -> say goodbye to every caller -> wait up to `shutdown_grace` for them to
close -> abort the rest -> exit 0. SIGHUP reloads the menu; sessions keep the menu they started on.
The event loop is chosen here, in one place: uvloop, or asyncio's own with a log line saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import resource
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from app import logs, zone
from app.configdir import Config, load_config
from app.desk.desk import Desk
from app.desk.loader import DeskConfig
from app.desk.logins import LocalCounts, LoginGate, RedisCounts
from app.desk.redis import RedisStore
from app.desk.tallies import Histogram
from app.menu import Graph
from app.menu.engine import Stats
from app.metrics import registry_for, render
from app.net.agents import AgentConnection
from app.net.hooks import Deliveries, Retry
from app.net.rates import Rate
from app.net.sources import Lookups
from app.net.tcp import CallerSession, ProxyWait
from app.net.telnet import keypresses
from app.net.timers import Timers
from app.net.udp import RobotEndpoint
from app.records import DatabaseError, Recorder
from app.records.database import prepare_folder
from app.robot import Matcher
from app.settings import Settings
from app.web.auth import SecretError
from app.web.live import Live
from app.web.site import WebSite

log = structlog.get_logger("hotline.server")
DESK_TICK = 0.2  # seconds between the desk's timer checks
# Hashes of the shipped demo agents' passwords (README): public, so fine on loopback only.
DEMO_HASHES: frozenset[str] = frozenset(
    {
        "scrypt$16384$8$1$hn8si/gdzWfU5zjyV8uA7A==$QM+oDHjn9oKQKpR5FK8To81cIWdbUbbflBPGtpP8yl0=",  # 1001
        "scrypt$16384$8$1$tLLgbXWc/CWtzLjPKLC9Ew==$71l4oztDVq6GJvWfml6IuG0YHuq9xOJzR+diwL6eg+w=",  # 1002
        "scrypt$16384$8$1$5z9pVNfko33boDS9qcYPjQ==$FmH0RIkrGm7PsgvCjXkKV21/CgoV936ZPbHsfNNvExs=",  # 9001
    }
)


def _is_loopback(host: str) -> bool:
    import ipaddress  # noqa: PLC0415

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def folder_signature(folder: Path) -> frozenset[tuple[str, int, int]]:
    """Names, sizes and modification times of the files in the config folder."""
    try:
        return frozenset(
            (p.name, st.st_size, st.st_mtime_ns)
            for p in Path(folder).iterdir()
            if p.is_file() and (st := p.stat())
        )
    except OSError:
        return frozenset()


def loop_factory() -> tuple[Callable[[], asyncio.AbstractEventLoop], str]:
    """uvloop's loop factory when uvloop is installed, else asyncio's; and its name for the logs."""
    try:
        import uvloop  # noqa: PLC0415 - optional at run time
    except ImportError:
        return asyncio.new_event_loop, "asyncio"
    return uvloop.new_event_loop, "uvloop"


FILES_RESERVED = 64  # descriptors besides connections: listeners, the database, Redis, logs, the loop's own


def raise_file_limit(settings: Settings) -> None:
    """Raise the soft open-file limit to the hard one, and warn (with the numbers) when even that cannot
    hold every connection the caps allow: past it, accept() fails and a new caller hears nothing."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    connections = settings.max_sessions + settings.max_agent_connections + settings.max_http_connections
    needed = connections + FILES_RESERVED
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning(
            "file_limit_low",
            limit=soft,
            needed=needed,
            max_sessions=settings.max_sessions,
            max_agent_connections=settings.max_agent_connections,
            max_http_connections=settings.max_http_connections,
            hint="raise the hard limit (ulimit -Hn, or the container's nofile ulimit) or lower the caps",
        )


def _desk_log(event: str, **fields: object) -> None:
    """The desk's queue_log-style events; a call's id is the caller's session id."""
    if "call_id" in fields:
        fields["session_id"] = fields.pop("call_id")
    log.info(event, **fields)


class Hub:
    """What every session shares: settings, the current menu, the live sessions, caches, counters."""

    def __init__(
        self,
        settings: Settings,
        graph: Graph,
        robot: Matcher,
        desk: DeskConfig | None = None,
        records: Recorder | None = None,
    ) -> None:
        self.settings = settings
        self.records = records  # tickets and transcripts; None only in tests of other parts
        self.tasks: set[asyncio.Task[None]] = set()  # tickets being stored (a reference keeps them alive)
        self.lookups = Lookups()  # HTTP look-ups of lookup nodes: one pooled client, each source's limits
        self.hooks: Deliveries | None = None  # webhook deliveries (hooks.yaml), once the server runs
        desk = desk or DeskConfig.default()
        store = RedisStore(settings.redis_url, settings.replica or "") if settings.redis_url else None
        self.desk = Desk(desk, _desk_log, store, records)
        self.agent_connections: set[AgentConnection] = set()
        self.agents_unauthenticated: dict[str, int] = {}  # address -> agent connections not logged in
        self.live: Live | None = None  # the browser side (app.web), once it runs
        # both doors' logins: per-address counts (shared through Redis with replicas), checks off the loop
        self.logins = LoginGate(RedisCounts(settings.redis_url) if settings.redis_url else LocalCounts())
        self.graph = graph
        self.robot = robot
        self.sessions: set[CallerSession] = set()
        self.per_address: dict[str, int] = {}
        self.encoded: dict[str, bytes] = {}
        self.keys = keypresses(settings.encoding)  # short reads -> lines (the line discipline's table)
        self.proxy_from = frozenset(a.strip() for a in settings.proxy_from.split(",") if a.strip())
        self.proxy_waits: dict[CallerSession, ProxyWait] = {}  # connections before their PROXY header
        self.trace = logs.enabled("debug")
        self.stats = Stats()
        self.sessions_total = 0
        self.durations = Histogram()
        self.refusals: dict[str, int] = {}
        self.udp_dropped: dict[str, int] = {}
        self.reloads: dict[str, int] = {}
        self.before_scrape: list[Callable[[], None]] = []  # bring counters kept elsewhere up to date
        self.timers = Timers()
        # each caller's line rate, with bursts of twice the rate (GCRA: see net/rates.py)
        self.line_rate = Rate(settings.max_lines_per_second, 2.0 * settings.max_lines_per_second)
        self._logged: set[tuple[str, str]] = set()

    def refuse(self, peer: str, reason: str, quiet: bool = False) -> None:
        """Count a refused or cut-off client; log it once per client address and reason (unless quiet)."""
        self.refusals[reason] = self.refusals.get(reason, 0) + 1
        if not quiet:
            self._once("refused", peer, reason)

    def count_drop(self, host: str, reason: str) -> None:
        """Count a dropped robot datagram; log it once per sender address and reason."""
        self.udp_dropped[reason] = self.udp_dropped.get(reason, 0) + 1
        self._once("udp_dropped", host, reason)

    def _once(self, event: str, peer: str, reason: str) -> None:
        key = (peer.rsplit(":", 1)[0] if peer.count(":") == 1 else peer, reason)
        if key not in self._logged:
            if len(self._logged) >= 10000:  # bounded: a flood from many addresses cannot grow it
                self._logged.clear()
            self._logged.add(key)
            log.warning(event, peer=peer, reason=reason)


class Server:
    """Owns the listeners and the live sessions; `run()` serves until `stop()` is called."""

    def __init__(self, settings: Settings, config: Config, signature: object = None) -> None:
        """Opens the records database (DatabaseError when it cannot be used)."""
        assert config.graph is not None and config.robot is not None
        self.settings = settings
        zone.configure(settings.timezone)  # the server's day, for everything that shows or numbers one
        prepare_folder(settings.data)  # the console's secret is kept there, with or without SQLite
        records = Recorder(settings.database_url or settings.data, settings.transcript_days)
        self.hub = Hub(settings, config.graph, config.robot, config.desk, records)
        retry = Retry(settings.webhook_retry_first, settings.webhook_retry_max, settings.webhook_retry_for)
        self.hub.hooks = Deliveries(settings.database_url or settings.data, config.hooks, retry)
        records.hooks = config.hooks.subscriptions()  # events go to the outbox with their records
        records.on_outbox = self.hub.hooks.wake
        self.stopping = asyncio.Event()
        self.tcp: asyncio.Server | None = None
        self.agents: asyncio.Server | None = None
        self.agent_port = 0
        registry = registry_for(self.hub)
        self.web = WebSite(self.hub, lambda: self.ready, lambda: render(registry))
        self.hub.live = self.web.live
        self.udp: RobotEndpoint | None = None
        self.signature = signature
        self.tcp_port = 0
        self.udp_port = 0
        self.admin_port = 0
        self.ready = False

    async def start(self, loop_name: str = "") -> None:
        loop = asyncio.get_running_loop()
        s = self.settings
        raise_file_limit(s)
        if self.hub.records is not None:
            self.hub.records.start()
        if self.hub.hooks is not None:
            self.hub.hooks.start()
        await self.hub.desk.start()
        if not s.redis_url:  # in process, queued callbacks live in the records (Redis keeps its own)
            await self._restore_callbacks()
        self.tcp = await loop.create_server(
            lambda: CallerSession(self.hub), s.host, s.tcp_port, backlog=4096, reuse_address=True
        )
        self.agents = await loop.create_server(
            lambda: AgentConnection(self.hub), s.host, s.agent_port, backlog=4096, reuse_address=True
        )  # a deep backlog: after a restart every agent's client may reconnect in the same moment
        await self.web.start(s.host, s.admin_port)
        self.udp = RobotEndpoint(self.hub)
        self.hub.before_scrape.append(self.udp.fold_counts)
        self.udp.start(s.host, s.udp_port)
        self.tcp_port = self.tcp.sockets[0].getsockname()[1]
        self.udp_port = self.udp.port
        self.admin_port = self.web.port
        self.agent_port = self.agents.sockets[0].getsockname()[1]
        self.ready = True
        log.info(
            "server_started",
            host=s.host,
            tcp_port=self.tcp_port,
            udp_port=self.udp_port,
            admin_port=self.admin_port,
            agent_port=self.agent_port,
            queues=sorted(self.hub.desk.queues),
            agents=len(self.hub.desk.config.agents),
            intents=len(self.hub.robot.ids),
            menu=self.hub.graph.name,
            nodes=len(self.hub.graph.nodes),
            loop=loop_name or type(loop).__module__,
            pid=os.getpid(),
            encoding=s.encoding,
            records=self.hub.records.where if self.hub.records is not None else None,  # URL: no password
            webhooks=[h.name for h in self.hub.hooks.hooks.webhooks] if self.hub.hooks is not None else [],
        )
        demo = sorted(a.id for a in self.hub.desk.config.agents.values() if a.password_hash in DEMO_HASHES)
        if demo and not _is_loopback(s.host):
            log.warning(
                "demo_passwords_in_use",
                agents=demo,
                host=s.host,
                hint="the shipped demo agents' passwords are public: set your own with `hotline passwd`",
            )

    async def _restore_callbacks(self) -> None:
        """Callbacks booked before a restart are back in their queues, in their join order."""
        records = self.hub.records
        if records is None:
            return
        try:
            rows = await records.pending_callbacks()
        except Exception:  # the records are unwell: the server starts; the log says what was lost
            log.exception("callbacks_not_restored")
            return
        for row in rows:
            context = tuple((str(k), str(v)) for k, v in json.loads(row["context"] or "[]"))
            self.hub.desk.restore_callback(
                row["call_id"],
                row["queue"],
                row["joined"],
                row["callback"],
                context,
                row["expires"] or 86400.0,
            )
        if rows:
            log.info("callbacks_restored", callbacks=len(rows))

    def stop(self) -> None:
        """Ask `run()` to shut down (safe to call from a signal handler)."""
        self.stopping.set()

    def reload(self, trigger: str = "signal") -> bool:
        """Load the menu and the robot again; keep the old ones if anything has errors."""
        hub = self.hub
        self.signature = folder_signature(self.settings.config)
        result = load_config(self.settings.config, env_required=True)
        if result.graph is None or result.robot is None or result.desk is None:
            hub.reloads["rejected"] = hub.reloads.get("rejected", 0) + 1
            log.error("menu_rejected", trigger=trigger, errors=[str(p) for p in result.errors])
            return False
        hub.reloads["ok"] = hub.reloads.get("ok", 0) + 1
        old, new = hub.graph.nodes, result.graph.nodes
        changed = sorted(n for n in set(old) & set(new) if old[n] != new[n])
        hub.graph = result.graph
        hub.robot = result.robot
        hub.desk.configure(result.desk, time.time())
        if hub.hooks is not None and hub.records is not None:
            hub.records.hooks = result.hooks.subscriptions()
            hub.hooks.configure(result.hooks)
        if hub.live is not None:
            hub.live.titles_changed()  # consoles show the new menu's and queues' titles
        log.info(
            "menu_reloaded",
            trigger=trigger,
            menu=result.graph.name,
            nodes_added=sorted(set(new) - set(old)),
            nodes_removed=sorted(set(old) - set(new)),
            nodes_changed=changed,
            intents=len(result.robot.ids),
            warnings=[str(p) for p in result.warnings],
        )
        return True

    async def watch(self, period: float = 0.25, settle: float = 0.2) -> None:
        """Reload when a file in the config folder changes (size or modification time).

        Polled from the event loop a few times a second rather than with a file-event library: the
        folder holds a few files, stat-ing them costs nothing measurable, it works on every mount
        (bind mounts that never deliver events included), and it needs no thread. A watcher thread
        (watchfiles) took the GIL every 50 ms and cost 8% of menu throughput in `make bench`.
        Editors save in bursts, so a change must hold still for `settle` seconds before it loads.
        """
        folder = self.settings.config
        seen = self.signature
        while True:
            try:
                await asyncio.wait_for(self.stopping.wait(), period)
                return
            except TimeoutError:
                pass
            now = folder_signature(folder)
            if now == seen:
                continue
            while True:  # wait for the save to finish
                await asyncio.sleep(settle)
                again = folder_signature(folder)
                if again == now:
                    break
                now = again
            self.reload("file")
            seen = self.signature

    async def desk_clock(self, period: float = DESK_TICK) -> None:
        """The desk's one timer: ring timeouts, wrap-ups, max_wait and announcements, for every queue
        and caller at once (no timer per waiting caller)."""
        desk = self.hub.desk
        while True:
            await asyncio.sleep(period)
            if desk.calls or desk.agents:
                try:
                    desk.tick(time.time())
                except Exception:  # a bug in the desk must not stop its clock for everyone
                    log.exception("desk_tick_failed")

    async def run(self, loop_name: str = "") -> None:
        loop = asyncio.get_running_loop()
        handled = []
        # Handlers first: a signal that arrives as soon as `server_started` is logged must be handled.
        for sig, action in (
            (signal.SIGTERM, self.stop),
            (signal.SIGINT, self.stop),
            (signal.SIGHUP, self.reload),
        ):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, action)
                handled.append(sig)
        tasks: list[asyncio.Task[None]] = []
        try:
            await self.start(loop_name)
            tasks.append(asyncio.create_task(self.desk_clock()))
            if self.settings.reload_watch:
                tasks.append(asyncio.create_task(self.watch()))
            await self.stopping.wait()
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for sig in handled:
                loop.remove_signal_handler(sig)
            await self.shutdown()

    async def shutdown(self) -> None:
        """Stop accepting, say goodbye to every caller, wait up to the grace period, abort the rest."""
        self.ready = False
        started = time.monotonic()
        for srv in (self.tcp, self.agents):
            if srv is not None:
                srv.close()
        self.hub.desk.shutdown(time.time())  # agents in a call hear ENDED by=server, callers `ended`
        for conn in list(self.hub.agent_connections):
            conn.send("INFO the server is shutting down")
            conn.close("shutdown")
        await self.web.close_pages()  # browser agents too; /readyz answers 503 until the end
        if self.udp is not None:
            self.udp.close()
        sessions = list(self.hub.sessions)
        for session in sessions:
            session.shutdown()
        deadline = started + self.settings.shutdown_grace
        while self.hub.sessions and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        left = list(self.hub.sessions)
        for session in left:
            session.abort()
        await asyncio.sleep(0)
        await self.hub.desk.close()  # shared: this replica's callers and agents leave Redis at once
        await self.web.close()
        await self.hub.lookups.close()  # look-ups of callers who were aborted, and the HTTP client
        self.hub.timers.close()
        await self.hub.logins.close()
        if self.hub.records is not None:
            await self.hub.records.close()  # every transcript line gathered is written
        if self.hub.hooks is not None:
            await self.hub.hooks.close()  # requests under way end; their deliveries are due again
        log.info(
            "server_stopped",
            sessions_said_goodbye=len(sessions),
            sessions_aborted=len(left),
            seconds=round(time.monotonic() - started, 3),
        )


def settle_collector() -> None:
    """Once the menu and the robot are loaded. Long-lived objects (the menu, the robot's index,
    imported modules) never become garbage: move them out of the collector's sight, and collect the
    young generation less often. Thousands of sessions each allocate a few short-lived lists per
    line; the default thresholds would walk every live session's objects many times a second."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def serve(settings: Settings) -> int:
    """`hotline serve`: load the menu, serve until a stop signal; 0 on a clean stop, 1 if the menu is bad."""
    factory, loop_name = loop_factory()
    if loop_name != "uvloop":
        log.warning("uvloop_unavailable", fallback="asyncio")
    signature = folder_signature(settings.config)
    result = load_config(settings.config, env_required=True)
    for problem in result.warnings:
        log.warning("menu_warning", problem=str(problem))
    if result.graph is None:
        log.error("menu_rejected", errors=[str(p) for p in result.errors])
        return 1
    try:
        server = Server(settings, result, signature)
    except (DatabaseError, SecretError) as exc:  # one line, naming the path; the file is left as it is
        print(f"hotline: {exc}", file=sys.stderr)
        return 1
    settle_collector()
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(server.run(loop_name))
    except OSError as exc:
        log.error("bind_failed", error=str(exc), host=settings.host)
        return 1
    return 0
