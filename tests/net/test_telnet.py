"""The line discipline: every line ending, editing key and telnet command, whole and byte by byte."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.net.telnet import (
    DO,
    DONT,
    IAC,
    INTERRUPT,
    OVERFLOW,
    SB,
    SE,
    TIMING_MARK,
    WILL,
    WONT,
    LineDiscipline,
    encode_text,
    keypresses,
)


def run(data: bytes, *, bytewise: bool = False, **kw: object) -> tuple[list[str], bytes]:
    d = LineDiscipline(**kw)  # type: ignore[arg-type]
    out: list[str] = []
    if bytewise:
        for i in range(len(data)):
            out += d.feed(data[i : i + 1])
    else:
        out += d.feed(data)
    return out, bytes(d.reply)


CASES = [
    (b"1\n", ["1"]),
    (b"1\r\n", ["1"]),
    (b"1\r\x00", ["1"]),
    (b"1\r2\r", ["1", "2"]),
    (b"1\r\n\r\n2\n", ["1", "", "2"]),
    (b"a\nb\r\nc\rd\r\x00", ["a", "b", "c", "d"]),
    (b"12\x083\n", ["13"]),
    (b"12\x7f\x7f3\n", ["3"]),
    ("你好\x7f\n".encode(), ["你"]),
    (b"ab" + bytes([IAC, 247]) + b"c\n", ["ac"]),  # IAC EC
    (b"ab" + bytes([IAC, 248]) + b"c\n", ["c"]),  # IAC EL
    (b"a" + bytes([IAC, IAC]) + b"\n", ["a\ufffd"]),  # IAC IAC is a data 0xFF
    (b"x\x1b[A\x1bOBy\x1b[1;5Cz\n", ["xyz"]),  # arrow keys (CSI and SS3 forms) are dropped
    (b"a\x01\x02b\tc\n", ["ab\tc"]),  # control characters removed, tab kept
    (bytes([IAC, SB, 24, 0]) + b"xterm" + bytes([IAC, SE]) + b"1\n", ["1"]),  # subnegotiation skipped
    (bytes([IAC, SB, 1, IAC, IAC, 2, IAC, SE]) + b"ok\n", ["ok"]),
]


@pytest.mark.parametrize(("data", "lines"), CASES)
@pytest.mark.parametrize("bytewise", [False, True])
def test_lines(data: bytes, lines: list[str], bytewise: bool) -> None:
    assert run(data, bytewise=bytewise)[0] == lines


@pytest.mark.parametrize("bytewise", [False, True])
def test_cr_lf_split_across_reads_is_one_line_end(bytewise: bool) -> None:
    d = LineDiscipline()
    assert d.feed(b"1\r") == ["1"]
    assert d.feed(b"\n2\r") == ["2"]
    assert d.feed(b"\x003\n") == ["3"]


def test_option_requests_are_refused_once_each() -> None:
    data = bytes([IAC, DO, 1, IAC, WILL, 3, IAC, DO, 1, IAC, WILL, 3, IAC, DO, 31])
    lines, reply = run(data + b"hi\n")
    assert lines == ["hi"]
    assert reply == bytes([IAC, WONT, 1, IAC, DONT, 3, IAC, WONT, 31])


def test_negative_answers_are_not_answered() -> None:
    _, reply = run(bytes([IAC, WONT, 1, IAC, DONT, 3, IAC, WONT, 1]))
    assert reply == b""


def test_timing_mark_is_answered() -> None:
    _, reply = run(bytes([IAC, DO, TIMING_MARK]) + b"x")
    assert reply == bytes([IAC, WILL, TIMING_MARK])


def test_are_you_there() -> None:
    _, reply = run(bytes([IAC, 246]))
    assert b"[yes]" in reply


@pytest.mark.parametrize("data", [bytes([IAC, 244]), b"\x03", b"\x04", b"abc\x03\x03"])
def test_interrupts_hang_up(data: bytes) -> None:
    assert INTERRUPT in run(data)[0]


def test_ctrl_c_on_a_typed_line_clears_it_and_ctrl_d_is_ignored() -> None:
    assert run(b"abc\x03def\n")[0] == ["def"]
    assert run(b"ab\x04c\n")[0] == ["abc"]


@pytest.mark.parametrize("bytewise", [False, True])
def test_over_long_line_is_refused_and_dropped_to_the_newline(bytewise: bool) -> None:
    data = b"x" * 50 + b"\nok\n" + b"y" * 17 + b"\n"
    assert run(data, bytewise=bytewise, max_line=16)[0] == [OVERFLOW, "ok", OVERFLOW]


def test_long_line_is_not_buffered() -> None:
    d = LineDiscipline(max_line=1024)
    assert d.feed(b"z" * 5000) == [OVERFLOW]
    for _ in range(100):
        assert d.feed(b"z" * 65536) == []
        assert len(d._buf) == 0
    assert d.feed(b"zz\nnext\n") == ["next"]


def test_line_at_the_limit_is_kept() -> None:
    assert run(b"x" * 16 + b"\n", max_line=16)[0] == ["x" * 16]


def test_undecodable_bytes_are_replaced_and_counted() -> None:
    d = LineDiscipline()
    assert d.feed(b"a\xff\xfeb\n".replace(b"\xff", b"\xc3")) == ["a\ufffd\ufffdb"]
    assert d.replaced == 1


@pytest.mark.parametrize("encoding", ["gbk", "gb18030"])
def test_chinese_encodings(encoding: str) -> None:
    d = LineDiscipline(encoding=encoding)
    assert d.feed("话费查询\r\n".encode(encoding)) == ["话费查询"]
    assert d.feed("你好\x08\n".encode(encoding)) == ["你"]


UNSAFE_TYPED = "我的\x9b31m话费\x85不对\u202e0008\u202c,\u2066请\u2069\u200e回\u200f电\u061c\u2028!"


@pytest.mark.parametrize("encoding", ["utf-8", "gb18030"])
@pytest.mark.parametrize("bytewise", [False, True])
@pytest.mark.parametrize("edited", [False, True])
def test_c1_controls_and_bidi_overrides_never_reach_a_line(
    encoding: str, bytewise: bool, edited: bool
) -> None:
    """Typed alone, pasted with other lines, edited with backspace (the byte-at-a-time path),
    cut by flush: what comes out holds none of app.text.UNSAFE; tab and the text stay."""
    typed = UNSAFE_TYPED + ("x\x08" if edited else "") + "\t好"
    want = "我的31m话费不对0008,请回电!\t好"
    data = typed.encode(encoding) + b"\r\n"
    assert run(data, bytewise=bytewise, encoding=encoding)[0] == [want]
    assert run(b"1\r\n" + data + b"2\r\n", bytewise=bytewise, encoding=encoding)[0] == ["1", want, "2"]
    d = LineDiscipline(encoding=encoding)
    assert d.feed(typed.encode(encoding)) == [] and d.flush() == [want]


def test_a_gbk_listener_cannot_be_sent_them_at_all() -> None:
    """GBK has no C1 controls or bidi marks: their GB18030 bytes are undecodable there, replaced."""
    line = LineDiscipline(encoding="gbk").feed("a\u202eb".encode("gb18030") + b"\r\n")[0]
    assert line.startswith("a") and line.endswith("b") and "\u202e" not in line and "\ufffd" in line


def test_flush_returns_the_unterminated_last_line() -> None:
    d = LineDiscipline()
    assert d.feed(b"1\n2") == ["1"]
    assert d.flush() == ["2"]
    assert d.flush() == []


def test_encode_text_uses_crlf_and_escapes_iac() -> None:
    assert encode_text("a\nb", "utf-8") == b"a\r\nb\r\n"
    assert encode_text("a\r\nb", "utf-8") == b"a\r\nb\r\n"
    assert encode_text("\u00ff", "latin-1") == b"\xff\xff\r\n"
    assert encode_text("话费", "gbk") == "话费\r\n".encode("gbk")


@settings(max_examples=400, deadline=None)
@given(chunks=st.lists(st.binary(max_size=300), max_size=20), max_line=st.integers(16, 64))
def test_arbitrary_bytes_never_raise_and_respect_the_limit(chunks: list[bytes], max_line: int) -> None:
    d = LineDiscipline(max_line=max_line)
    for chunk in chunks:
        for item in d.feed(chunk):
            assert isinstance(item, str)
            assert len(item.encode("utf-8", "surrogatepass")) <= max_line * 3
        assert len(d._buf) <= max_line
        assert len(d.reply) <= 4096 + 16
        d.reply = b""  # what the session does after sending it
    d.flush()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(["1", "12", "你好", "exit", "*", "#"]), max_size=10),
    st.sampled_from([b"\n", b"\r\n", b"\r\x00", b"\r"]),
)
def test_whole_and_bytewise_agree(lines: list[str], ending: bytes) -> None:
    data = b"".join(line.encode() + ending for line in lines)
    assert run(data)[0] == run(data, bytewise=True)[0] == lines


@given(st.binary(max_size=64))
@settings(max_examples=300, deadline=None)
def test_no_input_becomes_a_line_equal_to_a_signal(data: bytes) -> None:
    from app.net.tcp import EOF, NO_INPUT, SHUTDOWN, TIMEOUT

    signals = {INTERRUPT, OVERFLOW, TIMEOUT, EOF, SHUTDOWN, NO_INPUT}
    assert not any(s.isprintable() for s in signals)  # the engine's direct moves are printable keys
    for text in (s[1:] for s in signals):  # a caller typing a signal's name gets a plain line
        assert run(text.encode() + b"\r\n")[0] == [text]
    lines, _ = run(data + b"\r\n")
    assert not any(type(line) is str and line in signals for line in lines)


@given(
    st.one_of(st.binary(max_size=80), st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass")))
)
@settings(max_examples=400, deadline=None)
def test_a_whole_line_in_one_read_is_read_as_byte_by_byte(body: bytes) -> None:
    """The one-line shortcut (a whole line of plain text in one read) changes nothing a caller sees."""
    data = body.replace(b"\r", b"").replace(b"\n", b"") + b"\r\n"
    whole, bytewise = LineDiscipline(max_line=64), LineDiscipline(max_line=64)
    one = list(whole.feed(data))
    each = [item for b in data for item in bytewise.feed(bytes([b]))]
    assert one == each and whole.replaced == bytewise.replaced and whole.idle == bytewise.idle


def test_short_reads_are_kept_per_encoding() -> None:
    """A key typed alone comes back from the discipline's table; the table is its encoding's, so the
    same bytes decode as UTF-8 for one server and as GB18030 for another in the same process."""
    wide = "２".encode() + b"\r\n"  # full-width 2, as a Chinese IME types it
    utf8, gb = LineDiscipline(encoding="utf-8"), LineDiscipline(encoding="gb18030")
    assert utf8.feed(wide) == ["２"] and utf8.feed(wide) == ["２"]
    assert wide in keypresses("utf-8") and wide not in keypresses("gb18030")
    both = "é".encode() + b"\r\n"  # C3 A9: é in UTF-8, another character in GB18030
    assert utf8.feed(both) == ["é"]
    assert gb.feed(both) == [both[:-2].decode("gb18030")] != ["é"]
    assert utf8.feed(b"#\r\n") == ["#"] and b"#\r\n" in keypresses("utf-8")
    long_line = "我想查一下话费".encode() + b"\r\n"  # longer than a key: decoded each time, not kept
    assert utf8.feed(long_line) == ["我想查一下话费"] and long_line not in keypresses("utf-8")
