"""HTTP sources over real sockets: real backends on free ports, the real server, callers over TCP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import structlog
import yaml

from app.menu import load_menu
from app.menu.events import Lookup
from app.metrics import registry_for, render
from app.net.sources import Lookups
from app.server import Server, serve
from app.settings import Settings
from tests.backends import Backend
from tests.conftest import Caller, start_server, wait_until

TOKEN = "s3cret-token-0042"
KEY = "query-key-7731"
WAIT = "正在为您查询,请稍候。"
BUSY = "抱歉,系统繁忙,请稍后再查。"
MAIN = "查询请按 1"


def menu_text(backend: str, **source: Any) -> str:
    """A small menu whose balance lookup asks `backend`, with the source's keys overridden."""
    billing: dict[str, Any] = {
        "url": backend + "/api/accounts/{phone}?key=${TEST_BILLING_KEY}",
        "headers": {"Authorization": "Bearer ${TEST_BILLING_TOKEN}"},
        "timeout": "1.5s",
        "retries": 1,
        "result": "data.account",
        **source,
    }
    menu = {
        "version": 1,
        "start": "main",
        "sources": {"billing": billing},
        "nodes": {
            "main": {"type": "menu", "prompt": MAIN, "options": {"1": "ask"}},
            "ask": {"type": "input", "prompt": "请输入号码:", "save_as": "phone", "next": "find"},
            "find": {
                "type": "lookup",
                "source": "billing",
                "save_as": "account",
                "found": "balance",
                "missing": "none",
                "error": "busy",
                "wait_prompt": WAIT,
            },
            "balance": {
                "type": "message",
                "text": "{account.name},余额 {account.balance} 元。",
                "next": "main",
            },
            "none": {"type": "message", "text": "没有 {phone} 的账户。", "next": "main"},
            "busy": {"type": "message", "text": BUSY, "next": "main"},
        },
    }
    return yaml.safe_dump(menu, allow_unicode=True, sort_keys=False)


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_BILLING_TOKEN", TOKEN)
    monkeypatch.setenv("TEST_BILLING_KEY", KEY)


@pytest_asyncio.fixture
async def backend() -> AsyncIterator[Backend]:
    b = await Backend().start()
    yield b
    await b.close()


async def serving(tmp_path: Path, backend: Backend, **source: Any) -> Server:
    (tmp_path / "menu.yaml").write_text(menu_text(backend.url, **source), encoding="utf-8")
    return await start_server(tmp_path)


async def call(server: Server) -> Caller:
    caller = await Caller.dial(server.tcp_port)
    await caller.expect(MAIN)
    caller.send("1")
    await caller.expect("请输入号码:")
    return caller


async def test_found_and_missing_with_the_secret_sent_and_each_variable_url_encoded(
    tmp_path: Path, backend: Backend
) -> None:
    server = await serving(tmp_path, backend)
    try:
        c = await call(server)
        c.send("13800138000")
        await c.expect("张先生,余额 86.50 元。\r\n" + MAIN)
        c.send("1")
        await c.expect("请输入号码:")
        c.send("13900000000")  # the backend answers 404
        await c.expect("没有 13900000000 的账户。\r\n" + MAIN)
        c.send("1")
        await c.expect("请输入号码:")
        c.send("a/b c?&x=1")
        await c.expect("没有 a/b c?&x=1 的账户。")
        assert WAIT not in c.text  # answered within the second
        first, _, third = backend.requests
        assert first.method == "GET" and first.raw_path == f"/api/accounts/13800138000?key={KEY}"
        assert first.headers["Authorization"] == f"Bearer {TOKEN}"
        assert first.headers["User-Agent"].startswith("hotline/")
        assert third.raw_path == f"/api/accounts/a%2Fb%20c%3F%26x%3D1?key={KEY}"
        metrics = render(registry_for(server.hub)).decode()
        assert 'hotline_lookup_total{result="found",source="billing"} 1.0' in metrics
        assert 'hotline_lookup_total{result="missing",source="billing"} 2.0' in metrics
        assert 'hotline_lookup_seconds_count{source="billing"} 3.0' in metrics
    finally:
        c.close()
        await server.shutdown()


async def test_a_slow_backend_says_the_wait_prompt_then_the_error_way_and_holds_up_no_one_else(
    tmp_path: Path, backend: Backend
) -> None:
    backend.gate = asyncio.Event()  # never answers
    server = await serving(tmp_path, backend)
    try:
        slow = await call(server)
        slow.send("13800138000")
        started = time.monotonic()
        await slow.expect(WAIT, timeout=3)
        assert time.monotonic() - started >= 0.9  # said after a second without an answer
        other = await Caller.dial(server.tcp_port)  # meanwhile, another caller is answered at once
        await other.expect(MAIN)
        other.send("1")
        await other.expect("请输入号码:")
        assert BUSY not in slow.text  # the slow caller is still waiting
        await slow.expect(BUSY + "\r\n" + MAIN, timeout=3)  # the 1.5 s timeout: the error way
        assert slow.text.count(WAIT) == 1
        with structlog.testing.capture_logs() as logs:
            slow.send("1")
            await slow.expect("请输入号码:")
            slow.send("13800138000")
            await slow.expect(BUSY, timeout=4)
        # the second timeout in the same minute is counted, not logged again
        assert not [e for e in logs if e["event"] == "lookup_failed"]
        metrics = render(registry_for(server.hub)).decode()
        assert 'hotline_lookup_total{result="timeout",source="billing"} 2.0' in metrics
        other.close()
    finally:
        slow.close()
        await server.shutdown()


async def test_5xx_is_retried_for_get_and_a_post_is_not(tmp_path: Path, backend: Backend) -> None:
    backend.statuses = [503]
    server = await serving(tmp_path, backend)
    try:
        c = await call(server)
        c.send("13800138000")
        await c.expect("张先生,余额 86.50 元。")  # the second attempt answered
        assert len(backend.requests) == 2
        backend.statuses = [502, 500]  # the retry fails too: the error way
        c.send("1")
        c.send("13800138000")
        await c.expect(BUSY)
        assert len(backend.requests) == 4
    finally:
        c.close()
        await server.shutdown()
    backend.requests.clear()
    backend.statuses = [503]
    server = await serving(tmp_path, backend, method="POST", retries=0, body={"phone": "{phone}"})
    try:
        c = await call(server)
        c.send("13800138000")
        await c.expect(BUSY)
        [post] = backend.requests
        assert post.method == "POST" and post.body == b'{"phone": "13800138000"}'
        assert post.headers["Content-Type"] == "application/json"
    finally:
        c.close()
        await server.shutdown()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"<html>Service Unavailable</html>", "not_json"),
        (b'{"data": {"account": "' + b"x" * (300 * 1024) + b'"}}', "too_large"),
        (b'{"data": {"account": ["not", "an", "object"]}}', "not_object"),
    ],
)
async def test_an_answer_that_is_not_a_json_object_within_256_kib_is_an_error(
    tmp_path: Path, backend: Backend, raw: bytes, reason: str
) -> None:
    backend.raw = raw
    server = await serving(tmp_path, backend)
    try:
        with structlog.testing.capture_logs() as logs:
            c = await call(server)
            c.send("13800138000")
            await c.expect(BUSY + "\r\n" + MAIN)
        [failed] = [e for e in logs if e["event"] == "lookup_failed"]
        assert failed["reason"] == reason and failed["source"] == "billing" and failed["log_level"] == "info"
    finally:
        c.close()
        await server.shutdown()


async def test_secrets_and_query_strings_are_never_logged(tmp_path: Path, backend: Backend) -> None:
    backend.statuses = [500]
    server = await serving(tmp_path, backend, retries=0)
    try:
        with structlog.testing.capture_logs() as logs:
            c = await call(server)
            c.send("13800138000")
            await c.expect(BUSY)
            await server.shutdown()
    finally:
        c.close()
    [failed] = [e for e in logs if e["event"] == "lookup_failed"]
    assert failed["url"] == backend.url + "/api/accounts/{phone}"  # as written: no caller's number
    assert failed["status"] == 500 and failed["reason"] == "status_500" and failed["latency"] >= 0
    text = repr(logs)
    assert TOKEN not in text and KEY not in text and "Authorization" not in text and "13800138000" not in text


async def test_a_caller_who_hangs_up_cancels_their_lookup(tmp_path: Path, backend: Backend) -> None:
    backend.gate = asyncio.Event()
    server = await serving(tmp_path, backend, timeout="10s")
    try:
        c = await call(server)
        c.send("13800138000")
        assert await wait_until(lambda: len(backend.requests) == 1)
        assert server.hub.lookups.in_flight == 1
        c.close()
        assert await wait_until(lambda: backend.cancelled == 1)  # the backend saw the request go
        assert await wait_until(lambda: server.hub.lookups.in_flight == 0)
        assert await wait_until(lambda: not server.hub.sessions)
    finally:
        await server.shutdown()


async def test_the_cache_keeps_answers_but_never_errors(tmp_path: Path, backend: Backend) -> None:
    server = await serving(tmp_path, backend, cache="60s", retries=0)
    try:
        c = await call(server)
        for phone, said in [
            ("13800138000", "张先生"),
            ("13800138000", "张先生"),
            ("13900000000", "没有"),
        ] * 2:
            c.send(phone)
            await c.expect(said)
            c.send("1")
            await c.expect("请输入号码:")
        assert len(backend.requests) == 2  # one per number
        backend.statuses = [500, 500]
        for _ in range(2):
            c.send("13912345678")
            await c.expect(BUSY)
            c.send("1")
            await c.expect("请输入号码:")
        assert len(backend.requests) == 4  # errors were asked again
        c.send("13912345678")
        await c.expect("李女士")
    finally:
        c.close()
        await server.shutdown()


async def test_past_max_in_flight_a_lookup_fails_at_once(tmp_path: Path, backend: Backend) -> None:
    backend.gate = asyncio.Event()
    server = await serving(tmp_path, backend, max_in_flight=1, timeout="10s")
    try:
        first = await call(server)
        first.send("13800138000")
        assert await wait_until(lambda: len(backend.requests) == 1)
        second = await call(server)
        second.send("13912345678")
        await second.expect(BUSY, timeout=0.9)  # at once: before any wait prompt
        assert len(backend.requests) == 1
        backend.gate.set()
        await first.expect("张先生")
        second.send("1")
        second.send("13912345678")
        await second.expect("李女士")
    finally:
        first.close()
        second.close()
        await server.shutdown()


async def test_a_reload_keeps_lookups_under_way_on_the_old_source(tmp_path: Path, backend: Backend) -> None:
    backend.gate = asyncio.Event()
    other = await Backend(accounts={"13800138000": {"name": "新后端", "balance": "1.00"}}).start()
    server = await serving(tmp_path, backend, timeout="10s")
    try:
        before = await call(server)
        before.send("13800138000")
        assert await wait_until(lambda: len(backend.requests) == 1)
        (tmp_path / "menu.yaml").write_text(menu_text(other.url, timeout="10s"), encoding="utf-8")
        assert server.reload("test")
        after = await call(server)
        after.send("13800138000")
        await after.expect("新后端,余额 1.00 元。")
        backend.gate.set()
        await before.expect("张先生,余额 86.50 元。")  # from the backend it asked
        assert len(backend.requests) == 1 and len(other.requests) == 1
    finally:
        before.close()
        after.close()
        await server.shutdown()
        await other.close()


def source_of(text: str, tmp_path: Path) -> Lookup:
    (tmp_path / "menu.yaml").write_text(text, encoding="utf-8")
    graph = load_menu(tmp_path).graph
    assert graph is not None
    source = graph.sources["billing"]
    url, body, key = source.request(lambda ref: "13800138000")
    return Lookup(source, url, body, key, "find")


async def test_the_breaker_opens_after_failures_in_a_row_and_closes_after_a_good_trial(
    tmp_path: Path, backend: Backend
) -> None:
    lookup = source_of(
        menu_text(backend.url, retries=0, breaker={"failures": 2, "open_for": "30s"}), tmp_path
    )
    now = [1000.0]
    lookups = Lookups(clock=lambda: now[0])
    try:
        backend.statuses = [500, 500, 500]
        assert (await lookups.fetch(lookup)).reason == "status_500"
        assert (await lookups.fetch(lookup)).reason == "status_500"  # two in a row: open
        refused = await lookups.fetch(lookup)
        assert (refused.outcome, refused.reason) == ("error", "breaker") and len(backend.requests) == 2
        now[0] += 29.0
        assert (await lookups.fetch(lookup)).reason == "breaker"
        now[0] += 1.0  # open_for has passed: one trial goes through, and fails: open again
        assert (await lookups.fetch(lookup)).reason == "status_500"
        assert (await lookups.fetch(lookup)).reason == "breaker" and len(backend.requests) == 3
        now[0] += 30.0  # the next trial is answered: closed
        assert (await lookups.fetch(lookup)).outcome == "found"
        assert (await lookups.fetch(lookup)).outcome == "found" and len(backend.requests) == 5
        assert lookups.results[("billing", "breaker")] == 3
    finally:
        await lookups.close()


async def test_while_a_trial_is_under_way_other_lookups_are_refused(tmp_path: Path, backend: Backend) -> None:
    lookup = source_of(menu_text(backend.url, retries=0, breaker={"failures": 1, "open_for": "5s"}), tmp_path)
    now = [1000.0]
    lookups = Lookups(clock=lambda: now[0])
    try:
        backend.statuses = [503]
        assert (await lookups.fetch(lookup)).reason == "status_503"
        now[0] += 5.0
        backend.gate = asyncio.Event()
        trial = asyncio.ensure_future(lookups.fetch(lookup))
        assert await wait_until(lambda: len(backend.requests) == 2)
        assert (await lookups.fetch(lookup)).reason == "breaker"
        backend.gate.set()
        assert (await trial).outcome == "found"
        assert (await lookups.fetch(lookup)).outcome == "found"
    finally:
        await lookups.close()


def test_serve_refuses_to_start_without_a_secret_the_menu_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_BILLING_TOKEN")
    (tmp_path / "menu.yaml").write_text(menu_text("http://127.0.0.1:9"), encoding="utf-8")
    settings = Settings(
        config=tmp_path, data=tmp_path / "data", tcp_port=0, udp_port=0, admin_port=0, agent_port=0
    )
    with structlog.testing.capture_logs() as logs:
        assert serve(settings) == 1
    [rejected] = [e for e in logs if e["event"] == "menu_rejected"]
    assert rejected["errors"] == [
        f"{tmp_path}/menu.yaml:7:29: error: source 'billing' header Authorization uses "
        "${TEST_BILLING_TOKEN}, which is not set in the environment"
    ]
