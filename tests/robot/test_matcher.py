"""The matcher on the shipped knowledge base: held-out accuracy, typos, fallback, clarification."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from app.robot import Matcher, load_robot
from app.robot.matcher import by_sound, normalize
from app.robot.schema import RobotFile
from tests.helpers import CONFIG

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def robot() -> Matcher:
    result = load_robot(CONFIG)
    assert result.matcher is not None, result.problems
    return result.matcher


@pytest.mark.parametrize(("name", "floor"), [("heldout.yaml", 0.9), ("heldout_fresh.yaml", 0.75)])
def test_held_out_questions_are_answered_and_rarely_wrongly(robot: Matcher, name: str, floor: float) -> None:
    """Held-out paraphrases: heldout.yaml was tuned on, heldout_fresh.yaml never. heldout.yaml keeps
    the floor it had before issue 27 (90 %). heldout_fresh.yaml was 92.7 % before issue 27, when the
    robot also answered a third of the evaluation set's vague and out-of-scope questions wrongly; its
    misses now are fallbacks on questions that hold a word the knowledge base does not use right where
    the look-alikes hold theirs (支付宝可以交话费吗 as 燃气费怎么缴费, 出差去泰国要开漫游吗), which only
    knowing what 支付宝 or 泰国 is would tell apart: 78 % measured, floor 75 %. On both, at most one
    answer in 33 names a wrong intent."""
    items = yaml.safe_load((HERE / name).read_text(encoding="utf-8"))
    assert len(items) >= 40
    examples = {normalize(q) for i in robot.kb.intents for q in i.questions}
    assert not [it["q"] for it in items if normalize(str(it["q"])) in examples], (
        "held-out must not copy examples"
    )
    said = [(it["q"], it["intent"], robot.answer(str(it["q"])).intent) for it in items]
    wrong = [s for s in said if s[2] is not None and s[2] != s[1]]
    missed = [s for s in said if s[2] != s[1]]
    assert len(wrong) / len(items) <= 0.03, f"confidently wrong: {wrong}"
    accuracy = 1 - len(missed) / len(items)
    assert accuracy >= floor, f"accuracy {accuracy:.1%}; missed: {missed}"


def test_the_shipped_knowledge_base_is_big_enough(robot: Matcher) -> None:
    assert len(robot.kb.intents) >= 25
    assert all(len(i.questions) >= 4 for i in robot.kb.intents)


@pytest.mark.parametrize(
    ("question", "intent"),
    [
        ("话费怎么查", "balance"),
        ("  我的話費還剩多少？ ", "balance"),  # traditional characters, full-width punctuation
        ("流两还剩多少", "data_usage"),  # homophone typo from a pinyin input method
        ("５Ｇ套餐", "plan_5g"),  # full-width letters and digits
        ("请问一下我的积分怎么兑换呢谢谢", "points"),  # the example inside a longer question
        ("寬帶報修", "broadband_fault"),  # traditional characters
        ("宽带网束太慢", "broadband_fault"),  # a fuzzy sound of pinyin input methods: shu for su
        ("天天有骚扰电话烦死了", "spam"),  # a caller's chatter
        ("打国际长途贵不贵", "international_call"),  # an A-not-A question
        ("用微信能充话费吗", "recharge"),  # an unknown word after 用 says how, not what
    ],
)
def test_paraphrases_typos_and_width(robot: Matcher, question: str, intent: str) -> None:
    answer = robot.answer(question)
    assert answer.intent == intent, robot.scores(question)[:3]
    assert answer.confidence >= robot.threshold
    assert answer.text == next(i.answer for i in robot.kb.intents if i.id == intent)


@pytest.mark.parametrize(
    "question",
    ["今天天气怎么样", "红烧肉怎么做", "asdfghjkl", "?!", "", "银行卡丢了怎么办", "燃气费怎么缴费", "查询"],
)
def test_questions_from_nowhere_get_the_fallback(robot: Matcher, question: str) -> None:
    answer = robot.answer(question)
    assert answer.intent is None and answer.text == robot.kb.fallback
    assert answer.confidence < robot.threshold


def test_close_intents_get_a_clarifying_question() -> None:
    kb = RobotFile.model_validate(
        {
            "version": 1,
            "ambiguity": 0.2,
            "intents": [
                {"id": "a", "title": "查话费", "questions": ["查话费余额"], "answer": "A"},
                {"id": "b", "title": "查流量", "questions": ["查流量余额"], "answer": "B"},
            ],
        }
    )
    answer = Matcher(kb).answer("查余额")
    assert answer.intent is None
    assert answer.text in ("您是想问「查话费」还是「查流量」?", "您是想问「查流量」还是「查话费」?")
    assert set(answer.candidates) == {"a", "b"}


def test_a_word_two_intents_are_equally_about_gets_a_clarifying_question(robot: Matcher) -> None:
    """宽带 alone: to install broadband or to repair it? Nothing in the question tells."""
    answer = robot.answer("宽带")
    assert answer.intent is None
    assert set(answer.candidates) == {"broadband_install", "broadband_fault"}
    assert answer.text == "您是想问「办理宽带」还是「宽带故障报修」?"


def test_an_empty_knowledge_base_answers_the_fallback() -> None:
    answer = Matcher(RobotFile(version=1)).answer("话费")
    assert answer.intent is None and answer.confidence == 0


def test_normalisation() -> None:
    assert normalize("  Ｈｅｌｌｏ， 世界！ ") == "hello世界"
    assert by_sound("花费") == by_sound("话费") != by_sound("流量")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_gets_an_answer_in_range(text: str) -> None:
    result = load_robot(CONFIG)
    assert result.matcher is not None
    answer = result.matcher.answer(text)
    assert 0.0 <= answer.confidence <= 1.0
    assert answer.text


BANK = {
    "version": 1,
    "intents": [
        {
            "id": "lost_card",
            "questions": ["I lost my card", "my card was stolen", "block my card", "card missing"],
            "keywords": ["lost", "stolen", "block"],
            "answer": "Press 1 then 1 to block your card.",
        },
        {
            "id": "hours",
            "questions": [
                "when are you open",
                "opening hours",
                "what time do branches close",
                "are you open on saturday",
            ],
            "keywords": ["hours", "open", "close"],
            "answer": "Branches are open 9 to 5, Monday to Friday.",
        },
        {
            "id": "fees",
            "questions": [
                "what are the fees",
                "monthly fee",
                "how much does the account cost",
                "overdraft fee",
            ],
            "keywords": ["fee", "fees", "cost"],
            "answer": "The standard account has no monthly fee.",
        },
    ],
}


@pytest.mark.parametrize(
    ("question", "intent"),
    [
        ("I think I lost my card", "lost_card"),
        ("my card got stolen yesterday", "lost_card"),
        ("When do you open on Saturdays?", "hours"),
        ("what does the account cost per month", "fees"),
        ("do you sell pizza", None),
        ("what is the weather like", None),
    ],
)
def test_a_knowledge_base_in_english_is_matched_by_words(question: str, intent: str | None) -> None:
    """Another business, another language: words, not letters, are compared outside Chinese."""
    assert Matcher(RobotFile.model_validate(BANK)).answer(question).intent == intent


def test_questions_do_not_grow_the_vocabulary() -> None:
    matcher = Matcher(RobotFile.model_validate(BANK))
    size = len(matcher.words)
    for i in range(1000):
        matcher.answer(f"unheard word number w{i} zq{i}")
    assert len(matcher.words) == size


def test_answers_to_repeated_questions_are_kept_and_bounded(
    robot: Matcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.robot.matcher as matcher_module

    fresh = Matcher(robot.kb)
    first = fresh.answer("流量还剩多少")
    assert fresh.answer("流量还剩多少") is first  # the second time from what was kept
    assert first == robot._answer("流量还剩多少")  # the same as matching again
    monkeypatch.setattr(matcher_module, "ANSWERS_KEPT", 3)
    for q in ("话费余额", "怎么充值", "宽带报修", "套餐", "国际漫游"):
        fresh.answer(q)
    assert 0 < len(fresh._answers) <= 3
