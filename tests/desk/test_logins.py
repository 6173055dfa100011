"""The login gate both doors share, with its counts in this process and in a real Redis: the same
contract for both (parallel guesses get at most five checks, one check in flight per address, a
bounded queue, limited successes, the window), and the Redis counts shared by replicas."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import pytest_asyncio

from app.desk import logins
from app.desk.logins import Counts, LocalCounts, LoginGate, RedisCounts, Verdict
from app.desk.passwords import hash_password
from tests.servers import RedisServer, free_port

PASSWORD = "right-password-1"


@pytest.fixture(scope="module")
def stored() -> str:
    return hash_password(PASSWORD)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every password the gate really checked (the real scrypt check, counted)."""
    done: list[str] = []
    real = logins.verify_password

    def counted(password: str, stored: str) -> bool:
        done.append(password)
        return real(password, stored)

    monkeypatch.setattr(logins, "verify_password", counted)
    return done


@pytest_asyncio.fixture(params=["local", "redis"])
async def make_gate(
    request: pytest.FixtureRequest,
) -> AsyncIterator[Callable[..., LoginGate]]:
    """Gates over the kind of counts under test (Redis ones share one Redis, as replicas do)."""
    gates: list[LoginGate] = []
    if request.param == "redis":
        redis: RedisServer = request.getfixturevalue("redis_server")
        redis.flush()

    def make(max_waiting: int = logins.MAX_WAITING) -> LoginGate:
        counts: Counts = RedisCounts(redis.url) if request.param == "redis" else LocalCounts()
        gate = LoginGate(counts, max_waiting=max_waiting)
        gates.append(gate)
        return gate

    yield make
    for gate in gates:
        await gate.close()


async def test_parallel_guesses_get_no_more_than_five_checks(
    make_gate: Callable[..., LoginGate], stored: str, checks: list[str]
) -> None:
    gate = make_gate()
    verdicts: list[Verdict] = []
    for _ in range(10):  # waves of 100 guesses at once from one address
        verdicts += await asyncio.gather(
            *(gate.attempt("10.0.0.1", stored, f"guess{i}", "test") for i in range(100))
        )
    assert len(checks) == 5
    assert verdicts.count(Verdict.FAILED) == 4 and Verdict.LOCKED in verdicts
    assert set(verdicts) <= {Verdict.FAILED, Verdict.LOCKED, Verdict.BUSY}
    assert await gate.attempt("10.0.0.1", stored, PASSWORD, "test") is Verdict.LOCKED  # even the right one
    assert len(checks) == 5
    assert await gate.attempt("10.0.0.2", stored, PASSWORD, "test") is Verdict.OK  # another address
    assert gate.failed_total == 5


async def test_one_check_in_flight_per_address_and_a_bounded_queue(
    make_gate: Callable[..., LoginGate], stored: str, checks: list[str]
) -> None:
    gate = make_gate(max_waiting=3)
    same = await asyncio.gather(*(gate.attempt("10.0.1.1", stored, PASSWORD, "test") for _ in range(2)))
    assert sorted(same) == [Verdict.BUSY, Verdict.OK]  # the second waits for nobody: busy, not a failure
    spread = await asyncio.gather(*(gate.attempt(f"10.0.2.{i}", stored, PASSWORD, "test") for i in range(10)))
    assert spread.count(Verdict.OK) == 3 and spread.count(Verdict.BUSY) == 7
    assert len(checks) == 4 and gate.failed_total == 0
    assert gate.refused[Verdict.BUSY] == 8


async def test_an_unknown_id_fails_after_a_check_like_a_wrong_password(
    make_gate: Callable[..., LoginGate], checks: list[str]
) -> None:
    gate = make_gate()
    assert await gate.attempt("10.0.3.1", None, PASSWORD, "test") is Verdict.FAILED
    assert checks == [PASSWORD]  # checked against a dummy hash: the same time as a real one


async def test_successful_logins_are_limited_and_the_window_passes(
    make_gate: Callable[..., LoginGate], stored: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logins, "MAX_SUCCESSES", 3)
    monkeypatch.setattr(logins, "WINDOW", 1.0)
    gate = make_gate()
    for _ in range(3):
        assert await gate.attempt("10.0.4.1", stored, PASSWORD, "test") is Verdict.OK
    assert await gate.attempt("10.0.4.1", stored, PASSWORD, "test") is Verdict.THROTTLED
    for _ in range(5):
        await gate.attempt("10.0.4.2", stored, "wrong", "test")
    assert await gate.attempt("10.0.4.2", stored, PASSWORD, "test") is Verdict.LOCKED

    # once the window has passed (polled, with a timeout) both addresses may log in again
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while await gate.attempt("10.0.4.2", stored, PASSWORD, "test") is not Verdict.OK:
        assert loop.time() < deadline, "still locked out after the window"
        await asyncio.sleep(0.1)
    assert await gate.attempt("10.0.4.1", stored, PASSWORD, "test") is Verdict.OK


async def test_replicas_share_the_counts_through_redis(redis_server: RedisServer, stored: str) -> None:
    redis_server.flush()
    a, b = LoginGate(RedisCounts(redis_server.url)), LoginGate(RedisCounts(redis_server.url))
    try:
        for gate in (a, a, a, b):
            assert await gate.attempt("10.0.5.1", stored, "wrong", "test") is Verdict.FAILED
        assert await b.attempt("10.0.5.1", stored, "wrong", "test") is Verdict.LOCKED  # the 5th, on b
        assert await a.attempt("10.0.5.1", stored, PASSWORD, "test") is Verdict.LOCKED
        # one check in flight per address across replicas
        both = await asyncio.gather(
            a.attempt("10.0.5.2", stored, PASSWORD, "test"), b.attempt("10.0.5.2", stored, PASSWORD, "test")
        )
        assert sorted(both) == [Verdict.BUSY, Verdict.OK]
    finally:
        await a.close()
        await b.close()


async def test_without_redis_a_replica_counts_alone(stored: str) -> None:
    gate = LoginGate(RedisCounts(f"redis://127.0.0.1:{free_port()}/0"))  # nobody listens there
    try:
        for _ in range(4):
            assert await gate.attempt("10.0.6.1", stored, "wrong", "test") is Verdict.FAILED
        assert await gate.attempt("10.0.6.1", stored, "wrong", "test") is Verdict.LOCKED
        assert await gate.attempt("10.0.6.1", stored, PASSWORD, "test") is Verdict.LOCKED
        assert gate.counts.down  # type: ignore[attr-defined]
    finally:
        await gate.close()
