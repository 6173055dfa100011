"""The menu's robot node: keys that are not questions, hand-off by intent, a fallback for callers."""

from __future__ import annotations

import shutil
from pathlib import Path

from app.configdir import load_config
from app.menu.engine import ASKED_KEPT
from tests.helpers import CONFIG, Walk, said


def _walk() -> Walk:
    config = load_config(CONFIG)
    assert config.graph is not None
    return Walk(config.graph)


def test_zero_at_the_robot_is_a_key_not_a_failed_question() -> None:
    w = _walk()
    w("8")
    out = said(w("0"))
    assert "正在为您转接人工服务" in out and "没有听懂" not in out
    assert w.session.stats.robot_queries == {}  # not counted as a question the robot failed
    assert w.session.asked == []


def test_asking_for_a_human_goes_to_the_agent_node() -> None:
    w = _walk()
    w("8")
    out = said(w("我要转人工"))
    assert "正在为您转接人工服务" in out
    assert "拨打 10086" not in out  # no advice to redial to someone already on the line
    assert w.session.stats.robot_queries == {"human": 1}
    assert w.session.asked == ["我要转人工"]


def test_the_fallback_tells_a_caller_what_works_from_here() -> None:
    w = _walk()
    w("8")
    out = said(w("今天天气怎么样"))
    assert out == "抱歉,我没有听懂。您可以换个说法,人工服务请按 0,按 # 返回主菜单。"
    assert w.node == "robot"
    out = said(w("流量还剩多少"))  # a real answer is the knowledge base's own
    assert "CXLL" in out


def test_questions_asked_are_kept_for_the_agent_but_bounded() -> None:
    w = _walk()
    w("8")
    for i in range(ASKED_KEPT + 5):
        w(f"问题 {i}")
    assert len(w.session.asked) == ASKED_KEPT
    assert w.session.asked[-1] == f"问题 {ASKED_KEPT + 4}"


def test_on_intent_naming_an_unknown_intent_is_a_load_error(tmp_path: Path) -> None:
    for name in ("menu.yaml", "robot.yaml", "accounts.yaml"):
        shutil.copy(CONFIG / name, tmp_path / name)
    menu = tmp_path / "menu.yaml"
    text = menu.read_text(encoding="utf-8").replace("      human: agent", "      humn: agent")
    menu.write_text(text, encoding="utf-8")
    result = load_config(tmp_path)
    assert result.graph is None
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "humn: agent" in t)
    assert [str(p) for p in result.errors] == [
        f"{menu}:{line}:7: error: node 'robot' on_intent.humn: 'humn' is not an intent of robot.yaml "
        "(did you mean 'human'?)"
    ]
