"""The line discipline: raw bytes from telnet or nc in, complete lines (and a few signals) out.

How this works: most input (nc, or telnet in line mode) holds no telnet command, backspace or control
key, so `feed` first looks for any of those with one regular-expression scan; without them it only
folds CR LF / CR NUL / lone CR into LF and splits (all in C). Otherwise a byte-at-a-time state machine
handles IAC sequences (RFC 854), option refusal (each option refused once, never re-answered, so no
negotiation loops: RFC 1143), DO TIMING-MARK (RFC 860), backspace / DEL / IAC EC / IAC EL, escape
sequences from arrow keys, and Ctrl-C / Ctrl-D / IAC IP. A line longer than `max_line` bytes is
reported once as OVERFLOW and the rest of it is dropped up to the next newline without being kept.

Lines are decoded with the listener's encoding; undecodable bytes become U+FFFD and are counted in
`replaced`, never an error. What no person should be shown is removed from lines (app.text.UNSAFE:
C0 controls but tab, DEL, C1 controls, bidirectional overrides): ASCII controls as bytes before
decoding, the rest from the decoded text of a line that is not ASCII and not printable (both tests
run in C; the idle shortcut below takes only printable text, which holds none of them).
"""

from __future__ import annotations

import re
from typing import Final, cast

from app.text import UNSAFE, UNSAFE_RE

IAC, DONT, DO, WONT, WILL, SB, GA, EL, EC, AYT, AO, IP, BRK, DM, NOP, SE = (
    255,
    254,
    253,
    252,
    251,
    250,
    249,
    248,
    247,
    246,
    245,
    244,
    243,
    242,
    241,
    240,
)
TIMING_MARK: Final = 6
REPLY_MAX: Final = 4096


class Signal(str):
    """A non-line item from the discipline (a str subclass only so it can share a list with lines).

    Every signal's text starts with NUL, so it never equals a line (lines hold no control
    characters) nor a key of the engine's direct moves (printable only): the session hands any
    item to `Session.press` before asking which kind it is.
    """

    __slots__ = ()


INTERRUPT: Final = Signal("\0interrupt")  # Ctrl-C / Ctrl-D on an empty line, IAC IP: hang up politely
OVERFLOW: Final = Signal("\0overflow")  # a line over the limit was dropped

# b"1\r\n" -> ["1"], b"#\r\n" -> ["#"], "２\r\n" in UTF-8 -> ["２"]: what `feed` returns for a short
# line typed alone while the discipline is `idle`, one table per encoding (`keypresses(encoding)`);
# callers may look a read up there themselves. Bounded: KEYS_KEPT reads per encoding.
KEYPRESSES: dict[str, dict[bytes, list[str]]] = {}
KEYS_KEPT: Final = 4096


def keypresses(encoding: str) -> dict[bytes, list[str]]:
    """The table of short reads of `encoding` (shared by every discipline and session using it)."""
    return KEYPRESSES.setdefault(encoding, {})


def whole_line(data: bytes, encoding: str, max_line: int) -> list[str] | None:
    """What a discipline between lines (`idle`) makes of `data` when it is one whole line of plain
    text, the usual read: a key or a number pressed alone ("1\r\n", "#\r\n", "13800138000\n"), or
    printable text; None for anything else (a partial line, telnet commands, editing keys, controls,
    undecodable bytes: the discipline's own work). Leaves nothing to remember: a caller's session
    keeps no discipline until a read needs one."""
    keys = keypresses(encoding)  # not a slot: idle callers are many, encodings one or two
    hit = keys.get(data)
    if hit is not None:
        return hit
    if data[-1:] != b"\n":
        return None
    body = data[:-2] if data[-2:-1] == b"\r" else data[:-1]
    if len(body) > max_line:
        return None
    if body.isalnum():
        lines = [body.decode("ascii")]
    else:
        try:
            text = body.decode(encoding)
        except UnicodeDecodeError:
            return None  # the discipline counts and replaces it
        if not (text.isprintable() and text):
            return None
        lines = [text]  # (no telnet command, editing key or control: still idle after)
    if len(data) <= 8 and len(keys) < KEYS_KEPT:
        keys[data] = lines  # shared: callers only iterate over what is returned
    return lines


_SLOW = re.compile(rb"[\xff\x08\x7f\x03\x04\x1b]")
_CONTROL = bytes(sorted(c for c in UNSAFE if c < 0x80))  # the ASCII ones, removed as bytes
_strip_unsafe = UNSAFE_RE.sub
_DATA, _IAC, _OPT, _SB, _SB_IAC, _ESC, _CSI, _SS3 = range(8)


class LineDiscipline:
    """Turns a byte stream into lines; `reply` holds telnet answers to send back to the client."""

    __slots__ = (
        "_after_cr",
        "_buf",
        "_cmd",
        "_discard",
        "_refused",
        "_state",
        "encoding",
        "idle",
        "max_line",
        "replaced",
        "reply",
    )

    def __init__(self, *, max_line: int = 1024, encoding: str = "utf-8") -> None:
        self.max_line = max_line
        self.encoding = encoding
        self.replaced = 0  # lines that held undecodable bytes
        self.reply: bytes | bytearray = b""  # telnet answers to send (rare: a bytearray only when needed)
        self._buf: bytes | bytearray = b""  # the line being typed; a bytearray once editing keys arrive
        self._after_cr = False
        self._discard = False
        self._state = _DATA
        self._cmd = 0
        self._refused: set[int] | None = None
        self.idle = True  # between lines, in plain data: the keypress fast path applies

    def feed(self, data: bytes) -> list[str]:
        """Consume `data`; return the complete lines (str) and Signals, in order (do not modify the list)."""
        if self.idle:
            lines = whole_line(data, self.encoding, self.max_line)
            if lines is not None:
                return lines
        lines = self._fast(data) if self._state == _DATA and _SLOW.search(data) is None else self._slow(data)
        self.idle = self._state == _DATA and not self._buf and not self._after_cr and not self._discard
        return lines

    @property
    def spent(self) -> bool:
        """Between lines with nothing to remember (no refused option, no undecodable line counted, no
        reply to send): a fresh discipline would do the same from here (see whole_line)."""
        return self.idle and not self.replaced and self._refused is None and not self.reply

    def flush(self) -> list[str]:
        """End of input: an unterminated last line still counts."""
        lines = [self._decode(bytes(self._buf))] if self._buf and not self._discard else []
        self._buf = b""
        self._discard = False
        self.idle = self._state == _DATA and not self._after_cr
        return lines

    # -- the common case: no telnet commands, no editing keys --------------------------------

    def _fast(self, data: bytes) -> list[str]:
        if self._after_cr:
            self._after_cr = False
            if data[:1] in (b"\n", b"\0"):
                data = data[1:]
        if b"\r" in data:
            self._after_cr = data.endswith(b"\r")
            data = data.replace(b"\r\n", b"\n").replace(b"\r\0", b"\n").replace(b"\r", b"\n")
        if self._discard:
            i = data.find(b"\n")
            if i < 0:
                return []
            data = data[i + 1 :]
            self._discard = False
        parts = data.split(b"\n")
        tail = parts.pop()
        out: list[str] = []
        limit = self.max_line
        if parts:
            if self._buf:
                parts[0] = bytes(self._buf) + parts[0]
                self._buf = b""
            for part in parts:
                out.append(OVERFLOW if len(part) > limit else self._decode(part))
        if tail:
            if len(self._buf) + len(tail) > limit:
                self._buf = b""
                self._discard = True
                out.append(OVERFLOW)
            else:
                self._buf += tail
        return out

    def _decode(self, raw: bytes) -> str:
        raw = raw.translate(None, _CONTROL)
        try:
            text = raw.decode(self.encoding)
        except UnicodeDecodeError:
            self.replaced += 1
            text = raw.decode(self.encoding, "replace")
        if not text.isascii() and not text.isprintable():  # C1 controls, bidi marks (and CJK spaces, tabs)
            text = _strip_unsafe("", text)
        return text

    # -- everything else, one byte at a time ------------------------------------------------

    def _slow(self, data: bytes) -> list[str]:
        out: list[str] = []
        if type(self._buf) is bytes:
            self._buf = bytearray(self._buf)
        buf = cast(bytearray, self._buf)
        state = self._state
        for b in data:
            if state == _DATA:
                if self._after_cr:
                    self._after_cr = False
                    if b in (10, 0):
                        continue
                if b == IAC:
                    state = _IAC
                elif b in (10, 13):
                    self._after_cr = b == 13
                    self._end_line(out)
                elif b in (8, 127):
                    self._erase()
                elif b == 3:  # Ctrl-C: clears a line being typed, hangs up on an empty one
                    if buf or self._discard:
                        buf.clear()
                    else:
                        out.append(INTERRUPT)
                elif b == 4:  # Ctrl-D: end of input on an empty line, ignored otherwise
                    if not buf and not self._discard:
                        out.append(INTERRUPT)
                elif b == 27:
                    state = _ESC
                else:
                    self._append(b, out)
            elif state == _IAC:
                state = _DATA
                if b == IAC:
                    self._append(IAC, out)
                elif b in (WILL, WONT, DO, DONT):
                    self._cmd = b
                    state = _OPT
                elif b == SB:
                    state = _SB
                elif b == IP:
                    buf.clear()
                    out.append(INTERRUPT)
                elif b == EC:
                    self._erase()
                elif b == EL:
                    buf.clear()
                elif b == AYT:
                    self._answer(b"\r\n[yes]\r\n")
            elif state == _OPT:
                state = _DATA
                self._option(self._cmd, b)
            elif state == _SB:
                if b == IAC:
                    state = _SB_IAC
            elif state == _SB_IAC:
                state = _DATA if b == SE else _SB
            elif state == _ESC:  # ESC [ ... final byte (CSI); ESC O x (SS3); ESC x
                state = _CSI if b == 0x5B else _SS3 if b == 0x4F else _DATA
            elif state == _SS3 or 0x40 <= b <= 0x7E:
                state = _DATA
        self._state = state
        return out

    def _option(self, cmd: int, opt: int) -> None:
        if cmd == DO and opt == TIMING_MARK:
            self._answer(bytes((IAC, WILL, TIMING_MARK)))
            return
        if cmd in (WONT, DONT):
            return  # we never enable anything, so "no" needs no answer (RFC 1143)
        refused = self._refused
        if refused is None:
            refused = self._refused = set()
        key = opt | (cmd << 8)
        if key in refused:
            return
        refused.add(key)
        self._answer(bytes((IAC, WONT if cmd == DO else DONT, opt)))

    def _answer(self, data: bytes) -> None:
        """Queue a telnet answer; a flood of requests gets at most REPLY_MAX bytes of answers per read."""
        if len(self.reply) >= REPLY_MAX:
            return
        if type(self.reply) is bytes:
            self.reply = bytearray(self.reply)
        cast(bytearray, self.reply).extend(data)

    def _append(self, b: int, out: list[str]) -> None:
        if self._discard:
            return
        buf = cast(bytearray, self._buf)
        if len(buf) >= self.max_line:
            buf.clear()
            self._discard = True
            out.append(OVERFLOW)
            return
        buf.append(b)

    def _end_line(self, out: list[str]) -> None:
        if self._discard:
            self._discard = False
        else:
            out.append(self._decode(bytes(self._buf)))
        cast(bytearray, self._buf).clear()

    def _erase(self) -> None:
        buf = cast(bytearray, self._buf)
        if not buf:
            return
        if self.encoding.replace("-", "").replace("_", "").lower() == "utf8":
            while len(buf) > 1 and buf[-1] & 0xC0 == 0x80:
                buf.pop()
            buf.pop()
        else:
            text = buf.decode(self.encoding, "replace")[:-1]
            buf[:] = text.encode(self.encoding, "replace")


def encode_text(text: str, encoding: str) -> bytes:
    """Text for the caller: every line ends with CR LF; 0xFF is doubled so telnet shows it as data."""
    if "\n" in text:
        if "\r" in text:  # (a menu's texts have none: YAML reads line breaks as \n)
            text = text.replace("\r\n", "\n")
        text = text.replace("\n", "\r\n")
    data = (text + "\r\n").encode(encoding, "replace")
    if encoding != "utf-8" and b"\xff" in data:  # UTF-8 never has the byte 0xFF
        data = data.replace(b"\xff", b"\xff\xff")
    return data
