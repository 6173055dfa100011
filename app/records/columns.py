"""Text tables for the records' commands (`hotline tickets|calls|report`): columns padded by display
width, where a Chinese character takes two."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import TextIO


def width(text: str) -> int:
    """Display width: 2 for a wide or full-width character, else 1."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO) -> None:
    """Columns padded by display width (a Chinese character takes two)."""
    widths = [max([width(h)] + [width(r[i]) for r in rows]) for i, h in enumerate(headers)]
    for row in [list(headers), *rows]:
        cells = [c + " " * (w - width(c)) for c, w in zip(row, widths, strict=True)]
        out.write("  ".join(cells).rstrip() + "\n")
