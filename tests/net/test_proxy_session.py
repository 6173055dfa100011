"""Callers behind a TCP load balancer: the PROXY header names the caller, over real sockets (uvloop)."""

from __future__ import annotations

import struct

from app.net.proxy import V2_SIGNATURE
from tests.conftest import Caller, start_server, wait_until
from tests.test_operations import http_get, metric

WELCOME = "欢迎致电中国移动 10086"


def v1(address: str, port: int) -> bytes:
    return f"PROXY TCP4 {address} 127.0.0.1 {port} 10086\r\n".encode()


async def test_the_caller_is_the_address_the_balancer_names() -> None:
    srv = await start_server(proxy_protocol=True, max_sessions_per_address=1)
    callers: list[Caller] = []
    try:
        a = await Caller.dial(srv.tcp_port)
        callers.append(a)
        a.writer.write(v1("203.0.113.7", 51234) + b"1\r\n")  # the header and the first key in one read
        await a.expect(WELCOME)
        await a.expect("请输入您的 11 位手机号码")
        (session,) = srv.hub.sessions
        assert session.peer == "203.0.113.7:51234" and session.engine.caller == "203.0.113.7"
        # v2 (binary), another caller through the same balancer: limits count the real address
        b = await Caller.dial(srv.tcp_port)
        callers.append(b)
        block = bytes([198, 51, 100, 9, 127, 0, 0, 1]) + struct.pack("!HH", 4000, 10086)
        b.writer.write(V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", len(block)) + block)
        await b.expect(WELCOME)
        assert srv.hub.per_address == {"203.0.113.7": 1, "198.51.100.9": 1}
        c = await Caller.dial(srv.tcp_port)  # the first caller again: over their own limit of 1
        callers.append(c)
        c.writer.write(v1("203.0.113.7", 51300))
        assert "线路繁忙" in await c.closed()
        a.close()
        assert await wait_until(lambda: "203.0.113.7" not in srv.hub.per_address)
    finally:
        for x in callers:
            x.close()
        await srv.shutdown()


async def test_no_header_or_a_slow_one_is_refused_and_counted() -> None:
    srv = await start_server(proxy_protocol=True)
    try:
        direct = await Caller.dial(srv.tcp_port)
        direct.writer.write(b"1\r\n")  # a caller who bypassed the balancer
        assert WELCOME not in await direct.closed()
        direct.close()
        text = await http_get(srv.admin_port, "/metrics")
        assert metric(text, "hotline_refused_total", reason="proxy_header") == 1
        assert not srv.hub.sessions and not srv.hub.per_address
        silent = await Caller.dial(srv.tcp_port)  # says nothing: closed after PROXY_TIMEOUT
        assert await silent.closed(timeout=10) == ""
        silent.close()
    finally:
        await srv.shutdown()


async def test_only_the_balancer_may_send_headers() -> None:
    srv = await start_server(proxy_protocol=True, proxy_from="10.9.9.9")
    try:
        c = await Caller.dial(srv.tcp_port)
        c.writer.write(v1("203.0.113.7", 5))
        assert "线路繁忙" in await c.closed()
        c.close()
        text = await http_get(srv.admin_port, "/metrics")
        assert metric(text, "hotline_refused_total", reason="proxy_untrusted") == 1
    finally:
        await srv.shutdown()
