"""Problems in YAML files, reported as `path:line:col: error|warning: message`.

Shared by every loader (menu, robot): reading a file within size limits, parsing it with positions,
"did you mean" suggestions, and turning pydantic's validation errors into one-sentence messages at
the line and column of the offending key or value.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from app.yamlfile import yamlpos

YPath = tuple[str | int, ...]


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a file, printed as `path:line:col: error|warning: message`."""

    file: str
    line: int
    col: int
    severity: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.severity}: {self.message}"


def suggest(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def read_yaml(
    path: Path, label: str, limit: int, problems: list[Problem], *, raw_scalars: bool = False
) -> yamlpos.Document | None:
    """Read and parse one YAML file, adding its problems; None if it cannot be used at all."""
    try:
        size = path.stat().st_size
        if size > limit:
            problems.append(Problem(label, 1, 1, "error", f"the file is {size} bytes; the limit is {limit}"))
            return None
        raw = path.read_bytes()
    except OSError as exc:
        problems.append(Problem(label, 1, 1, "error", f"cannot read the file: {exc.strerror or exc}"))
        return None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        problems.append(Problem(label, line, col, "error", "the file is not UTF-8 text"))
        return None
    try:
        doc = yamlpos.load(text, raw_scalars=raw_scalars)
    except yamlpos.YamlError as exc:
        problems.append(Problem(label, exc.pos[0], exc.pos[1], "error", str(exc)))
        return None
    for dup_path, (line, col) in doc.duplicates:
        problems.append(
            Problem(label, line, col, "error", f"key '{dup_path[-1]}' appears twice in the same mapping")
        )
    return doc


def _models_in(annotation: Any) -> list[type[pydantic.BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _fields_at(model: type[pydantic.BaseModel], loc: YPath) -> list[str]:
    """The keys allowed in the mapping at `loc` (relative to `model`)."""
    current = model
    keyed = False  # the last field was a mapping of models: the next part is one of its keys
    for part in loc:
        if isinstance(part, int) or keyed:
            keyed = False
            continue
        info = current.model_fields.get(part)
        inner = _models_in(info.annotation) if info else []
        if not inner:
            return []
        current = inner[0]
        keyed = info is not None and _is_mapping(info.annotation)
    return list(current.model_fields)


def _is_mapping(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is dict:
        return True
    return any(_is_mapping(arg) for arg in typing.get_args(annotation)) if origin is not None else False


_KINDS = {
    "string_type": "should be text",
    "int_type": "should be a whole number",
    "int_parsing": "should be a whole number",
    "bool_type": "should be true or false",
    "dict_type": "should be a mapping (key: value lines)",
    "list_type": "should be a list",
    "model_type": "should be a mapping (key: value lines)",
    "model_attributes_type": "should be a mapping (key: value lines)",
}


class HasProblems:
    """For load results: `errors` and `warnings`, picked out of `problems`."""

    problems: list[Problem]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]


class Reporter:
    """Collects problems for one file; `describe` words a path inside it (loaders may refine it)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.problems: list[Problem] = []
        self.doc = yamlpos.Document(data=None)

    def describe(self, path: YPath) -> str:
        return ".".join(str(p) for p in path)

    @property
    def has_errors(self) -> bool:
        return any(p.severity == "error" for p in self.problems)

    def report(
        self,
        path: YPath,
        severity: str,
        message: str,
        *,
        key: bool = False,
        doc: Any = None,
        label: str | None = None,
        at: tuple[int, int] | None = None,
    ) -> None:
        line, col = at or (doc or self.doc).where(path, key=key)
        self.problems.append(Problem(label or self.label, line, col, severity, message))

    def error(self, path: YPath, message: str, *, key: bool = False) -> None:
        self.report(path, "error", message, key=key)

    def warning(self, path: YPath, message: str, *, key: bool = False) -> None:
        self.report(path, "warning", message, key=key)

    def pydantic_errors(
        self, exc: pydantic.ValidationError, model: type[pydantic.BaseModel], prefix: YPath, who: str
    ) -> None:
        for err in exc.errors(include_url=False):
            loc: YPath = tuple(err["loc"])
            kind = err["type"]
            here = (*prefix, *loc)
            if kind == "extra_forbidden":
                key = str(loc[-1])
                where = f"{who}, in {self.describe(loc[:-1])}," if len(loc) > 1 else who
                self.error(
                    here,
                    f"{where} has an unknown key '{key}'" + suggest(key, _fields_at(model, loc[:-1])),
                    key=True,
                )
            elif kind == "missing":
                self.error(
                    (*prefix, *loc[:-1]),
                    f"{who} needs '{loc[-1]}'" + (f" in {self.describe(loc[:-1])}" if len(loc) > 1 else ""),
                )
            elif kind == "literal_error" and loc == ("version",):
                self.error(here, "version must be 1 (the only format version so far)")
            elif kind == "literal_error" and loc == ("type",):
                continue  # the type was chosen by us; cannot happen
            else:
                msg = _KINDS.get(kind) or str(err["msg"]).removeprefix("Value error, ").removeprefix("Input ")
                msg = msg[:1].lower() + msg[1:]
                self.error(here, f"{who}: {self.describe(loc)} {msg}")
