"""Safe YAML with a position for every key and value.

PyYAML's safe composer builds the node tree (with line and column marks); we construct plain Python
values from it ourselves so that we can (1) remember where each value and key came from, as a path
tuple -> (line, col), both 1-based, (2) keep mapping keys as the text the operator typed (`1:` is the
key "1", not the integer 1), (3) report duplicate keys, which PyYAML silently overwrites, and
(4) bound the work: aliases are expanded by reference, so "billion laughs" files are stopped by a
node budget and a depth limit instead of eating memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

try:  # the C composer is much faster; both give the same marks
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader

MAX_NODES = 200_000
_COLLECTION_TAGS = frozenset({"tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"})
MAX_DEPTH = 64

Path = tuple[str | int, ...]
Pos = tuple[int, int]


class YamlError(ValueError):
    """The text is not YAML we accept; `pos` is 1-based (line, col)."""

    def __init__(self, message: str, pos: Pos) -> None:
        super().__init__(message)
        self.pos = pos


@dataclass
class Document:
    """Plain data plus where each part of it was written."""

    data: Any
    values: dict[Path, Pos] = field(default_factory=dict)
    keys: dict[Path, Pos] = field(default_factory=dict)
    duplicates: list[tuple[Path, Pos]] = field(default_factory=list)
    # Unquoted text followed by a comment on the same line: path -> where the comment starts.
    # In a phone menu "按 # 返回" is text, but YAML reads " # 返回" as a comment and cuts it.
    comments_after: dict[Path, Pos] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list, repr=False)  # the text, for char_at

    def char_at(self, path: Path, value: str, index: int) -> Pos | None:
        """Where the `index`-th character of the text `value` at `path` was written, when the file
        shows it one for one: a plain scalar on one line, or a quoted one up to the first escape."""
        start = self.values.get(tuple(path))
        if start is None or not 0 <= index < len(value) or start[0] > len(self.lines):
            return None
        line, col = start
        raw = self.lines[line - 1][col - 1 :]
        quote = raw[:1]
        if quote not in ("'", '"'):
            return (line, col + index) if raw.startswith(value) else None
        j, k = 1, 0  # j: in the raw text, after the opening quote; k: in the value
        while j < len(raw):
            if quote == "'" and raw.startswith("''", j):
                step = 2
            elif raw[j] == quote or (quote == '"' and raw[j] == "\\"):
                return None  # the closing quote, or an escape: no longer one for one
            else:
                step = 1
            if k == index:
                return (line, col + j)
            j += step
            k += 1
        return None  # the value goes on on the next line

    def where(self, path: Path, *, key: bool = False) -> Pos:
        """Position of `path` (its key if `key`), else of the nearest enclosing node that has one."""
        p = tuple(path)
        if key and p in self.keys:
            return self.keys[p]
        while p:
            if p in self.values:
                return self.values[p]
            p = p[:-1]
        return self.values.get((), (1, 1))


def _pos(node: yaml.Node) -> Pos:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


_HINTS = {
    "found undefined alias": "a value starting with '*' must be quoted, e.g. \"*\": back",
    "expected alphabetic or numeric character": "a value starting with '*' or '&' must be quoted",
    "found character '\\t'": "YAML does not allow tabs for indentation; use spaces",
    "mapping values are not allowed": "put text that contains ': ' or ends with ':' in quotes",
}


def load(text: str, *, raw_scalars: bool = False) -> Document:
    """Parse one YAML document; raise YamlError for syntax errors and over-budget aliases.

    With `raw_scalars`, scalars stay the text that was written (`86.50` stays "86.50", not 86.5),
    as data tables shown to callers want; `~`, `null` and empty values are None.
    """
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        hint = next((h for k, h in _HINTS.items() if k in problem), None)
        raise YamlError(f"YAML syntax: {problem}" + (f" ({hint})" if hint else ""), pos) from None
    except yaml.YAMLError as exc:
        raise YamlError(f"YAML syntax: {exc}", (1, 1)) from None
    doc = Document(data=None)
    if root is None:
        return doc
    doc.lines = text.splitlines()
    builder = _Builder(doc, raw_scalars, doc.lines)
    doc.data = builder.build(root, (), 0)
    return doc


class _Builder:
    def __init__(self, doc: Document, raw_scalars: bool, lines: list[str]) -> None:
        self.doc = doc
        self.raw = raw_scalars
        self.lines = lines
        self.budget = MAX_NODES
        self.scalars = yaml.constructor.SafeConstructor()

    def build(self, node: yaml.Node, path: Path, depth: int) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise YamlError(
                f"the file expands to more than {MAX_NODES} values (aliases used too many times)", _pos(node)
            )
        if depth > MAX_DEPTH:
            raise YamlError(f"values are nested more than {MAX_DEPTH} levels deep", _pos(node))
        self.doc.values.setdefault(path, _pos(node))
        if isinstance(node, yaml.ScalarNode):
            if not node.style and node.end_mark.line < len(
                self.lines
            ):  # plain: None, or "" from the C parser
                line = self.lines[node.end_mark.line]
                rest = line[node.end_mark.column :]
                if rest.lstrip().startswith("#"):
                    col = node.end_mark.column + len(rest) - len(rest.lstrip())
                    self.doc.comments_after[path] = (node.end_mark.line + 1, col + 1)
            if self.raw:
                null = node.tag == "tag:yaml.org,2002:null"
                return None if null else str(node.value)
            try:
                return self.scalars.construct_object(node)
            except yaml.constructor.ConstructorError as exc:
                raise YamlError(f"YAML value: {exc.problem}", _pos(node)) from None
            except ValueError:  # a date that is no day (2026-10-32): the text, for the model to refuse
                return str(node.value)
        if isinstance(node, yaml.SequenceNode | yaml.MappingNode) and node.tag not in _COLLECTION_TAGS:
            raise YamlError(f"YAML value: the tag {node.tag!r} is not allowed here", _pos(node))
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        raise YamlError("unsupported YAML node", _pos(node))  # pragma: no cover

    def _mapping(self, node: yaml.MappingNode, path: Path, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        merged: list[dict[str, Any]] = []
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                value = self.build(value_node, path, depth + 1)
                items = value if isinstance(value, list) else [value]
                if not all(isinstance(m, dict) for m in items):
                    raise YamlError("'<<' must merge a mapping or a list of mappings", _pos(value_node))
                merged.extend(items)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlError("a mapping key must be plain text", _pos(key_node))
            key = str(key_node.value)
            sub = (*path, key)
            if key in out:
                self.doc.duplicates.append((sub, _pos(key_node)))
            self.doc.keys[sub] = _pos(key_node)
            self.doc.values[sub] = _pos(value_node)
            out[key] = self.build(value_node, sub, depth + 1)
        for m in merged:
            for k, v in m.items():
                out.setdefault(k, v)
        return out
