"""The two-screen menu every baseline serves, byte for byte what hotline says for benchmarks/menu.yaml."""

from __future__ import annotations

MAIN = "主菜单:查询请按 1\r\n".encode()
SUB = "子菜单:返回请按 0\r\n".encode()
INVALID = "输入有误,请重新输入。\r\n".encode()


def answer(state: int, line: bytes) -> tuple[int, bytes]:
    """(new state, reply) for one line; state 0 is the main screen, 1 the sub screen."""
    key = line.strip()
    if state == 0 and key == b"1":
        return 1, SUB
    if state == 1 and key == b"0":
        return 0, MAIN
    return state, INVALID + (MAIN if state == 0 else SUB)
