"""Checks of the menu as a whole, beyond what one node can tell: advice for the people who edit it.

- `message` (and other non-waiting) nodes that form a cycle: a caller who gets there never gets a
  chance to type and is cut off by the loop limit (an error);
- patterns that can never match, because an option or an earlier pattern always wins;
- template variables that are not set on every path to the node using them (a must-be-set
  dataflow over the graph: a variable is set on arrival at a node if it is set on every edge in),
  a lookup's source's url and body included;
- menu prompts that do not mention a key their options offer (opt out with `check_prompt_keys: false`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from app.menu import schema, templates

Report = Callable[[tuple[str | int, ...], str], None]
_PROBES = ("", "0", "1", "9", "12", "123456", "a", "Z", "#", "*", "hello world", "中文", "话费查询 1")


def message_cycles(models: dict[str, schema.Node], error: Report) -> None:
    """Report each cycle made only of nodes that do not wait (message, lookup, transfer), once.

    Iterative, so a file with thousands of chained messages cannot overflow the stack: nodes that
    lead nowhere inside the non-waiting part are peeled off; every node left is on or before a cycle.
    """
    moving = {n for n, m in models.items() if not isinstance(m, schema.WaitingNode)}
    edges = {n: sorted({t for _, t in models[n].targets() if t in moving}) for n in moving}
    remaining = set(moving)

    def peel() -> None:
        callers: dict[str, list[str]] = {n: [] for n in remaining}
        out = dict.fromkeys(remaining, 0)
        for n in remaining:
            for t in edges[n]:
                if t in remaining:
                    callers[t].append(n)
                    out[n] += 1
        todo = [n for n, k in out.items() if k == 0]
        while todo:
            n = todo.pop()
            remaining.discard(n)
            for c in callers[n]:
                out[c] -= 1
                if out[c] == 0:
                    todo.append(c)

    peel()
    while remaining:
        node = min(remaining)
        order: dict[str, int] = {}
        while node not in order:
            order[node] = len(order)
            node = next(t for t in edges[node] if t in remaining)
        cycle = [n for n, i in sorted(order.items(), key=lambda x: x[1]) if i >= order[node]]
        k = cycle.index(min(cycle))
        ordered = cycle[k:] + cycle[:k]
        error(
            ("nodes", ordered[0]),
            "nodes " + " -> ".join([*ordered, ordered[0]]) + " form a loop that never "
            "waits for input; a caller who gets there is cut off",
        )
        remaining.difference_update(cycle)
        peel()


def shadowed_patterns(models: dict[str, schema.Node], keys: dict[str, str], warn: Report) -> None:
    for name, model in models.items():
        if not isinstance(model, schema.MenuNode):
            continue
        options = {k.strip().casefold() for k in model.options}
        compiled: list[tuple[int, str, re.Pattern[str] | None]] = []
        for i, rule in enumerate(model.patterns):
            here = ("nodes", name, "patterns", i, "match")
            try:
                rx: re.Pattern[str] | None = re.compile(rule.match)
            except re.error:
                rx = None  # reported by the loader
            literal = _literal(rule.match)
            if literal is not None and literal.casefold() in options:
                warn(
                    here,
                    f"node '{name}' pattern {i + 1} can never match: option \"{literal}\" is tried first",
                )
            elif literal is not None and literal.casefold() in keys:
                warn(
                    here,
                    f"node '{name}' pattern {i + 1} can never match: global key '{literal}' is tried first",
                )
            for j, source, earlier in compiled:
                if source == rule.match:
                    warn(
                        here,
                        f"node '{name}' pattern {i + 1} can never match: it is the same as pattern {j + 1}",
                    )
                    break
                if earlier is not None and all(earlier.search(p) for p in _PROBES):
                    warn(
                        here,
                        f"node '{name}' pattern {i + 1} can never match: pattern {j + 1} matches everything",
                    )
                    break
            compiled.append((i, rule.match, rx))


def _literal(pattern: str) -> str | None:
    """The one string a pattern like '^1001$' or '1001' (anchored both ends) matches, else None."""
    m = re.fullmatch(r"\^?((?:[^\\^$.|?*+()\[\]{}]|\\[^A-Za-z0-9])*)\$?", pattern)
    if m is None or not (pattern.startswith("^") and pattern.endswith("$")):
        return None
    return re.sub(r"\\(.)", r"\1", m.group(1))


def unset_variables(
    models: dict[str, schema.Node],
    start: str,
    keys: dict[str, str],
    settings: schema.MenuSettings,
    warn: Report,
    asks: Mapping[str, frozenset[str]] | None = None,
) -> None:
    """Warn where a template uses a variable that some path to the node does not set; `asks`: the
    variables each source sends (name -> variables), checked at the lookups that ask it."""
    saved = {v for m in models.values() for v, _ in m.saves()}
    edges: dict[str, list[tuple[str, frozenset[str]]]] = {n: [] for n in models}  # target -> (source, gen)
    for name, model in models.items():
        for target, gen in _edges(model, keys, settings):
            if target in edges:
                edges[target].append((name, gen))
    everything = frozenset(saved)
    known: dict[str, frozenset[str]] = dict.fromkeys(models, everything)
    known[start] = frozenset()
    changed = True
    while changed:
        changed = False
        for name in models:
            if name == start:
                continue
            incoming = [known[src] | gen for src, gen in edges[name]]
            value = frozenset.intersection(*incoming) if incoming else everything
            if value != known[name]:
                known[name] = value
                changed = True
    for name, model in models.items():
        for path, text in model.templates():
            if path == ("callback", "number"):
                continue  # empty on some paths is the point: then the callback asks for the number
            try:
                refs = templates.parse(text).refs
            except templates.TemplateError:
                continue
            for ref in refs:
                if ref.name in saved and ref.name not in known[name]:
                    via = [src for src, gen in edges[name] if ref.name not in known[src] | gen]
                    hint = f" (not when coming from '{via[0]}')" if via else ""
                    warn(
                        ("nodes", name, *path),
                        f"node '{name}' {path[-1]} uses '{{{ref.text}}}', which is not "
                        f"set on every path to this node{hint}; it would show as nothing",
                    )
        for path, source in model.sources():
            for var in sorted((asks or {}).get(source, frozenset()) & saved - known[name]):
                warn(
                    ("nodes", name, *path),
                    f"node '{name}' asks source '{source}', which sends '{{{var}}}', but '{var}' is "
                    "not set on every path to this node; it would be sent empty",
                )


def _edges(
    model: schema.Node, keys: dict[str, str], settings: schema.MenuSettings
) -> list[tuple[str, frozenset[str]]]:
    none: frozenset[str] = frozenset()
    out: list[tuple[str, frozenset[str]]] = []
    if isinstance(model, schema.MenuNode):
        out += [(t, none) for t in model.options.values()]
        out += [(p.go, frozenset(map(str, p.save))) for p in model.patterns]
    elif isinstance(model, schema.InputNode):
        out.append((model.next, frozenset({model.save_as})))
    elif isinstance(model, schema.LookupNode):
        out += [(model.found, frozenset({model.save_as})), (model.missing, none)]
        if model.error is not None:
            out.append((model.error, none))
    else:
        out += [(t, none) for _, t in model.targets()]
    if isinstance(model, schema.WaitingNode):
        failures = model.on_max_failures or settings.on_max_failures
        if failures:
            out.append((failures, none))
        disabled = {k.strip().casefold() for k in model.disable_keys}
        out += [(a, none) for k, a in keys.items() if k not in disabled and a not in schema.KEY_ACTIONS]
    return out


def prompt_keys(models: dict[str, schema.Node], keys: dict[str, str], warn: Report) -> None:
    for name, model in models.items():
        if not isinstance(model, schema.MenuNode) or not model.check_prompt_keys:
            continue
        prompt = model.prompt.casefold()
        for key in model.options:
            k = key.strip().casefold()
            if k and k not in keys and k not in prompt:
                warn(
                    ("nodes", name, "options", key),
                    f"menu '{name}' offers option \"{key}\" but its prompt never "
                    "mentions it (set check_prompt_keys: false on the node if that is on purpose)",
                )


def run(
    models: dict[str, schema.Node],
    start: str | None,
    keys: dict[str, str],
    settings: schema.MenuSettings,
    error: Report,
    warn: Report,
    asks: Mapping[str, frozenset[str]] | None = None,
) -> None:
    message_cycles(models, error)
    shadowed_patterns(models, keys, warn)
    prompt_keys(models, keys, warn)
    if start is not None and start in models:
        unset_variables(models, start, keys, settings, warn, asks)
