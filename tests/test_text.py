"""app.text: the one table of what no person is shown, over every class of code point."""

from __future__ import annotations

import sys

from hypothesis import given
from hypothesis import strategies as st

from app.desk.commands import as_json, clean, lines
from app.desk.events import HistoryLine, Offer
from app.text import UNSAFE, strip_unsafe, strip_unsafe_lines

# The contract (README.md, "The doors"), written out again rather than read from app.text
BIDI = [0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069, 0x200E, 0x200F, 0x061C]


def test_c0_controls_go_but_tab_stays() -> None:
    for c in range(0x20):
        expected = "a\tb" if c == 0x09 else "ab"
        assert strip_unsafe(f"a{chr(c)}b") == expected, hex(c)


def test_del_and_every_c1_control_go() -> None:
    assert strip_unsafe("a\x7fb") == "ab"
    for c in range(0x80, 0xA0):
        assert strip_unsafe(f"话{chr(c)}费") == "话费", hex(c)
    assert strip_unsafe("\x9b31m\x85x") == "31mx"  # CSI and NEL, as a caller would type them


def test_each_bidirectional_override_isolate_and_mark_goes() -> None:
    for c in BIDI:
        assert strip_unsafe(f"1380{chr(c)}0138000") == "13800138000", hex(c)
    trojan = "请回电\u202e0008310083\u202c1"
    assert strip_unsafe(trojan) == "请回电00083100831"


def test_line_separators_go_so_a_line_stays_one_line() -> None:
    assert strip_unsafe("一\u2028二\u2029三") == "一二三"
    assert len(strip_unsafe("a\x85b\x1cc\x0bd\u2028e").splitlines()) == 1


def test_ordinary_text_survives_as_it_is() -> None:
    for text in [
        "我的话费不对,请下午回电",
        "５Ｇ套餐　多少钱?",  # full-width letters and the ideographic space
        "Straße café ﬁ ½ ①",
        "مرحبا שלום",  # right-to-left scripts themselves are text, only the overrides go
        "😀👍🏽",
        "\ue000",  # private use
        "a\tb",
        "",
    ]:
        assert strip_unsafe(text) == text
        assert clean(text) == text


def test_every_code_point_is_either_unsafe_or_kept() -> None:
    everything = "".join(chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF)
    kept = strip_unsafe(everything)
    assert len(everything) - len(kept) == len(UNSAFE)
    assert not set(map(ord, kept)) & UNSAFE
    contract = {*range(0x20), 0x7F, *range(0x80, 0xA0), *BIDI} - {0x09}
    assert contract <= UNSAFE and UNSAFE - contract == {0x2028, 0x2029}
    # the shortcut (printable text is returned untouched) is sound: nothing unsafe is printable
    assert not any(chr(c).isprintable() for c in UNSAFE)


def test_lines_keep_their_newlines_and_one_line_loses_them() -> None:
    screen = "欢迎致电\u202e中国移动\n话费查询请按 1\x1b[2J"
    assert strip_unsafe_lines(screen) == "欢迎致电中国移动\n话费查询请按 1[2J"
    assert strip_unsafe(screen) == "欢迎致电中国移动话费查询请按 1[2J"
    assert clean(screen) == strip_unsafe(screen)


@given(st.text())
def test_nothing_unsafe_is_ever_left(text: str) -> None:
    out = strip_unsafe(text)
    assert out == "".join(ch for ch in text if ord(ch) not in UNSAFE)
    assert strip_unsafe_lines(text) == "".join(ch for ch in text if ch == "\n" or ord(ch) not in UNSAFE)


def test_an_offer_and_history_show_agents_the_same_clean_text_in_both_encodings() -> None:
    """Context from a shared desk's older replica, history from older records: cleaned on the way
    out, as CONTEXT / HISTORY lines and as the console's JSON."""
    offer = Offer(
        "c1", "default", 3, "10.0.0.7:5000", (("asked", "话费\u202e不对\x9b"), ("var:name", "张\n三"))
    )
    assert lines(offer)[1:] == ["CONTEXT c1 asked 话费不对", "CONTEXT c1 var:name 张三"]
    assert as_json(offer)["context"] == [("asked", "话费不对"), ("var:name", "张三")]
    assert lines(HistoryLine("c1", "system", None, "欢迎\u2066致电\n请按 1")) == [
        "HISTORY c1 system 欢迎致电 / 请按 1"
    ]
