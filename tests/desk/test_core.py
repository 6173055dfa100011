"""The desk's core without I/O: queue order, positions, offers, accept/reject/miss, wrap-up, limits."""

from __future__ import annotations

from typing import Any

import pytest

from app.desk.desk import Desk
from app.desk.events import CallerSaid, Ended, LoggedOut, Missed, Offer, Status
from app.desk.loader import DeskConfig, OpenHours, QueueConfig
from app.desk.model import DeskError
from app.desk.policy import DEFAULT_HANDLE, MISS_COOLDOWN
from app.desk.schema import AgentModel, Hours, QueueModel
from app.menu.events import AgentConnected, AgentLine, CallEnded, QueueBusy, QueueClosed, QueuePosition

T0 = 1_800_000_000.0


class Link:
    """Records what the desk tells one caller or agent."""

    def __init__(self, peer: str = "p", context: tuple[tuple[str, str], ...] = ()) -> None:
        self.events: list[Any] = []
        self.peer = peer
        self.context = context

    def handoff_context(self) -> tuple[tuple[str, str], ...]:
        return self.context

    def desk_event(self, event: Any) -> None:
        self.events.append(event)

    agent_event = desk_event

    def last(self, kind: type) -> Any:
        return next(e for e in reversed(self.events) if isinstance(e, kind))

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def desk(n_agents: int = 2, hours: Hours | None = None, **queue: Any) -> Desk:
    model = QueueModel(**queue)
    q = QueueConfig("default", model, OpenHours.of(hours) if hours else None)
    agents = {
        str(1000 + i): AgentModel(id=str(1000 + i), name=f"a{i}", password_hash="x", queues=["default"])
        for i in range(1, n_agents + 1)
    }
    return Desk(DeskConfig({"default": q}, agents))


def ready(d: Desk, agent_id: str, now: float = T0) -> tuple[Any, Link]:
    link = Link()
    agent = d.login(agent_id, link, now)
    d.set_status(agent, "available", now)
    return agent, link


def test_no_agent_logged_in_is_busy() -> None:
    d = desk()
    caller = Link()
    assert not d.join("default", "c1", caller, T0)
    assert caller.events == [QueueBusy("no_agents")]
    assert d.queues["default"].outcomes == {"busy": 1}


def test_closed_hours_and_closed_dates() -> None:
    hours = Hours(timezone="Asia/Shanghai", open={"mon-fri": "08:00-20:00"}, closed_dates=["2027-01-15"])
    d = desk(hours=hours)
    d.login("1001", Link(), T0)
    # 2027-01-14 is a Thursday; 2027-01-16 a Saturday
    import datetime as dt

    def at(day: int, hour: int) -> float:
        return dt.datetime(2027, 1, day, hour, tzinfo=dt.timezone(dt.timedelta(hours=8))).timestamp()

    for when, open_ in ((at(14, 9), True), (at(14, 21), False), (at(15, 9), False), (at(16, 9), False)):
        caller = Link()
        assert d.join("default", f"c{when}", caller, when) is open_
        assert isinstance(caller.events[0], QueuePosition if open_ else QueueClosed)


def test_first_come_first_served_with_positions_and_estimate() -> None:
    d = desk()
    d.login("1001", Link(), T0)  # on break: counts as logged in, takes no calls
    callers = [Link() for _ in range(3)]
    for i, c in enumerate(callers):
        assert d.join("default", f"c{i}", c, T0 + i)
    # one agent logged in, 3 minutes per call before any call: position n waits 3n minutes; that
    # agent is on break, and the callers hear so
    assert [c.events[0] for c in callers] == [
        QueuePosition(1, 1, 3, away=True),
        QueuePosition(2, 2, 6, away=True),
        QueuePosition(3, 3, 9, away=True),
    ]
    d.leave("c0", T0 + 5)  # abandons; the others move up at the next announcement
    d.tick(T0 + 30)
    assert callers[1].events[-1] == QueuePosition(1, 2, 3, away=True)
    assert callers[2].events[-1] == QueuePosition(2, 2, 6, away=True)
    n = len(callers[2].events)
    d.tick(T0 + 60)  # nothing changed: nothing said again
    assert len(callers[2].events) == n
    _agent, link = ready(d, "1002", T0 + 61)
    assert link.last(Offer).call_id == "c1"  # the head of the queue, not the caller who joined last


def test_offer_accept_chat_end_updates_the_handle_time() -> None:
    d = desk(wrap_up=10)
    agent, alink = ready(d, "1001")
    caller = Link("9.9.9.9:1", (("path", "main>agent"),))
    d.join("default", "c1", caller, T0)
    offer = alink.last(Offer)
    assert (offer.call_id, offer.peer, offer.context) == ("c1", "9.9.9.9:1", (("path", "main>agent"),))
    assert agent.state == "offered"
    d.accept(agent, T0 + 2)
    assert caller.last(AgentConnected) == AgentConnected("1001", "a1")
    d.caller_line("c1", "你好")
    assert alink.last(CallerSaid) == CallerSaid("c1", "你好")
    d.agent_line(agent, "您好")
    assert caller.last(AgentLine) == AgentLine("您好")
    d.end(agent, T0 + 62)
    assert caller.events[-1] == CallEnded("agent")
    assert agent.state == "wrap_up"
    assert d.queues["default"].handle_time == pytest.approx(DEFAULT_HANDLE * 0.75 + 60 * 0.25)
    caller2 = Link()
    d.join("default", "c2", caller2, T0 + 63)
    assert alink.of(Offer)[-1].call_id == "c1"  # in wrap-up: no offer yet
    d.tick(T0 + 72.5)
    assert agent.state == "offered" and alink.last(Offer).call_id == "c2"


def test_reject_keeps_the_place_and_never_offers_again_to_that_agent() -> None:
    d = desk()
    a1, l1 = ready(d, "1001")
    c1, c2 = Link(), Link()
    d.join("default", "c1", c1, T0)
    d.join("default", "c2", c2, T0 + 1)
    assert l1.last(Offer).call_id == "c1"
    d.reject(a1, T0 + 2)
    assert l1.last(Offer).call_id == "c2"  # c1 keeps its place, but not for this agent
    _a2, l2 = ready(d, "1002", T0 + 3)
    assert l2.last(Offer).call_id == "c1"
    places: list[int] = []
    d.position(d.calls["c1"], places.append)
    assert places == [1]


def test_missed_offers_go_to_another_agent_and_put_the_agent_on_break() -> None:
    d = desk(ring_timeout=15, max_missed=2)
    a1, l1 = ready(d, "1001")
    c1 = Link()
    d.join("default", "c1", c1, T0)
    d.tick(T0 + 15)
    assert l1.last(Missed) == Missed("c1", False)
    d.tick(T0 + 16)
    assert len(l1.of(Offer)) == 1  # not again to this agent within MISS_COOLDOWN
    d.tick(T0 + 15 + MISS_COOLDOWN)
    assert len(l1.of(Offer)) == 2  # no other agent: this one again
    d.tick(T0 + 35 + MISS_COOLDOWN)
    assert l1.last(Missed) == Missed("c1", True)
    assert a1.status == "on_break"
    _a2, l2 = ready(d, "1002", T0 + 41)
    assert l2.last(Offer).call_id == "c1"


def test_max_wait_max_waiting_and_hang_up_while_offered() -> None:
    d = desk(max_wait=60, max_waiting=1, ring_timeout=100)
    a1, l1 = ready(d, "1001")
    c1, c2 = Link(), Link()
    d.join("default", "c1", c1, T0)  # offered at once, still waiting
    assert not d.join("default", "c2", c2, T0 + 1)
    assert c2.events == [QueueBusy("full")]
    d.tick(T0 + 61)
    assert c1.events[-1] == QueueBusy("max_wait")
    assert l1.last(Ended) == Ended("c1", "server")
    assert a1.state == "idle" and not d.calls
    c3 = Link()
    d.join("default", "c3", c3, T0 + 62)
    d.leave("c3", T0 + 63)
    assert l1.last(Ended) == Ended("c3", "caller")
    assert d.queues["default"].outcomes == {"busy": 1, "timeout": 1, "abandoned": 1}


def test_agent_logout_mid_call_ends_it_for_the_caller_and_commands_need_a_state() -> None:
    d = desk()
    a1, _l1 = ready(d, "1001")
    with pytest.raises(DeskError):
        d.accept(a1, T0)
    with pytest.raises(DeskError):
        d.end(a1, T0)
    with pytest.raises(DeskError):
        d.agent_line(a1, "hi")
    with pytest.raises(DeskError):
        d.login("1001", Link(), T0)  # one connection per agent
    c1 = Link()
    d.join("default", "c1", c1, T0)
    d.accept(a1, T0 + 1)
    d.logout(a1, T0 + 5)
    assert c1.events[-1] == CallEnded("agent")
    assert not d.agents and not d.calls


def test_an_agent_removed_by_a_reload_finishes_the_call_then_is_logged_out() -> None:
    d = desk()
    a1, l1 = ready(d, "1001")
    c1 = Link()
    d.join("default", "c1", c1, T0)
    d.accept(a1, T0 + 1)
    d.configure(
        DeskConfig(d.config.queues, {k: v for k, v in d.config.agents.items() if k != "1001"}), T0 + 2
    )
    assert "1001" in d.agents  # still talking
    d.logout(a1, T0 + 3)  # the connection drops mid-call
    assert c1.events[-1] == CallEnded("agent")
    assert not d.agents and not d.calls
    assert isinstance(l1.events[-1], LoggedOut)


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("longest_idle", ["1003", "1001", "1002"]),
        ("fewest_calls", ["1003", "1001", "1002"]),
        ("round_robin", ["1001", "1002", "1003"]),
    ],
)
def test_strategies(strategy: str, expected: list[str]) -> None:
    d = desk(3, strategy=strategy, wrap_up=0)
    links = {}
    for i, aid in enumerate(("1003", "1001", "1002")):  # 1003 idle longest
        links[aid] = ready(d, aid, T0 + i)
    got = []
    for i in range(3):
        d.join("default", f"c{i}", Link(), T0 + 10 + i)
        agent = next(a for a in d.agents.values() if a.state == "offered")
        got.append(agent.id)
        d.accept(agent, T0 + 10 + i)
    assert got == expected


def test_without_wrap_up_the_next_caller_is_offered_at_once() -> None:
    d = desk(1, wrap_up=0)
    agent, link = ready(d, "1001")
    d.join("default", "c1", Link(), T0)
    d.join("default", "c2", Link(), T0)
    d.accept(agent, T0 + 1)
    d.end(agent, T0 + 2)
    assert agent.state == "offered" and link.last(Offer).call_id == "c2"  # no tick in between
    d.accept(agent, T0 + 3)
    d.leave("c2", T0 + 4)  # the caller hangs up: the agent is free again at once as well
    assert agent.state == "idle"


def test_the_agent_hears_every_change_of_status_and_state() -> None:
    """Status after each change, also those the agent did not ask for: an offer, the caller hanging
    up, wrap-up ending, a missed offer, the break max_missed brings."""
    d = desk(wrap_up=10, ring_timeout=15, max_missed=1)
    agent, link = ready(d, "1001")
    assert link.of(Status) == [Status("available", "idle")]
    d.join("default", "c1", Link(), T0)
    assert link.events[-2:] == [Status("available", "offered"), link.last(Offer)]
    d.accept(agent, T0 + 1)
    assert link.events[-1] == Status("available", "in_call")
    d.caller_line("c1", "你好")
    assert link.events[-1] == CallerSaid("c1", "你好")  # a chat line changes nothing: no status
    d.leave("c1", T0 + 5)  # the caller hangs up
    assert link.events[-2:] == [Ended("c1", "caller"), Status("available", "wrap_up")]
    d.tick(T0 + 14)
    assert link.events[-1] == Status("available", "wrap_up")  # not yet over
    d.tick(T0 + 15)
    assert link.events[-1] == Status("available", "idle")  # wrap-up ended, no command
    d.join("default", "c2", Link(), T0 + 16)
    d.tick(T0 + 31)
    assert link.events[-3:] == [Status("available", "idle"), Missed("c2", True), Status("on_break", "idle")]


def test_a_disposition_after_the_call_however_it_ended() -> None:
    logged: list[tuple[str, dict[str, Any]]] = []
    d = desk(wrap_up=10)
    d.log = lambda event, **fields: logged.append((event, fields))
    agent, _link = ready(d, "1001")
    with pytest.raises(DeskError, match="no call"):
        d.dispose(agent, "已解决", T0)
    d.join("default", "c1", Link(), T0)
    d.accept(agent, T0 + 1)
    with pytest.raises(DeskError, match="in a call"):
        d.dispose(agent, "已解决", T0 + 2)
    d.leave("c1", T0 + 3)  # the caller hung up: the agent may still give the call its disposition
    call = d.dispose(agent, "需回访", T0 + 4)
    assert (call.id, call.disposition) == ("c1", "需回访")
    d.dispose(agent, "已解决", T0 + 5)  # replaces it
    assert call.disposition == "已解决"
    d.tick(T0 + 20)  # after wrap-up, until the next call, still
    d.dispose(agent, "其他", T0 + 21)
    d.join("default", "c2", Link(), T0 + 22)
    d.accept(agent, T0 + 23)
    d.end(agent, T0 + 24, "转其他部门")  # /end DISPOSITION goes the same way
    assert [f["disposition"] for e, f in logged if e == "call_disposition"] == [
        "需回访",
        "已解决",
        "其他",
        "转其他部门",
    ]
    assert [f["call_id"] for e, f in logged if e == "call_disposition"] == ["c1", "c1", "c1", "c2"]
    assert d.calls == {} and agent.last_call is not None and agent.last_call.disposition == "转其他部门"


def test_a_caller_offered_at_once_hears_no_estimate() -> None:
    d = desk(ring_timeout=15)
    agent, _link = ready(d, "1001")
    c1 = Link()
    d.join("default", "c1", c1, T0)  # an agent is free: the offer rings at once
    assert c1.events == [QueuePosition(1, 1, 3, ringing=True)]
    d.tick(T0 + 10)
    assert len(c1.events) == 1  # not while it rings
    d.reject(agent, T0 + 11)
    d.tick(T0 + 30)  # waiting again: now the position and the estimate
    assert c1.events[-1] == QueuePosition(1, 1, 3, away=False)


def test_callers_hear_when_every_agent_is_on_break_and_when_one_is_back() -> None:
    d = desk(wrap_up=0)
    agent = d.login("1001", Link(), T0)
    d.login("1002", Link(), T0)
    c1, c2 = Link(), Link()
    d.join("default", "c1", c1, T0)
    assert c1.events == [QueuePosition(1, 1, 2, away=True)]
    second = d.agents["1002"]
    d.set_status(second, "available", T0 + 1)
    d.set_status(second, "on_break", T0 + 1)
    d.join("default", "c2", c2, T0 + 2)
    d.set_status(agent, "available", T0 + 3)
    d.reject(agent, T0 + 4)  # c1 not for this agent: c2 is offered to them
    d.tick(T0 + 40)
    assert c1.events[-1] == QueuePosition(1, 2, 2, away=False)  # one agent is back


def test_shutdown_completes_calls_by_the_server() -> None:
    logged: list[tuple[str, dict[str, Any]]] = []
    d = desk()
    d.log = lambda event, **fields: logged.append((event, fields))
    agent, link = ready(d, "1001")
    c1 = Link()
    d.join("default", "c1", c1, T0)
    d.accept(agent, T0 + 1)
    d.shutdown(T0 + 5)
    assert c1.events[-1] == CallEnded("server")
    assert Ended("c1", "server") in link.events
    assert [f["by"] for e, f in logged if e == "call_completed"] == ["server"]
    d.logout(agent, T0 + 6)  # the connection closes after: nothing more for the caller
    assert c1.events[-1] == CallEnded("server")
    assert [f["by"] for e, f in logged if e == "call_completed"] == ["server"]


def _shanghai(day: int, hour: int, minute: int = 0) -> float:
    import datetime as dt

    return dt.datetime(2027, 1, day, hour, minute, tzinfo=dt.timezone(dt.timedelta(hours=8))).timestamp()


@pytest.mark.parametrize("agent_ready", [True, False])
def test_a_callback_waits_for_open_hours_and_expires_counted_in_them(agent_ready: bool) -> None:
    """Booked at 19:58 on a Thursday (open 08:00-20:00): not offered while closed, offered when the
    queue opens on Friday; left unanswered, it expires after `expires` seconds of open hours (the
    night does not count)."""
    hours = Hours(timezone="Asia/Shanghai", open={"mon-fri": "08:00-20:00"})
    d = desk(n_agents=1, hours=hours)
    agent_link = Link()
    agent = d.login("1001", agent_link, _shanghai(14, 19, 57))  # on break: the caller waits
    caller = Link(context=(("path", "main>agent"),))
    assert d.join("default", "c1", caller, _shanghai(14, 19, 58))
    d.book_callback("c1", "13912345678", 150.0, _shanghai(14, 19, 58))
    assert d.calls["c1"].callback == "13912345678"
    for minute in (58, 59):
        d.tick(_shanghai(14, 19, minute))  # one minute of open hours counted
    if agent_ready:
        d.set_status(agent, "available", _shanghai(14, 20, 30))
    for when in (_shanghai(14, 20, 30), _shanghai(14, 23), _shanghai(15, 7, 59)):
        d.tick(when)  # closed: not offered, and the night does not count
        assert not agent_link.of(Offer) and "c1" in d.calls
    d.tick(_shanghai(15, 8, 0))  # open: a second minute
    if agent_ready:
        offer = agent_link.last(Offer)
        assert (offer.call_id, offer.peer, offer.context[0]) == (
            "c1",
            "callback",
            ("callback", "13912345678"),
        )
        return
    assert "c1" in d.calls  # 120 s of 150
    d.tick(_shanghai(15, 8, 1))
    assert "c1" not in d.calls and d.queues["default"].outcomes.get("timeout") == 1
    assert not caller.of(CallEnded)  # nobody is on the line to tell
