"""The PROXY protocol header (HAProxy's, versions 1 and 2), without I/O: who the caller really is when a
TCP load balancer (HAProxy `send-proxy` / `send-proxy-v2`, nginx `proxy_protocol on`) stands between
callers and hotline. Spec: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt

`parse(data)` looks at the first bytes of a connection and returns one of:
- `Incomplete()`: not enough bytes yet (read more; a header is at most MAX_HEADER bytes);
- `Header(address, port, length)`: the caller's address and port (None for v1 `UNKNOWN` and v2
  `LOCAL`: the balancer's own health check, keep the peer's), and how many bytes the header took;
- `Invalid(reason)`: not a PROXY header: the connection is refused.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Final

V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX: Final = 107  # "PROXY TCP6 <39> <39> <5> <5>\r\n"
MAX_HEADER: Final = 16 + 65535  # v2: 16 bytes, then a 16-bit length
_V2_FAMILIES: Final = {0x11: (4, 12), 0x21: (16, 36)}  # TCP over IPv4 / IPv6: address size, block size


@dataclass(frozen=True, slots=True)
class Header:
    address: str | None
    port: int | None
    length: int


@dataclass(frozen=True, slots=True)
class Incomplete:
    pass


@dataclass(frozen=True, slots=True)
class Invalid:
    reason: str


def parse(data: bytes) -> Header | Incomplete | Invalid:
    if data[:12] == V2_SIGNATURE[: len(data[:12])] and len(data) < 12:
        return Incomplete()  # could still be either: both start differently, so wait for 12 bytes
    if data.startswith(V2_SIGNATURE):
        return _v2(data)
    if data.startswith(b"PROXY "[: len(data)]) and len(data) < 6:
        return Incomplete()
    if data.startswith(b"PROXY "):
        return _v1(data)
    return Invalid("no PROXY header")


def _v1(data: bytes) -> Header | Incomplete | Invalid:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        return Incomplete() if len(data) < V1_MAX else Invalid("PROXY v1 line too long")
    parts = data[:end].split(b" ")
    if len(parts) >= 2 and parts[1] == b"UNKNOWN":
        return Header(None, None, end + 2)
    if len(parts) != 6 or parts[1] not in (b"TCP4", b"TCP6"):
        return Invalid("malformed PROXY v1 line")
    try:
        source = ipaddress.ip_address(parts[2].decode("ascii"))
        port = int(parts[4])
    except (ValueError, UnicodeDecodeError):
        return Invalid("malformed PROXY v1 address")
    if (source.version == 4) != (parts[1] == b"TCP4") or not 0 < port < 65536 or not parts[4].isdigit():
        return Invalid("malformed PROXY v1 address")
    return Header(str(source), port, end + 2)


def _v2(data: bytes) -> Header | Incomplete | Invalid:
    if len(data) < 16:
        return Incomplete()
    version_command, family, size = data[12], data[13], struct.unpack("!H", data[14:16])[0]
    if version_command >> 4 != 2:
        return Invalid("PROXY v2: unknown version")
    if len(data) < 16 + size:
        return Incomplete()
    command = version_command & 0x0F
    if command == 0:  # LOCAL: the balancer itself (a health check)
        return Header(None, None, 16 + size)
    if command != 1:
        return Invalid("PROXY v2: unknown command")
    known = _V2_FAMILIES.get(family)
    if known is None:  # UDP, UNIX sockets, UNSPEC: no caller address to take
        return Header(None, None, 16 + size)
    width, block = known
    if size < block:
        return Invalid("PROXY v2: address block too short")
    raw = data[16 : 16 + width]
    port = struct.unpack("!H", data[16 + 2 * width : 18 + 2 * width])[0]
    return Header(str(ipaddress.ip_address(raw)), port, 16 + size)
