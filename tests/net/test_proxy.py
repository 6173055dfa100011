"""The PROXY protocol header parser, without I/O: versions 1 and 2, partial reads, bad input."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from app.net.proxy import V2_SIGNATURE, Header, Incomplete, Invalid, parse


def v2(command: int, family: int, block: bytes) -> bytes:
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(block)) + block


def test_version_1_gives_the_caller_and_the_header_length() -> None:
    line = b"PROXY TCP4 203.0.113.7 10.0.0.2 51234 10086\r\n"
    assert parse(line + b"1\r\n") == Header("203.0.113.7", 51234, len(line))
    six = b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 10086\r\n"
    assert parse(six) == Header("2001:db8::7", 4000, len(six))
    assert parse(b"PROXY UNKNOWN\r\n") == Header(None, None, 15)


def test_version_2_gives_the_caller_and_the_header_length() -> None:
    block = bytes([203, 0, 113, 7, 10, 0, 0, 2]) + struct.pack("!HH", 51234, 10086)
    data = v2(1, 0x11, block)
    assert parse(data + b"1\r\n") == Header("203.0.113.7", 51234, len(data))
    block6 = bytes(15) + b"\x07" + bytes(15) + b"\x01" + struct.pack("!HH", 4000, 10086)
    assert parse(v2(1, 0x21, block6)) == Header("::7", 4000, 16 + 36)
    tlv = block + b"\x04\x00\x01x"  # a TLV after the addresses is skipped with the header
    assert parse(v2(1, 0x11, tlv)).length == 16 + len(tlv)  # type: ignore[union-attr]
    assert parse(v2(0, 0x00, b"")) == Header(None, None, 16)  # LOCAL: the balancer's health check


def test_partial_headers_ask_for_more() -> None:
    line = b"PROXY TCP4 203.0.113.7 10.0.0.2 51234 10086\r\n"
    data = v2(1, 0x11, bytes(8) + struct.pack("!HH", 1, 2))
    for whole in (line, data):
        for cut in range(len(whole)):
            assert parse(whole[:cut]) == Incomplete(), (whole, cut)


def test_anything_else_is_refused() -> None:
    for bad in (
        b"1\r\n",
        b"GET / HTTP/1.1\r\n",
        b"PROXY TCP4 not-an-address 10.0.0.2 1 2\r\n",
        b"PROXY TCP4 2001:db8::7 10.0.0.2 1 2\r\n",
        b"PROXY TCP4 203.0.113.7 10.0.0.2 70000 2\r\n",
        b"PROXY TCP5 203.0.113.7 10.0.0.2 1 2\r\n",
        b"PROXY " + b"x" * 200,
        V2_SIGNATURE + b"\x30\x11\x00\x00",
        V2_SIGNATURE + b"\x21\x11\x00\x04" + bytes(4),
    ):
        assert isinstance(parse(bad), Invalid), bad


@given(st.binary(max_size=300))
def test_any_bytes_get_an_answer(data: bytes) -> None:
    result = parse(data)
    assert isinstance(result, Header | Incomplete | Invalid)
    if isinstance(result, Header):
        assert 0 < result.length <= len(data)
