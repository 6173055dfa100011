"""The engine, walked with a fake clock: every node type, key, counter and timeout path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.authoring.conversations import answer_offline
from app.menu import Hangup, Notice, Say, Transfer, load_menu
from app.menu.engine import LOOP_LIMIT, ROOT, TRAILS_KEPT, Session, Trail, fold, normalize
from app.menu.events import SaveTicket
from app.menu.graph import Graph
from app.menu.nodes import MenuNode, MessageNode, Text
from app.menu.templates import parse
from tests.helpers import CONFIG, Walk, graph_of, hung_up, said, write_menu

MENU = """
version: 1
name: t
start: main
settings:
  timeout: 10s
  max_timeouts: 3
  max_failures: 3
  invalid: 错误。
  goodbye: 再见。
keys:
  "*": back
  "#": top
  "?": repeat
  exit: hangup
  z: zero
nodes:
  main:
    type: menu
    prompt: 主菜单 1 2 3 4 5
    short_prompt: 请选 1-5
    options:
      "1": sub
      "2": ask
      "3": agent
      "4": info
      "5": end
    patterns:
      - match: '^1(\\d{3})$'
        go: code
        save: {code: 1}
      - match: '^(?P<who>[a-z]+)!$'
        go: greet
        save: {who: who}
  sub:
    type: menu
    prompt: 子菜单 1
    options: {"1": subsub}
  subsub:
    type: menu
    prompt: 孙菜单 1
    options: {"1": ask}
  ask:
    type: input
    prompt: 请输入号码
    save_as: phone
    pattern: '^1\\d{10}$'
    invalid: 号码错误。
    max_failures: 2
    next: find
  find:
    type: lookup
    table: accounts
    key: "{phone}"
    save_as: acct
    found: show
    missing: none
  show:
    type: message
    text: "{acct.name} 余额 {acct.balance} {acct.nofield}"
    next: main
  none:
    type: message
    text: 没有 {phone}
    next: main
  code:
    type: message
    text: 代码 1{code}
    next: main
  greet:
    type: message
    text: 你好 {who} {session.id} {caller.address} {now.date}
    next: main
  info:
    type: message
    text: 信息
  agent:
    type: transfer
    prompt: 转接中
    busy: 坐席忙
    next: main
  end:
    type: hangup
    text: 拜拜
  zero:
    type: menu
    prompt: 零菜单
    disable_keys: ["*"]
    options: {"*": main}
data:
  accounts:
    "13800138000": {name: 张三, balance: "10.50"}
"""


@pytest.fixture
def walk(tmp_path: Path) -> Walk:
    return Walk(graph_of(tmp_path, MENU))


def test_start_says_the_prompt_and_waits(walk: Walk) -> None:
    assert said(walk.events) == "主菜单 1 2 3 4 5"
    assert walk.node == "main"
    assert walk.session.deadline == walk.now + 10


def test_option_enters_submenu_and_back_returns_one_level(walk: Walk) -> None:
    assert said(walk("1")) == "子菜单 1"
    assert said(walk("1")) == "孙菜单 1"
    assert said(walk("*")) == "子菜单 1"
    assert said(walk("*")) == "主菜单 1 2 3 4 5"
    assert said(walk("*")) == "主菜单 1 2 3 4 5"  # back at start repeats start
    assert walk.node == "main"


def test_back_from_input_goes_to_the_menu_before_it(walk: Walk) -> None:
    walk("1")
    walk("1")
    assert said(walk("1")) == "请输入号码"
    assert said(walk("*")) == "孙菜单 1"


def test_top_and_repeat(walk: Walk) -> None:
    walk("1")
    walk("1")
    assert said(walk("?")) == "孙菜单 1"
    assert said(walk("#")) == "主菜单 1 2 3 4 5"
    assert said(walk("*")) == "主菜单 1 2 3 4 5"


def test_global_key_to_a_node_and_disable_keys(walk: Walk) -> None:
    assert said(walk("z")) == "零菜单"
    # '*' is disabled here, so the node's own option "*" applies instead of back
    assert said(walk("*")) == "主菜单 1 2 3 4 5"


def test_hangup_key_is_case_insensitive_and_says_goodbye(walk: Walk) -> None:
    events = walk("EXIT")
    assert said(events) == "再见。"
    assert hung_up(events) == "caller"
    assert walk.session.ended and walk.session.deadline is None
    assert walk("1") == []


def test_full_width_digits_are_folded(walk: Walk) -> None:
    assert said(walk("  １ ")) == "子菜单 1"
    assert normalize("\u3000１２３\u3000") == "123"


def test_input_lookup_found_renders_record_fields(walk: Walk) -> None:
    walk("2")
    events = walk("13800138000")
    assert said(events).splitlines()[0] == "张三 余额 10.50 "
    warnings = [e for e in events if isinstance(e, Notice)]
    assert warnings and warnings[0].event == "template_field_missing"
    assert walk.node == "main"


def test_input_lookup_missing(walk: Walk) -> None:
    walk("2")
    assert said(walk("13900000000")).splitlines()[0] == "没有 13900000000"


def test_invalid_input_then_max_failures_hangs_up_without_target(walk: Walk) -> None:
    walk("2")
    assert said(walk("12")) == "号码错误。\n请输入号码"
    events = walk("abc")
    assert said(events) == "号码错误。\n再见。"
    assert hung_up(events) == "failures"


def test_valid_input_resets_failures(walk: Walk) -> None:
    for _ in range(5):
        assert said(walk("x")) == "错误。\n请选 1-5"
        walk("?")  # a valid key resets the counter
    assert walk.session.failures == 0


def test_max_failures_goes_to_on_max_failures(tmp_path: Path) -> None:
    text = MENU.replace("  goodbye: 再见。", "  goodbye: 再见。\n  on_max_failures: agent")
    walk = Walk(graph_of(tmp_path, text))
    walk("x")
    walk("x")
    events = walk("x")
    assert said(events) == "错误。\n转接中\n坐席忙\n主菜单 1 2 3 4 5"
    assert any(isinstance(e, Transfer) for e in events)


def test_pattern_captures_numbered_and_named(walk: Walk) -> None:
    assert said(walk("1234")).startswith("代码 1234")
    events = walk("bob!")
    first = said(events).splitlines()[0]
    assert first.startswith("你好 bob test 127.0.0.1 20")


def test_options_win_over_patterns(tmp_path: Path) -> None:
    text = MENU.replace('"1": sub\n      "2": ask', '"1001": sub\n      "1": sub\n      "2": ask')
    walk = Walk(graph_of(tmp_path, text))
    assert said(walk("1001")) == "子菜单 1"


def test_message_without_next_hangs_up_after_text(walk: Walk) -> None:
    events = walk("4")
    assert said(events) == "信息"
    assert hung_up(events) == "completed"


def test_hangup_node(walk: Walk) -> None:
    events = walk("5")
    assert said(events) == "拜拜"
    assert hung_up(events) == "completed"


def test_transfer_with_no_agent_logged_in_reports_busy_and_returns(walk: Walk) -> None:
    events = walk("3")
    assert said(events) == "转接中\n坐席忙\n主菜单 1 2 3 4 5"
    assert [e.queue for e in events if isinstance(e, Transfer)] == ["default"]


def test_timeouts_reprompt_then_hang_up(walk: Walk) -> None:
    assert walk.wait(9.9) == []  # not yet
    assert said(walk.wait(0.1)) == "请选 1-5"
    assert said(walk.wait(10)) == "请选 1-5"
    events = walk.wait(10)
    assert said(events) == "再见。"
    assert hung_up(events) == "timeout"


def test_input_resets_timeouts(walk: Walk) -> None:
    walk.wait(10)
    walk.wait(10)
    walk("?")
    assert walk.session.timeouts == 0
    assert hung_up(walk.wait(10)) is None


def test_empty_line_reprompts_without_counting(walk: Walk) -> None:
    assert said(walk("   ")) == "请选 1-5"
    assert walk.session.failures == 0


def test_external_hangup_says_goodbye(walk: Walk) -> None:
    events = walk.session.hangup("shutdown", walk.now)
    assert said(events) == "再见。"
    assert hung_up(events) == "shutdown"
    assert walk.session.hangup("shutdown", walk.now) == []


def test_message_loop_is_bounded(tmp_path: Path) -> None:
    """The loader refuses such a loop; a graph built by hand shows the engine bounds it anyway."""
    text = """
    version: 1
    start: a
    nodes:
      a: {type: message, text: A, next: b}
      b: {type: message, text: B, next: a}
    """
    result = load_menu(write_menu(tmp_path, text))
    assert [p.message for p in result.errors] == [
        "nodes a -> b -> a form a loop that never waits for input; a caller who gets there is cut off"
    ]
    a, b = (MessageNode(n, Text.of(parse(n.upper())), nxt) for n, nxt in (("a", "b"), ("b", "a")))
    goodbye = Text.of(parse("再见"))
    walk = Walk(
        Graph(name="loop", start="a", nodes={"a": a, "b": b}, tables={}, goodbye=goodbye, error=goodbye)
    )
    assert hung_up(walk.events) == "loop"
    notices = [e for e in walk.events if isinstance(e, Notice)]
    assert notices[0].event == "loop_limit" and notices[0].level == "error"
    assert said(walk.events).count("A") == LOOP_LIMIT // 2


def test_trace_reports_nodes_and_invalid_input(tmp_path: Path) -> None:
    walk = Walk(graph_of(tmp_path, MENU), trace=True)
    assert [e.fields["node"] for e in walk.events if isinstance(e, Notice)] == ["main"]
    assert [e.event for e in walk("nope") if isinstance(e, Notice)] == ["input_invalid"]


def test_untraced_session_emits_no_notices(walk: Walk) -> None:
    for line in ["1", "1", "x", "*", "#"]:
        assert not any(isinstance(e, Notice) for e in walk(line))


def test_shipped_menu_walks_every_branch() -> None:
    result = load_menu(CONFIG)
    assert result.graph is not None and not result.problems
    walk = Walk(result.graph)
    assert "欢迎致电中国移动 10086" in said(walk.events)
    walk("1")
    assert "张先生" in said(walk("13800138000"))
    walk("3")
    walk("1")
    assert "5G 智享 198 元套餐" in said(walk("2"))
    assert "套餐办理" in said(walk("*"))
    assert said(walk("*")).startswith("欢迎致电")
    assert "业务代码是 1001" in said(walk("1001"))
    assert "坐席均忙" in said(walk("0"))
    events = walk("quit")
    assert hung_up(events) == "completed" and "再见" in said(events)


KEYS = ["1", "2", "3", "8", "0", "9", "*", "#", "?", "exit", "", "1001", "13800138000", "１", "x" * 50]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(KEYS), st.text(max_size=30), st.floats(0, 100)), max_size=40))
def test_any_sequence_against_the_shipped_menu_ends_in_a_defined_state(steps: list[object]) -> None:
    result = load_menu(CONFIG)
    assert result.graph is not None
    walk = Walk(result.graph)
    for step in steps:
        events = walk.wait(step) if isinstance(step, float) else walk(str(step))
        assert all(isinstance(e, Say | Hangup | Transfer | SaveTicket | Notice) for e in events)
        s = walk.session
        if s.ended:
            assert s.node is None and s.deadline is None and s.end_reason
            break
        assert s.node is not None and s.node.name in result.graph.nodes
        assert s.deadline is not None and s.deadline > walk.now - 0.001
        assert len(s.trail.names()) <= len(result.graph.nodes)


def test_trails_are_shared_and_returning_to_a_menu_drops_what_came_after() -> None:
    main = ROOT.arrive("main")
    deep = main.arrive("sub").arrive("subsub")
    assert deep.names() == ["main", "sub", "subsub"]
    assert deep.arrive("subsub") is deep  # staying at a menu keeps the trail
    assert deep.arrive("main") is main  # back on the trail: what came after is dropped
    assert ROOT.arrive("main").arrive("sub").arrive("subsub") is deep  # every session shares them


def test_trails_past_the_bound_are_made_fresh_and_still_right(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Trail, "kept", TRAILS_KEPT)  # as if callers had walked TRAILS_KEPT trails
    start = ROOT.arrive("never-seen")
    again = ROOT.arrive("never-seen")
    assert start is not again and start.names() == again.names() == ["never-seen"]
    assert "never-seen" not in ROOT.after
    assert start.arrive("x").arrive("never-seen") is start


def test_options_typed_in_any_form_or_to_prompts_with_variables_take_one_step(tmp_path: Path) -> None:
    graph = graph_of(
        tmp_path,
        """
        version: 1
        start: main
        nodes:
          main:
            type: menu
            prompt: 主菜单
            options: {"a": you, "b": plain}
          you:
            type: menu
            prompt: 您的号码 {caller.address}
            options: {"1": main}
          plain:
            type: menu
            prompt: 普通
            options: {"1": main}
        """,
    )
    main = graph.table["main"]
    assert isinstance(main, MenuNode)
    # every option is a step, whatever its target says; ｂ is b as a Chinese IME types it
    assert {"a", "ａ", "b", "ｂ"} <= set(main.wait.steps)
    walk = Walk(graph)
    say = walk.session.press("A", walk.now)  # upper case: looked up folded
    assert say is not None and say.fresh and say.text == "您的号码 127.0.0.1"
    assert said(walk("1")) == "主菜单"
    assert walk.session.press(" Ｂ ", walk.now) is None  # padded full width: the full path folds it
    assert said(walk(" Ｂ ")) == "普通"
    assert walk.session.trail.names() == ["main", "plain"]


def test_a_step_with_a_variable_not_set_takes_the_full_path_and_warns(tmp_path: Path) -> None:
    graph = graph_of(
        tmp_path,
        """
        version: 1
        start: main
        nodes:
          main:
            type: menu
            prompt: 主菜单 1 2
            options: {"1": hello, "2": ask}
          ask:
            type: input
            prompt: 您的名字
            save_as: name
            next: main
          hello:
            type: message
            text: 您好 {name}
            next: main
        """,
    )
    walk = Walk(graph)
    before = (walk.session.node, walk.session.visits)
    assert walk.session.press("1", walk.now) is None
    assert (walk.session.node, walk.session.visits) == before  # nothing changed
    events = walk("1")
    assert said(events) == "您好 \n主菜单 1 2"
    assert any(type(e) is Notice and e.event == "template_variable_unset" for e in events)
    assert walk.session.press("2", walk.now) is not None
    assert walk.session.press("小王", walk.now) is None  # not ASCII: the full path folds it
    walk("小王")
    say = walk.session.press("1", walk.now)
    assert say is not None and say.text == "您好 小王\n主菜单 1 2"


def test_walks_with_variables_are_compiled_at_load_into_one_template(tmp_path: Path) -> None:
    graph = graph_of(
        tmp_path,
        """
        version: 1
        start: main
        data: {people: people.yaml}
        nodes:
          main:
            type: menu
            prompt: 主菜单 {caller.address}
            options: {"1": hello, "2": ask}
          ask:
            type: input
            prompt: 您的名字
            save_as: name
            next: find
          find:
            type: lookup
            table: people
            key: "{name}"
            save_as: person
            found: hello
            missing: main
          hello:
            type: message
            text: 您好 {name}
            next: main
        """,
        people__yaml="小王: {age: 3}\n",
    )
    # a walk through messages to a prompt is one template, its literal parts merged
    hello = graph.routes["hello"]
    assert [n.name for n in hello.nodes] == ["hello", "main"]
    parts = hello.text.template.parts
    assert [p if type(p) is str else "{" + p.text + "}" for p in parts] == [
        "您好 ",
        "{name}",
        "\n主菜单 ",
        "{caller.address}",
    ]
    assert "main" in graph.routes and "ask" in graph.arrivals  # fixed: an arrival
    assert "find" not in graph.routes and "find" not in graph.arrivals  # a look-up: walked per step
    walk = Walk(graph)
    walk("2")
    assert said(walk("小王")) == "您好 小王\n主菜单 127.0.0.1"  # found: the look-up walked
    say = walk.session.press("1", walk.now)
    assert say is not None and say.fresh and say.text == "您好 小王\n主菜单 127.0.0.1"


@settings(max_examples=2000, deadline=None)
@given(st.text(max_size=12))
def test_folding_never_shortens_a_line_into_an_ascii_key(line: str) -> None:
    """What lets a connected caller's long line skip folding (TransferNode.chat_beyond)."""
    _, folded = fold(line)
    assert not folded.isascii() or len(folded) >= len(line.strip())


SHIPPED_KEYS = [
    "1",
    "2",
    "3",
    "8",
    "9",
    "0",
    "*",
    "#",
    "7",
    "２",
    "＃",
    "＊",
    "x",
    "?",
    "13800138000",
    "1380013800",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(SHIPPED_KEYS), max_size=30))
def test_the_shortcuts_do_exactly_what_the_full_path_does(keys: list[str]) -> None:
    """Options, full-width keys, * # 9 and refused keys through Session.press (as the server takes
    them) say the same and end in the same state as through the handlers (trace turns press off)."""
    graph = _shipped()
    fast = Session(graph, session_id="a", caller="127.0.0.1")
    full = Session(graph, session_id="b", caller="127.0.0.1", trace=True)
    now = 1_700_000_000.0
    assert said(fast.start(now)) == said(full.start(now))
    for key in keys:
        if fast.ended or full.desk is not None:
            break
        quick = fast.press(key, now)
        a = quick.text if quick is not None else said(answer_offline(fast, fast.feed_line(key, now), now))
        b = said(answer_offline(full, full.feed_line(key, now), now))
        assert a == b, key
        assert (fast.node, fast.trail, fast.failures, fast.timeouts, fast.deadline, fast.ended) == (
            full.node,
            full.trail,
            full.failures,
            full.timeouts,
            full.deadline,
            full.ended,
        ), key
    assert fast.stats.invalid == full.stats.invalid


_SHIPPED: list[Any] = []


def _shipped() -> Any:
    if not _SHIPPED:
        from app.configdir import load_config

        _SHIPPED.append(load_config(CONFIG).graph)
    return _SHIPPED[0]


def test_the_agents_context_flattens_nested_records(tmp_path: Path) -> None:
    from tests.menu.test_loader import TITLED

    graph = graph_of(tmp_path, TITLED)
    s = Session(graph)
    s.start(0.0)
    s.feed("1", 0.0)
    s.feed("13800138000", 0.0)
    context = dict(s.handoff_context())
    assert context["path"] == "main>ask>find>main"
    assert context["var:account.balance"] == "86.5"
    assert (context["var:account.plan.name"], context["var:account.plan.fee"]) == ("5G", "128")
    assert not any("{" in value for value in context.values())  # never a mapping's repr


def _shape_graphs() -> list[tuple[str, Any, list[str]]]:
    """Every menu of the mixed benchmark (benchmarks/menus.py), with its script's lines."""
    if not _SHAPES:
        import tempfile

        from app.configdir import load_config
        from benchmarks.menus import SHAPES

        root = Path(tempfile.mkdtemp(prefix="hotline-shapes-"))
        for shape in SHAPES:
            graph = load_config(shape.folder(root)).graph
            _SHAPES.append((shape.key, graph, sorted({line for _, line in shape.script})))
    return _SHAPES


_SHAPES: list[tuple[str, Any, list[str]]] = []
MORE_LINES = [
    "*",
    "#",
    "9",
    "0",
    "x",
    "X",
    " 1 ",
    "１",
    "＊",
    "exit",
    "?",
    "",
    "2026-13",
    "abc",
    "13912345678",
]


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 4), st.lists(st.integers(0, 40), max_size=40))
def test_steps_do_exactly_what_the_full_path_does_on_every_shape(shape: int, picks: list[int]) -> None:
    """On every menu shape of the mixed benchmark (templated prompts, patterns, deep submenus,
    robot nodes, the shipped menu), a line Session.press takes says the same and ends in the same
    state (variables too) as the handlers' path (trace turns press off)."""
    _, graph, lines = _shape_graphs()[shape]
    pool = lines + MORE_LINES
    fast = Session(graph, session_id="a", caller="127.0.0.1")
    full = Session(graph, session_id="b", caller="127.0.0.1", trace=True)
    now = 1_700_000_000.0
    assert said(fast.start(now)) == said(full.start(now))
    for pick in picks:
        line = pool[pick % len(pool)]
        if fast.ended or full.desk is not None:
            break
        quick = fast.press(line, now)
        a = quick.text if quick is not None else said(answer_offline(fast, fast.feed_line(line, now), now))
        b = said(answer_offline(full, full.feed_line(line, now), now))
        assert a == b, line
        assert (fast.node, fast.trail, fast.failures, fast.timeouts, fast.deadline, fast.ended) == (
            full.node,
            full.trail,
            full.failures,
            full.timeouts,
            full.deadline,
            full.ended,
        ), line
        assert fast.vars == full.vars and list(fast.vars) == list(full.vars), line
        assert fast.path == full.path and fast.visits == full.visits, line
    assert fast.stats.invalid == full.stats.invalid
    assert fast.stats.node_visits == full.stats.node_visits
