"""robot.yaml -> validated knowledge base -> Matcher, with every problem as path:line:col."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic

from app.robot.matcher import Matcher, by_sound, normalize
from app.robot.schema import Intent, RobotFile
from app.yamlfile import HasProblems, Problem, Reporter, read_yaml

MAX_FILE_BYTES = 4 << 20
MAX_REPLY_BYTES = 1200  # one reply must fit one datagram that no network fragments


@dataclass
class RobotLoadResult(HasProblems):
    """The matcher (None when there were errors) and every problem found."""

    matcher: Matcher | None
    problems: list[Problem] = field(default_factory=list)


def reply_size(answer: str, intent: str | None) -> int:
    """Bytes of the largest reply an answer can produce: the JSON form, with a generous id."""
    reply = {"id": "x" * 64, "answer": answer, "intent": intent, "confidence": 0.999}
    return len(json.dumps(reply, ensure_ascii=False).encode())


class _Loader(Reporter):
    def __init__(self, path: Path, label: str) -> None:
        super().__init__(label)
        self.path = path

    def describe(self, path: tuple[str | int, ...]) -> str:
        return ".".join(str(p) for p in path if not isinstance(p, int)) or "value"

    def run(self) -> RobotLoadResult:
        doc = read_yaml(self.path, self.label, MAX_FILE_BYTES, self.problems)
        if doc is None:
            return RobotLoadResult(None, self.problems)
        self.doc = doc
        data = doc.data
        if not isinstance(data, dict):
            self.error((), "the robot file must be a mapping with version and intents")
            return RobotLoadResult(None, self.problems)
        raw_intents = data.get("intents")
        top = {k: v for k, v in data.items() if k != "intents"}
        try:
            base = RobotFile.model_validate(top)
        except pydantic.ValidationError as exc:
            self.pydantic_errors(exc, RobotFile, (), "the robot file")
            base = None
        intents = self._intents(raw_intents)
        if base is not None:
            self._sizes(base, intents)
        self.problems.sort(key=lambda p: (p.line, p.col))
        if base is None or self.has_errors:
            return RobotLoadResult(None, self.problems)
        return RobotLoadResult(Matcher(base.model_copy(update={"intents": intents})), self.problems)

    def _intents(self, raw: Any) -> list[Intent]:
        if raw is None:
            self.warning((), "there are no intents: every question gets the fallback")
            return []
        if not isinstance(raw, list):
            self.error(("intents",), "intents should be a list of intents (lines starting with '- id:')")
            return []
        intents: list[Intent] = []
        ids: dict[str, int] = {}
        owners: dict[str, str] = {}
        for n, item in enumerate(raw):
            here = ("intents", n)
            name = item.get("id") if isinstance(item, dict) else None
            who = f"intent '{name}'" if isinstance(name, str) else f"intent {n + 1}"
            try:
                intent = Intent.model_validate(item)
            except pydantic.ValidationError as exc:
                self.pydantic_errors(exc, Intent, here, who)
                continue
            if intent.id in ids:
                self.error(
                    (*here, "id"), f"intent id '{intent.id}' is already used by intent {ids[intent.id] + 1}"
                )
                continue
            ids[intent.id] = n
            for k, q in enumerate(intent.questions):
                key = by_sound(normalize(q))  # the same question, however it is spaced or typed
                if not key:
                    self.error((*here, "questions", k), f"{who} question {q!r} has no letters or digits")
                elif key in owners and owners[key] != intent.id:
                    self.warning(
                        (*here, "questions", k),
                        f"{who} question {q!r} is also a question of intent '{owners[key]}'; "
                        "they will compete",
                    )
                else:
                    owners.setdefault(key, intent.id)
            intents.append(intent)
        return intents

    def _sizes(self, base: RobotFile, intents: list[Intent]) -> None:
        for n, intent in enumerate(intents):
            size = reply_size(intent.answer, intent.id)
            if size > MAX_REPLY_BYTES:
                self.error(
                    ("intents", n, "answer"),
                    f"intent '{intent.id}' answer makes a {size}-byte reply; replies must fit "
                    f"{MAX_REPLY_BYTES} bytes, so shorten it by {size - MAX_REPLY_BYTES} bytes",
                )
        if reply_size(base.fallback, None) > MAX_REPLY_BYTES:
            self.error(("fallback",), f"the fallback makes a reply over {MAX_REPLY_BYTES} bytes; shorten it")
        for token in ("{a}", "{b}"):
            if token not in base.clarify:
                self.error(("clarify",), f"clarify must contain {token}, where the two intents' titles go")
        if base.threshold and base.ambiguity >= 1:
            self.warning(("ambiguity",), "ambiguity 1 means every answer becomes a clarifying question")


def load_robot(path: str | Path) -> RobotLoadResult:
    """Load `path` (a robot.yaml, or a config folder holding one)."""
    p = Path(path)
    if p.is_dir():
        p = p / "robot.yaml"
    return _Loader(p, str(p)).run()
