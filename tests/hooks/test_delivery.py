"""The delivery worker against a real outbox (SQLite) and real HTTP receivers on free ports: retries
with the same id, 410, order per call, at most 8 at once, a slow receiver holding up only its own
webhook, giving up after the retry time, and `hotline hooks list|retry`."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest_asyncio
import structlog

from app.hooks.config import HooksConfig, Webhook
from app.net.hooks import Deliveries, Retry
from app.records import database as dbm
from app.records import outbox
from app.records.dialects import AnyDb
from tests.conftest import wait_until
from tests.helpers import REPO
from tests.hooks.receiver import Receiver, Request

SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()
FAST = Retry(first=0.02, most=0.1, give_up=3600.0)


def hook(name: str, receiver: Receiver, timeout: float = 2.0) -> Webhook:
    return Webhook(
        name, receiver.url + "/" + name, receiver.url, frozenset(outbox.EVENTS), b"s" * 32, timeout
    )


class Outbox:
    """A records database with events written as the recorder writes them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.db: AnyDb = dbm.connect(dbm.prepare_folder(folder), create=True)

    def add(self, webhooks: tuple[str, ...], call_id: str, n: int, event: str = "ticket.created") -> None:
        self.db.begin()
        outbox.add(self.db, webhooks, event, call_id, {"call": call_id, "n": n}, time.time())
        self.db.commit()

    def statuses(self) -> list[str]:
        return [r["status"] for r in outbox.list_deliveries(self.db, limit=10_000)]

    def rows(self) -> list[dict[str, Any]]:
        return outbox.list_deliveries(self.db, limit=10_000, with_body=True)[::-1]


@pytest_asyncio.fixture
async def box(tmp_path: Path) -> AsyncIterator[Outbox]:
    out = Outbox(tmp_path / "data")
    yield out
    out.db.close()


async def deliver(box: Outbox, hooks: list[Webhook], retry: Retry = FAST) -> Deliveries:
    deliveries = Deliveries(box.folder, HooksConfig(tuple(hooks)), retry)
    deliveries.start()
    return deliveries


def n_of(r: Request) -> tuple[str, int]:
    data = json.loads(r.body)["data"]
    return data["call"], data["n"]


async def test_a_500_is_retried_with_the_same_id_and_then_delivered(box: Outbox) -> None:
    answers = iter([500, 503, 200])
    receiver = Receiver(answer=lambda _: next(answers))
    box.add(("crm",), "call-a", 1)
    deliveries = await deliver(box, [hook("crm", receiver)])
    try:
        assert await wait_until(lambda: box.statuses() == ["delivered"])
        ids = {r.id for r in receiver.requests}
        assert len(receiver.requests) == 3 and len(ids) == 1 and ids.pop().startswith("msg_")
        for r in receiver.requests:  # every attempt signed anew, checked by the receivers' library
            assert r.verified(SECRET)["data"] == {"call": "call-a", "n": 1}
        [row] = box.rows()
        assert (row["attempts"], row["last_status"], row["last_error"]) == (3, 200, None)
        assert deliveries.results == {("crm", "retried"): 2, ("crm", "delivered"): 1}
    finally:
        await deliveries.close()
        receiver.close()


async def test_410_fails_the_delivery_at_once(box: Outbox) -> None:
    receiver = Receiver(answer=lambda r: 410 if n_of(r)[1] == 1 else 200)
    box.add(("crm",), "call-a", 1)
    box.add(("crm",), "call-a", 2)  # after the first of its call: sent once that one is settled
    deliveries = await deliver(box, [hook("crm", receiver)])
    try:
        assert await wait_until(lambda: box.statuses() == ["delivered", "failed"])
        assert [n_of(r) for r in receiver.requests] == [("call-a", 1), ("call-a", 2)]
        assert box.rows()[0]["last_status"] == 410
    finally:
        await deliveries.close()
        receiver.close()


async def test_a_redirect_is_not_followed_but_retried(box: Outbox) -> None:
    elsewhere = Receiver()
    answers = iter([307, 200])
    receiver = Receiver(answer=lambda _: next(answers))
    receiver.location = elsewhere.url
    box.add(("crm",), "call-a", 1)
    deliveries = await deliver(box, [hook("crm", receiver)])
    try:
        assert await wait_until(lambda: box.statuses() == ["delivered"])
        assert len(receiver.requests) == 2 and elsewhere.requests == []
    finally:
        await deliveries.close()
        receiver.close()
        elsewhere.close()


async def test_a_calls_events_go_in_order_and_other_calls_do_not_wait(box: Outbox) -> None:
    failures = {"n": 0}
    lock = threading.Lock()

    def answer(r: Request) -> int:
        if n_of(r) == ("x", 1):
            with lock:
                failures["n"] += 1
                if failures["n"] <= 3:
                    return 500
        return 200

    receiver = Receiver(answer=answer)
    box.add(("crm",), "x", 1)
    box.add(("crm",), "x", 2)
    box.add(("crm",), "y", 1)
    box.add(("crm",), "x", 3)
    deliveries = await deliver(box, [hook("crm", receiver)])
    try:
        assert await wait_until(lambda: box.statuses() == ["delivered"] * 4)
        sent = [n_of(r) for r in receiver.requests]
        assert sent[-2:] == [("x", 2), ("x", 3)]  # each after the one before it was delivered
        assert sent.count(("x", 1)) == 4 and sent.index(("y", 1)) < 3  # y went while x was failing
    finally:
        await deliveries.close()
        receiver.close()


async def test_at_most_8_at_once_and_a_slow_receiver_holds_up_only_its_own(box: Outbox) -> None:
    release = threading.Event()
    slow = Receiver(answer=lambda _: 200 if release.wait(10) else 500)
    fast = Receiver()
    for i in range(20):
        box.add(("slow", "fast"), f"call-{i}", i)
    deliveries = await deliver(box, [hook("slow", slow, timeout=15), hook("fast", fast)])
    try:
        assert await wait_until(lambda: len(fast.requests) == 20 and slow.active == 8)
        assert len(slow.requests) == 8  # the others wait for a free slot
        release.set()
        assert await wait_until(lambda: box.statuses() == ["delivered"] * 40)
        assert slow.most_active == 8 and len(slow.requests) == 20
    finally:
        release.set()
        await deliveries.close()
        slow.close()
        fast.close()


async def test_a_delivery_is_failed_after_the_retry_time_and_logged_once(box: Outbox) -> None:
    receiver = Receiver(answer=lambda _: 503)
    box.add(("crm",), "call-a", 1)
    box.add(("crm",), "call-b", 1)
    with structlog.testing.capture_logs() as logs:
        deliveries = await deliver(box, [hook("crm", receiver)], Retry(0.02, 0.05, give_up=0.3))
        try:
            assert await wait_until(lambda: box.statuses() == ["failed", "failed"])
        finally:
            await deliveries.close()
    failed = [e for e in logs if e["event"] == "webhook_failed"]
    assert len(failed) == 1, failed  # once per webhook a minute
    assert failed[0]["webhook"] == "crm" and failed[0]["status"] == 503 and "secret" not in str(failed[0])
    assert deliveries.results[("crm", "failed")] == 2 and deliveries.results[("crm", "retried")] >= 4

    # the operator's view, and a retry once the receiver is back
    hotline = _cli(box.folder)
    listed = hotline("list", "--status", "failed", "--json")
    assert [(d["webhook"], d["status"], d["last_status"]) for d in listed] == [("crm", "failed", 503)] * 2
    assert listed[0]["body"]["data"] == {"call": "call-b", "n": 1}
    table = hotline("list", raw=True)
    assert "failed" in table.splitlines()[1] and "503" in table.splitlines()[1]
    receiver.answer = lambda _: 200
    assert hotline("retry", str(listed[0]["id"]), raw=True) == "1 delivery to send again\n"
    deliveries = await deliver(box, [hook("crm", receiver)])
    try:
        assert await wait_until(lambda: sorted(box.statuses()) == ["delivered", "failed"])
        assert hotline("retry", "--failed", raw=True) == "1 delivery to send again\n"
        assert await wait_until(lambda: box.statuses() == ["delivered", "delivered"])
        assert [d["status"] for d in hotline("list", "--status", "delivered", "--json")] == ["delivered"] * 2
    finally:
        await deliveries.close()
        receiver.close()


async def test_a_restart_resumes_what_a_killed_server_was_sending(box: Outbox) -> None:
    """kill -9 during a request leaves its row leased; on SQLite the one server that could hold the
    lease is the one starting: it sends the row at once (PostgreSQL waits for the lease to lapse)."""
    receiver = Receiver()
    box.add(("crm",), "call-a", 1)
    box.db.execute("UPDATE webhook_deliveries SET lease_until = ?", (time.time() + 3600,))
    deliveries = await deliver(box, [hook("crm", receiver)])
    try:
        assert await wait_until(lambda: box.statuses() == ["delivered"])
        assert len(receiver.requests) == 1
    finally:
        await deliveries.close()
        receiver.close()


def _cli(folder: Path) -> Callable[..., Any]:
    def run(*args: str, raw: bool = False) -> Any:
        out = subprocess.run(
            [sys.executable, "-m", "app", "hooks", *args, "--data", str(folder)],
            capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        return out.stdout if raw else json.loads(out.stdout)

    return run


def test_retries_double_from_the_first_to_the_most() -> None:
    retry = Retry(first=1.0, most=600.0)
    assert [retry.after(n) for n in (1, 2, 3, 10, 11, 100)] == [1.0, 2.0, 4.0, 512.0, 600.0, 600.0]


async def test_the_receiver_of_the_docs_takes_a_signed_delivery_and_refuses_a_forged_one(box: Outbox) -> None:
    import socket

    from tests.servers import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "scripts/webhook_receiver.py", str(port)],
        cwd=REPO, env={"WEBHOOK_SECRET": SECRET, "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            except OSError:
                return False
            return True

        assert await wait_until(listening)
        url = f"http://127.0.0.1:{port}/"
        good = Webhook("good", url, url, frozenset(outbox.EVENTS), b"s" * 32, 2.0)
        forged = Webhook("forged", url, url, frozenset(outbox.EVENTS), b"f" * 32, 2.0)
        box.add(("good", "forged"), "call-a", 1)
        deliveries = await deliver(box, [good, forged])
        try:

            def settled() -> bool:
                rows = {r["webhook"]: r for r in box.rows()}
                return rows["good"]["status"] == "delivered" and rows["forged"]["last_status"] == 400

            assert await wait_until(settled)
        finally:
            await deliveries.close()
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    event_id = box.rows()[0]["event_id"]
    assert out.splitlines() == [f"{event_id} ticket.created "]


def test_delivered_deliveries_go_with_the_transcripts_and_failed_ones_stay(box: Outbox) -> None:
    for call in ("old", "failed", "new"):
        box.add(("crm",), call, 1)
    now = time.time()
    outbox.settle(box.db, [outbox.Outcome(1, outbox.DELIVERED, now, 200, None)], now - 100)
    outbox.settle(box.db, [outbox.Outcome(2, outbox.FAILED, now, 503, "status 503")], now - 100)
    outbox.settle(box.db, [outbox.Outcome(3, outbox.DELIVERED, now, 200, None)], now)
    assert outbox.purge(box.db, now - 50) == 1
    assert [(r["call_id"], r["status"]) for r in box.rows()] == [("failed", "failed"), ("new", "delivered")]
