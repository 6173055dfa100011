"""A reply table for the mixed workload: the baselines say, for each line of the script in turn, the
bytes hotline said for it (recorded from a real hotline process by benchmarks/mixed.py). Not a menu
engine: the ceiling a menu engine is measured against."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.baselines.menu2 import INVALID


class Table:
    """State = the index of the next expected line; any other line gets the invalid line."""

    def __init__(self, path: str) -> None:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        self.greeting: bytes = data["greeting"].encode()
        self.lines = [line.encode() for line, _ in data["steps"]]
        self.replies = [reply.encode() for _, reply in data["steps"]]

    def answer(self, state: int, line: bytes) -> tuple[int, bytes]:
        if line.strip() == self.lines[state]:
            return (state + 1) % len(self.lines), self.replies[state]
        return state, INVALID
