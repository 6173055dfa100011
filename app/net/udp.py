"""The UDP robot endpoint: one datagram in, one datagram out, to the sender; never a reflector.

How this works: the socket is non-blocking and registered with the loop's reader callback; on each
readiness it is drained (up to BATCH datagrams, for fairness with TCP callers) instead of one
datagram per loop iteration, and replies are sent straight away with `sendto`. Each datagram passes,
in order: size, the global rate, the sender's rate (both GCRA, see rates.py), UTF-8, then JSON if it
starts with `{`. Anything that fails is dropped and counted by reason (and logged
once per sender and reason), never answered with an error: answering garbage from a forged address
would make us a reflector. Replies never exceed MAX_REPLY bytes. Recent replies to identical
datagrams are cached.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import TYPE_CHECKING, Any, Final, Protocol

import structlog

from app.net.rates import Rate
from app.robot import Answer
from app.robot.loader import MAX_REPLY_BYTES

if TYPE_CHECKING:
    from app.menu.engine import Stats
    from app.robot import Matcher
    from app.settings import Settings

log = structlog.get_logger("hotline.robot")

BATCH: Final = 256
MAX_REPLY: Final = MAX_REPLY_BYTES
MAX_ID: Final = 128  # characters of a JSON request id we echo back
MAX_SOURCES: Final = 65536  # senders tracked by the per-source rate limit
CACHE_SIZE: Final = 4096


def truncate_utf8(data: bytes, limit: int) -> bytes:
    """At most `limit` bytes, cut on a character boundary."""
    if len(data) <= limit:
        return data
    return data[:limit].decode("utf-8", "ignore").encode("utf-8")


def json_reply(request_id: Any, answer: Answer) -> bytes:
    """The JSON reply, shortened (answer text first) until it fits one datagram."""
    body = {"id": request_id, "answer": answer.text, "intent": answer.intent, "confidence": answer.confidence}
    if answer.candidates:
        body["candidates"] = list(answer.candidates)
    data = json.dumps(body, ensure_ascii=False).encode()
    while len(data) > MAX_REPLY and body["answer"]:
        body["answer"] = body["answer"][: max(0, len(body["answer"]) - (len(data) - MAX_REPLY) // 3 - 1)]
        data = json.dumps(body, ensure_ascii=False).encode()
    return data


class RobotHub(Protocol):
    """What the robot endpoint uses of the server (app/server.py's Hub provides it)."""

    settings: Settings
    robot: Matcher  # the current one: a reload swaps it
    stats: Stats
    trace: bool

    def count_drop(self, host: str, reason: str) -> None: ...


class RobotEndpoint:
    """Owns the UDP socket; answers from the hub's current robot matcher."""

    def __init__(self, hub: RobotHub) -> None:
        self.hub = hub
        s = hub.settings
        self.max_datagram = s.udp_max_datagram
        self.source_rate = Rate(s.robot_rate, s.robot_burst)
        self.global_rate = Rate(s.robot_global_rate, s.robot_global_rate)
        self.global_due = 0.0
        self.sources: dict[str, float] = {}  # sender address -> when its next datagram is due
        # datagram -> [reply, intent, answers from the cache not yet counted in the metrics]
        self.cache: dict[bytes, list[Any]] = {}
        self.cache_robot: object = None
        self.sock: socket.socket | None = None
        self.port = 0
        self.trace = hub.trace

    def start(self, host: str, port: int) -> None:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
        family, _, _, _, addr = infos[0]
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.bind(addr)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self.port = sock.getsockname()[1]
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

    def close(self) -> None:
        if self.sock is not None:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None

    def _readable(self) -> None:
        # The hot path: locals only, one clock read per batch, rates inlined. A cached reply
        # to an identical datagram costs about what the blocking keyword loop spends per datagram.
        sock = self.sock
        if sock is None:
            return
        recvfrom = sock.recvfrom
        sendto = sock.sendto
        bufsize = self.max_datagram + 1
        max_datagram = self.max_datagram
        cache = self.cache
        if self.hub.robot is not self.cache_robot:  # a reload: cached replies are the old knowledge base's
            self.clear_cache()
            self.cache_robot = self.hub.robot
        sources = self.sources
        interval, tolerance = self.source_rate.interval, self.source_rate.tolerance
        now = time.monotonic()
        # The global rate, for the whole batch at once (one clock reading): how many it admits now.
        g = self.global_rate
        g_ahead = self.global_due - now if self.global_due > now else 0.0
        g_allowed = (
            int(min(BATCH, (g.tolerance - g_ahead) / g.interval + 1.0)) if g_ahead <= g.tolerance else 0
        )
        g_left = g_allowed
        try:
            for _ in range(BATCH):
                try:
                    data, addr = recvfrom(bufsize)
                except BlockingIOError:
                    return
                except OSError:  # e.g. an ICMP error about an earlier reply; the socket is still fine
                    continue
                host = addr[0]
                if len(data) > max_datagram:
                    self._drop(host, "oversized")
                    continue
                if not g_left:
                    self._drop(host, "rate_global")
                    continue
                g_left -= 1
                due = sources.get(host)
                if due is None:
                    due = self._new_source(now)
                elif due - now > tolerance:
                    self._drop(host, "rate_source")
                    continue
                sources[host] = (due if due > now else now) + interval
                cached = cache.get(data)
                reply: bytes | None
                if cached is not None:
                    reply = cached[0]
                    cached[2] += 1  # counted here, added to the metrics by fold_counts()
                else:
                    reply = self._reply(data, host, now)
                    if reply is None:
                        continue
                try:
                    sendto(reply, addr)
                except BlockingIOError:
                    self._drop(host, "send_buffer_full")
                except OSError:
                    self._drop(host, "send_failed")
        finally:
            if g_left < g_allowed:
                self.global_due = now + g_ahead + (g_allowed - g_left) * g.interval

    def _reply(self, data: bytes, host: str, now: float) -> bytes | None:
        """The reply to one datagram that passed the limits (None: drop it)."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return self._drop(host, "undecodable")
        if data[:1] == b"{":
            return self._json(text, host, now)
        if not text.strip():
            return self._drop(host, "empty")
        answer = self.hub.robot.answer(text)
        self.hub.stats.robot_query(answer.intent)
        if self.trace:
            self._log_answer(answer, now, host)
        reply = truncate_utf8(answer.text.encode() + b"\n", MAX_REPLY)
        if len(self.cache) >= CACHE_SIZE:
            self.clear_cache()
        self.cache[data] = [reply, answer.intent, 0]  # only plain questions: a JSON reply echoes its id
        return reply

    def _json(self, text: str, host: str, started: float) -> bytes | None:
        try:
            request = json.loads(text)
        except (ValueError, RecursionError):
            return self._drop(host, "malformed_json")
        if not isinstance(request, dict):
            return self._drop(host, "malformed_json")
        question = request.get("q")
        request_id = request.get("id")
        if not isinstance(question, str) or not question.strip():
            return self._drop(host, "missing_question")
        if not (request_id is None or isinstance(request_id, int | str)) or isinstance(request_id, bool):
            return self._drop(host, "bad_id")
        if isinstance(request_id, str) and len(request_id) > MAX_ID:
            return self._drop(host, "bad_id")
        if isinstance(request_id, int) and abs(request_id) > 2**63:
            return self._drop(host, "bad_id")
        answer = self.hub.robot.answer(question)
        self.hub.stats.robot_query(answer.intent)
        if self.trace:
            self._log_answer(answer, started, host)
        return json_reply(request_id, answer)

    def fold_counts(self) -> None:
        """Add the answers served from the cache to the robot's query counts (before /metrics reads them)."""
        stats = self.hub.stats
        for entry in self.cache.values():
            if entry[2]:
                key = entry[1] or "none"
                stats.robot_queries[key] = stats.robot_queries.get(key, 0) + entry[2]
                entry[2] = 0

    def clear_cache(self) -> None:
        self.fold_counts()
        self.cache.clear()

    def _new_source(self, now: float) -> float:
        """Make room for one more sender; its first datagram is due now."""
        sources = self.sources
        if len(sources) >= MAX_SOURCES:
            for key in [k for k, due in sources.items() if due <= now]:
                del sources[key]  # not ahead of the steady rate: forgetting them changes nothing
            if len(sources) >= MAX_SOURCES:
                sources.clear()
        return now

    def _drop(self, host: str, reason: str) -> bytes | None:
        """Count and log (once per sender and reason) a datagram we do not answer; no reply."""
        self.hub.count_drop(host, reason)
        return None

    def _log_answer(self, answer: Answer, started: float, host: str) -> None:
        log.debug(
            "robot_answered",
            intent=answer.intent,
            confidence=answer.confidence,
            latency_ms=round((time.monotonic() - started) * 1000, 3),
            peer=host,
        )
