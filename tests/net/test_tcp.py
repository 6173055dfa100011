"""TCP sessions over real sockets, in-process on uvloop: what a caller sees."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import structlog

from app.net.telnet import DO, IAC, WONT
from app.server import Server
from tests.conftest import Caller, start_server
from tests.conftest import wait_until as _until
from tests.helpers import write_menu

WELCOME = "欢迎致电中国移动 10086"
MAIN_SHORT = "请按 1、2、3、8 或 0"
BYE = "感谢您致电中国移动 10086,再见!"


async def test_greeting_comes_at_once_as_clean_crlf_text(dial: Any) -> None:
    caller: Caller = await dial()
    await caller.expect("结束通话请输入 exit。\r\n")
    assert caller.raw.startswith(WELCOME.encode())
    assert b"\xff" not in caller.raw
    assert caller.raw.count(b"\n") == caller.raw.count(b"\r\n")


async def test_scripted_caller_walks_the_shipped_menu(dial: Any) -> None:
    c: Caller = await dial()
    await c.expect(WELCOME)
    c.send("1")
    await c.expect("请输入您的 11 位手机号码")
    c.send("13800138000")
    await c.expect("尊敬的张先生,您的账户余额为 86.50 元")
    await c.expect(WELCOME)
    c.send("3")
    await c.expect("套餐办理:5G 套餐请按 1")
    c.send("2")
    await c.expect("流量加油包")
    c.send("2")
    await c.expect("30 元 10 GB 月包已办理成功")
    c.send("*")
    await c.expect("套餐办理:5G 套餐请按 1")
    c.send("#")
    await c.expect(WELCOME)
    c.send("1001")
    await c.expect("您输入的业务代码是 1001")
    c.send("0")
    await c.expect("目前所有坐席均忙")
    c.send("话费扣错了")  # no agent: a message instead, and its ticket number
    await c.expect("您的留言已记录,工单号是 T")
    await c.expect(WELCOME)
    c.send("x")
    await c.expect("输入有误,请重新输入。\r\n" + MAIN_SHORT)
    c.send("Exit")
    await c.expect(BYE)
    assert await c.closed() == "\r\n"


async def test_lines_pasted_at_once_are_answered_in_order(dial: Any) -> None:
    c: Caller = await dial()
    c.send("2", "1", "13912345678", "exit", ending="\n")
    await c.expect("剩余 7.5 GB")
    await c.expect("请输入您的 11 位手机号码")
    await c.expect("李女士")
    await c.expect(BYE)
    await c.closed()


async def test_half_close_still_gets_answers_and_goodbye(dial: Any) -> None:
    c: Caller = await dial()
    c.send("2", ending="\n")
    c.writer.write(b"1")  # last line without a newline, then EOF
    c.writer.write_eof()
    await c.expect("剩余 7.5 GB")
    await c.expect("请输入您的 11 位手机号码")
    rest = await c.closed()
    assert BYE in rest


async def test_telnet_options_are_refused_once_and_never_reach_the_menu(dial: Any) -> None:
    c: Caller = await dial()
    await c.expect(WELCOME)
    c.writer.write(bytes([IAC, DO, 1, IAC, DO, 1]) + b"2\r\n")
    await c.expect("剩余 7.5 GB")
    assert c.raw.count(bytes([IAC, WONT, 1])) == 1
    assert "输入有误" not in c.text


async def test_over_long_line_is_refused_and_the_session_goes_on(dial: Any) -> None:
    c: Caller = await dial()
    await c.expect(WELCOME)
    c.writer.write(b"9" * 100_000 + b"\r\n")
    await c.expect("您的输入过长,已忽略")
    c.send("2")
    await c.expect("剩余 7.5 GB")


async def test_undecodable_bytes_do_not_end_the_session(dial: Any) -> None:
    with structlog.testing.capture_logs() as logs:
        c: Caller = await dial()
        await c.expect(WELCOME)
        c.writer.write(b"\xc3\x28\xa0\xa1\r\n")
        await c.expect("输入有误")
        c.send("2")
        await c.expect("剩余 7.5 GB")
        c.send("exit")
        await c.closed()
    ended = [e for e in logs if e["event"] == "session_ended"]
    assert ended[0]["undecodable_lines"] == 1  # replaced, and logged


async def test_ctrl_c_on_an_empty_line_hangs_up_politely(dial: Any) -> None:
    c: Caller = await dial()
    await c.expect(WELCOME)
    c.writer.write(b"\x03")
    assert BYE in await c.closed()


async def test_interrupt_process_hangs_up(dial: Any) -> None:
    c: Caller = await dial()
    await c.expect(WELCOME)
    c.writer.write(bytes([IAC, 244]))
    assert BYE in await c.closed()


async def test_full_width_digits_from_an_ime(dial: Any) -> None:
    c: Caller = await dial()
    c.send("２")
    await c.expect("剩余 7.5 GB")


async def test_many_concurrent_callers(server: Server) -> None:
    async def one(i: int) -> None:
        c = await Caller.dial(server.tcp_port)
        try:
            await c.expect(WELCOME, timeout=20)
            for _ in range(3):
                c.send("1")
                await c.expect("请输入您的 11 位手机号码", timeout=20)
                c.send("13800138000" if i % 2 else "13700000000")
                await c.expect("张先生" if i % 2 else "未找到号码 13700000000", timeout=20)
            c.send("exit")
            await c.expect(BYE, timeout=20)
        finally:
            c.close()

    await asyncio.gather(*(one(i) for i in range(300)))
    assert await _until(lambda: not server.hub.sessions)


async def test_silence_reprompts_then_hangs_up(tmp_path: Path) -> None:
    write_menu(
        tmp_path,
        """
        version: 1
        start: main
        settings: {timeout: 0.2s, max_timeouts: 3, goodbye: 再见}
        nodes:
          main: {type: menu, prompt: 主菜单, short_prompt: 请选择, options: {"1": main}}
    """,
    )
    srv = await start_server(tmp_path)
    try:
        c = await Caller.dial(srv.tcp_port)
        await c.expect("主菜单\r\n")
        await c.expect("请选择\r\n", timeout=3)
        c.send("1")  # input resets the silence counter
        await c.expect("主菜单\r\n")
        await c.expect("请选择\r\n", timeout=3)
        await c.expect("请选择\r\n", timeout=3)
        assert await c.closed(timeout=3) == "再见\r\n"
        c.close()
    finally:
        await srv.shutdown()


async def test_caller_who_never_reads_is_cut_off_and_others_are_served(tmp_path: Path) -> None:
    srv = await start_server(max_output=8192, max_lines_per_second=1e6)
    try:
        _reader, writer = await asyncio.open_connection("127.0.0.1", srv.tcp_port)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        good = await Caller.dial(srv.tcp_port)
        payload = b"?\r\n" * 2000  # each asks for the full main prompt again
        for _ in range(100):
            if writer.is_closing():
                break
            writer.write(payload)
            try:
                await asyncio.wait_for(writer.drain(), 0.5)
            except (ConnectionError, TimeoutError):
                break
            if srv.hub.refusals.get("slow_reader"):
                break
        assert await _until(lambda: srv.hub.refusals.get("slow_reader", 0) == 1)
        good.send("2")
        await good.expect("剩余 7.5 GB")
        writer.close()
        good.close()
    finally:
        await srv.shutdown()


async def test_max_sessions_refuses_politely(tmp_path: Path) -> None:
    srv = await start_server(max_sessions=2)
    try:
        a, b = await Caller.dial(srv.tcp_port), await Caller.dial(srv.tcp_port)
        await a.expect(WELCOME)
        await b.expect(WELCOME)
        c = await Caller.dial(srv.tcp_port)
        assert "线路繁忙" in await c.closed()
        assert srv.hub.refusals["max_sessions"] == 1
        a.send("2")
        await a.expect("剩余 7.5 GB")
        for x in (a, b, c):
            x.close()
    finally:
        await srv.shutdown()


async def test_gbk_listener() -> None:
    srv = await start_server(encoding="gbk")
    try:
        c = await Caller.dial(srv.tcp_port, encoding="gbk")
        await c.expect(WELCOME)
        c.writer.write("２\r\n".encode("gbk"))
        await c.expect("剩余 7.5 GB")
        c.close()
    finally:
        await srv.shutdown()


async def test_shutdown_says_goodbye_to_every_caller_and_does_not_wait_for_idle_ones() -> None:
    srv = await start_server(shutdown_grace=5)
    callers = [await Caller.dial(srv.tcp_port) for _ in range(20)]
    for c in callers:
        await c.expect(WELCOME)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await srv.shutdown()
    assert loop.time() - started < 2
    for c in callers:
        assert BYE in await c.closed()
        c.close()
    refused = None
    try:
        await Caller.dial(srv.tcp_port)
    except OSError as exc:
        refused = exc
    assert refused is not None


async def test_logs_carry_session_and_peer_and_no_input_at_info(dial: Any) -> None:
    with structlog.testing.capture_logs() as logs:
        c: Caller = await dial()
        c.send("1", "13800138000", "exit")
        await c.closed()
        await asyncio.sleep(0)
    started = [e for e in logs if e["event"] == "session_started"]
    ended = [e for e in logs if e["event"] == "session_ended"]
    assert len(started) == 1 and len(ended) == 1
    assert ended[0]["session_id"] == started[0]["session_id"]
    assert ended[0]["peer"].startswith("127.0.0.1:")
    assert ended[0]["reason"] == "completed"
    assert ended[0]["path"][:4] == ["main", "ask_phone", "find_account", "balance"]
    assert "13800138000" not in repr(logs)


async def test_debug_logs_show_input_with_sensitive_nodes_masked(
    debug_logs: None, dial: Any, server: Server
) -> None:
    server.hub.trace = True
    with structlog.testing.capture_logs() as logs:
        c: Caller = await dial()
        c.send("1", "13800138000", "2", "exit")
        await c.closed()
    inputs = [(e["node"], e["input"]) for e in logs if e["event"] == "input"]
    assert inputs == [("main", "1"), ("ask_phone", "***"), ("main", "2"), ("main", "exit")]
    entered = [e["node"] for e in logs if e["event"] == "node_entered"]
    assert entered[:4] == ["main", "ask_phone", "find_account", "balance"]


async def test_admin_health_and_readiness(server: Server) -> None:
    async def get(path: str) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.admin_port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        return data

    assert (await get("/healthz")).startswith(b"HTTP/1.1 200 OK")
    assert (await get("/readyz")).startswith(b"HTTP/1.1 200 OK")
    assert (await get("/nope")).startswith(b"HTTP/1.1 404")


async def test_a_crashing_session_costs_only_that_caller(dial: Any, server: Server, monkeypatch: Any) -> None:
    from app.menu.engine import Session

    ok: Caller = await dial()
    await ok.expect(WELCOME)
    original = Session.press  # a line a menu refuses is taken there, without the node's handler

    def boom(self: Session, line: str, now: float) -> Any:
        if line == "boom":
            raise RuntimeError("a bug")
        return original(self, line, now)

    monkeypatch.setattr(Session, "press", boom)
    bad: Caller = await dial()
    await bad.expect(WELCOME)
    with structlog.testing.capture_logs() as logs:
        bad.send("boom")
        rest = await bad.closed()
    assert "系统繁忙" in rest and "Traceback" not in rest
    assert [e["event"] for e in logs][:2] == ["session_crashed", "session_ended"]
    ok.send("2")
    await ok.expect("剩余 7.5 GB")
