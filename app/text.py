"""Text from outside, made safe to show a person: the one table of characters that never reach an
agent's terminal or console, a transcript or the CLI (README.md, "The doors").

A caller can type any code point. Some of them act on the terminal or page that shows them rather
than being shown: C0 controls (ESC starts a terminal sequence), DEL, C1 controls (U+009B is CSI on
its own, U+0085 is a newline to some terminals and to `str.splitlines`), and the bidirectional
overrides and isolates, which turn the rest of a line around so that what an agent reads is not
what the caller typed ("Trojan Source"). UNSAFE holds them all; tab is not among them: it moves
the cursor forward and nothing else, and callers paste it. U+2028 and U+2029 are there too:
they are line ends to `str.splitlines` and to JavaScript, and a caller's line must stay one line.

Caller lines are cleaned once, where they enter (the line discipline, app/net/telnet.py); text that
was stored by an older hotline is cleaned again where it is read back (app/records/database.py), and
text from files on one protocol line by app.desk.commands.clean. Every character of UNSAFE is
"not printable" to `str.isprintable` (categories Cc, Cf, Zl, Zp), so text that is printable, nearly
all of it, is returned as it is after one scan in C.

A leaf module: it imports nothing of the app.
"""

from __future__ import annotations

import re
from typing import Final

C0: Final = frozenset(range(0x20)) - {0x09}  # tab aside
DEL: Final = frozenset({0x7F})
C1: Final = frozenset(range(0x80, 0xA0))
BIDI: Final = frozenset(
    {
        0x061C,  # ARABIC LETTER MARK
        0x200E,  # LEFT-TO-RIGHT MARK
        0x200F,  # RIGHT-TO-LEFT MARK
        *range(0x202A, 0x202F),  # LRE, RLE, PDF, LRO, RLO: embeddings and overrides
        *range(0x2066, 0x206A),  # LRI, RLI, FSI, PDI: isolates
    }
)
LINE_SEPARATORS: Final = frozenset({0x2028, 0x2029})
UNSAFE: Final = C0 | DEL | C1 | BIDI | LINE_SEPARATORS


def _one_of(points: frozenset[int]) -> re.Pattern[str]:
    return re.compile("[" + "".join(re.escape(chr(c)) for c in sorted(points)) + "]")


# UNSAFE as a character class: removing with `sub` costs a quarter of `str.translate` with a dict
# on non-ASCII text (which looks every character up), and little when there is nothing to remove
UNSAFE_RE: Final = _one_of(UNSAFE)
_UNSAFE_BUT_NEWLINE_RE: Final = _one_of(UNSAFE - {0x0A})


def strip_unsafe(text: str) -> str:
    """`text` without the characters of UNSAFE: one line, safe to show (newlines go too)."""
    return text if text.isprintable() else UNSAFE_RE.sub("", text)


def strip_unsafe_lines(text: str) -> str:
    """`text` of one or more lines (a transcript's system line is a whole screen) without the
    characters of UNSAFE but its newlines."""
    return text if text.isprintable() else _UNSAFE_BUT_NEWLINE_RE.sub("", text)
