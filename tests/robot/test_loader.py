"""robot.yaml problems, each with its line and column."""

from __future__ import annotations

from pathlib import Path

from app.configdir import load_config
from app.robot import load_robot
from tests.helpers import CONFIG, problems_as_shown

GOOD = """\
version: 1
threshold: 0.6
intents:
  - id: balance
    questions: [怎么查话费, 我的话费还剩多少]
    keywords: [话费]
    answer: 发送 CXHF 到 10086。
  - id: data
    questions: [流量还剩多少]
    answer: 发送 CXLL 到 10086。
"""


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "robot.yaml"
    path.write_text(text, encoding="utf-8")
    result = load_robot(path)
    return problems_as_shown(result, tmp_path, result.matcher)


def test_good_file(tmp_path: Path) -> None:
    assert problems(tmp_path, GOOD) == []


def test_unknown_key_in_an_intent_suggests(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD.replace("    keywords:", "    keywrods:"))
    assert out == [
        "robot.yaml:6:5: error: intent 'balance' has an unknown key 'keywrods' (did you mean 'keywords'?)"
    ]


def test_missing_answer(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD.replace("    answer: 发送 CXLL 到 10086。\n", ""))
    assert out == ["robot.yaml:8:5: error: intent 'data' needs 'answer'"]


def test_duplicate_intent_id(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD.replace("id: data", "id: balance"))
    assert out == ["robot.yaml:8:9: error: intent id 'balance' is already used by intent 1"]


def test_answer_too_long_for_one_datagram(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD.replace("answer: 发送 CXLL 到 10086。", "answer: " + "很长" * 200))
    assert len(out) == 1 and out[0].startswith("robot.yaml:10:13: error: intent 'data' answer makes a")
    assert "replies must fit 1200 bytes" in out[0]


def test_threshold_out_of_range(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD.replace("threshold: 0.6", "threshold: 6"))
    assert out == ["robot.yaml:2:12: error: the robot file: threshold should be less than or equal to 1"]


def test_clarify_needs_both_titles(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD.replace("threshold: 0.6", "threshold: 0.6\nclarify: 您是想问{a}吗"))
    assert out == ["robot.yaml:3:10: error: clarify must contain {b}, where the two intents' titles go"]


def test_same_question_in_two_intents_is_a_warning(tmp_path: Path) -> None:
    out = problems(
        tmp_path, GOOD.replace("questions: [流量还剩多少]", "questions: [流量还剩多少, 怎么查话费]")
    )
    assert out == [
        "robot.yaml:9:25: warning: intent 'data' question '怎么查话费' is also a question of intent 'balance'; they will compete"
    ]


def test_yaml_error(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD.replace("questions: [流量还剩多少]", "questions: [流量还剩多少"))
    assert len(out) == 1 and out[0].startswith("robot.yaml:10:") and "YAML syntax" in out[0]


def test_check_covers_robot_yaml(tmp_path: Path) -> None:
    (tmp_path / "menu.yaml").write_text((CONFIG / "menu.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "accounts.yaml").write_text(
        (CONFIG / "accounts.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    (tmp_path / "robot.yaml").write_text(GOOD.replace("id: data", "id: balance"), encoding="utf-8")
    result = load_config(tmp_path)
    assert result.graph is None
    assert [p.line for p in result.errors] == [8]


def test_missing_robot_yaml_is_a_warning_when_the_menu_has_a_robot_node(tmp_path: Path) -> None:
    for name in ("menu.yaml", "accounts.yaml"):
        (tmp_path / name).write_text((CONFIG / name).read_text(encoding="utf-8"), encoding="utf-8")
    result = load_config(tmp_path)
    assert result.graph is not None
    assert [str(p).split("/")[-1] for p in result.warnings] == [
        "robot.yaml:1:1: warning: there is no robot.yaml: robot nodes answer every question with the fallback"
    ]
