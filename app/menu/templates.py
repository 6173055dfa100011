"""Prompt templates: `{name}` and `{name.field}` only, parsed once at load.

Caller input is only ever substituted as data: a rendered value is never parsed again, and there is
no attribute access, indexing, conversion or format spec. `{{` and `}}` are literal braces.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_IDENT = r"[A-Za-z_\u00a0-\uffff][A-Za-z0-9_\u00a0-\uffff]*"
_FIELD = re.compile(rf"({_IDENT})(?:\.({_IDENT}))?")
BUILTINS: Mapping[str, frozenset[str]] = {
    "session": frozenset({"id"}),
    "caller": frozenset({"address"}),
    "now": frozenset({"date", "time"}),
}


class TemplateError(ValueError):
    """A template that cannot be parsed; `offset` is the character index in the template text."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True, slots=True)
class Ref:
    """One `{name}` or `{name.field}` in a template."""

    name: str
    field: str | None
    offset: int

    @property
    def text(self) -> str:
        return self.name if self.field is None else f"{self.name}.{self.field}"


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template: literal strings and references, in order."""

    source: str
    parts: tuple[str | Ref, ...]

    @property
    def is_static(self) -> bool:
        return all(type(p) is str for p in self.parts)

    @property
    def refs(self) -> tuple[Ref, ...]:
        return tuple(p for p in self.parts if isinstance(p, Ref))

    def render(self, lookup: Callable[[Ref], str]) -> str:
        parts = self.parts
        if len(parts) == 1 and type(parts[0]) is str:
            return parts[0]
        # a list, not a generator, for join: it is built in one go (this runs for every rendered line)
        return "".join([p if type(p) is str else lookup(p) for p in parts])  # type: ignore[arg-type]


def parse(source: str) -> Template:
    """Parse `source`, raising TemplateError at the first malformed brace."""
    parts: list[str | Ref] = []
    literal: list[str] = []
    i, n = 0, len(source)
    while i < n:
        ch = source[i]
        if ch == "{":
            if source.startswith("{{", i):
                literal.append("{")
                i += 2
                continue
            end = source.find("}", i + 1)
            if end < 0:
                raise TemplateError("'{' is not closed; write '{{' for a literal brace", i)
            inner = source[i + 1 : end].strip()
            m = _FIELD.fullmatch(inner)
            if m is None:
                raise TemplateError(
                    f"'{{{source[i + 1 : end]}}}' is not a variable; templates allow only "
                    "{name} and {name.field}",
                    i,
                )
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(Ref(m.group(1), m.group(2), i))
            i = end + 1
        elif ch == "}":
            if source.startswith("}}", i):
                literal.append("}")
                i += 2
                continue
            raise TemplateError("'}' has no matching '{'; write '}}' for a literal brace", i)
        else:
            j = i
            while j < n and source[j] not in "{}":
                j += 1
            literal.append(source[i:j])
            i = j
    if literal or not parts:
        parts.append("".join(literal))
    return Template(source, tuple(parts))


def value_text(value: Any) -> str:
    """How a saved value is shown in a prompt."""
    if type(value) is str:  # the common case: what a caller typed, a table's text
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, float) and value.is_integer():
        return f"{value:.2f}" if abs(value) < 1e15 else str(value)
    return str(value)
