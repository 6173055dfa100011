"""`hotline graph`: the menu as a Mermaid or Graphviz DOT diagram, drawn from the compiled graph.

Edges carry the key or pattern that takes them; global keys are drawn once, in their own box;
nodes that end the call, unreachable nodes and dead ends (waiting nodes with no way out) are marked.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.menu import Graph
from app.menu.nodes import (
    HangupNode,
    InputNode,
    LookupNode,
    MenuNode,
    MessageNode,
    Node,
    SourceLookupNode,
    TransferNode,
    WaitNode,
)
from app.menu.schema import KEY_ACTIONS

_SHORT = 24


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str


def edges_of(node: Node) -> list[Edge]:
    """The node's own ways out, labelled as a reader of the diagram needs them."""
    n = node.name
    out: list[Edge] = []
    if isinstance(node, MenuNode):
        out += [Edge(n, t, k) for k, t in node.options.items()]
        out += [Edge(n, r.go, f"/{r.regex.pattern}/") for r in node.rules]
    elif isinstance(node, InputNode):
        out.append(Edge(n, node.next, f"valid → {node.save_as}"))
    elif isinstance(node, LookupNode):
        out += [Edge(n, node.found, "found"), Edge(n, node.missing, "missing")]
    elif isinstance(node, SourceLookupNode):
        out += [Edge(n, node.found, f"{node.source.name}: found"), Edge(n, node.missing, "missing")]
        if node.error != node.missing:
            out.append(Edge(n, node.error, "error"))
    elif isinstance(node, TransferNode):
        own = {k: t for k, t in node.wait.keys.items() if k not in node.hangup_keys and t not in KEY_ACTIONS}
        out += [Edge(n, t, f"waiting: {k}") for k, t in own.items()]
        for label, target in (("closed", node.on_closed), ("busy", node.on_busy)):
            if target is not None and target != node.next:
                out.append(Edge(n, target, label))
        if node.next is not None:
            out.append(Edge(n, node.next, "after the agent" if node.on_busy else "after the agent, busy"))
    elif isinstance(node, MessageNode) and node.next is not None:
        out.append(Edge(n, node.next, ""))
    if isinstance(node, WaitNode) and node.wait.on_max_failures:
        out.append(Edge(n, node.wait.on_max_failures, f"{node.wait.max_failures} failures"))
    return out


def analyse(graph: Graph) -> tuple[list[Edge], set[str], set[str], set[str]]:
    """Edges, reachable nodes, nodes that end the call, and dead ends."""
    edges = [e for node in graph.nodes.values() for e in edges_of(node)]
    globals_to_nodes = {
        a
        for node in graph.nodes.values()
        if isinstance(node, WaitNode)
        for a in node.wait.keys.values()
        if a not in KEY_ACTIONS
    }
    seen = {graph.start, *globals_to_nodes}
    todo = list(seen)
    by_source: dict[str, list[str]] = {}
    for e in edges:
        by_source.setdefault(e.source, []).append(e.target)
    while todo:
        for t in by_source.get(todo.pop(), []):
            if t not in seen:
                seen.add(t)
                todo.append(t)
    ends = {
        n
        for n, node in graph.nodes.items()
        if isinstance(node, HangupNode)
        or (isinstance(node, MessageNode) and node.next is None)
        or (isinstance(node, TransferNode) and node.next is None)
    }
    dead = {
        n
        for n, node in graph.nodes.items()
        if isinstance(node, WaitNode)
        and not [t for t in by_source.get(n, []) if t != n]
        and not [a for a in node.wait.keys.values() if a != "repeat"]
    }
    return edges, seen, ends, dead


def _caption(node: Node) -> str:
    text = ""
    if isinstance(node, WaitNode):
        text = node.wait.prompt.template.source
    elif isinstance(node, MessageNode):
        text = node.text.template.source
    first = text.strip().splitlines()[0] if text.strip() else ""
    if len(first) > _SHORT:
        first = first[:_SHORT] + "…"
    return first


def _global_keys(graph: Graph) -> dict[str, str]:
    keys: dict[str, str] = {}
    for node in graph.nodes.values():
        if isinstance(node, WaitNode):
            keys.update(node.wait.keys)
    return keys


def mermaid(graph: Graph) -> str:
    edges, reachable, ends, dead = analyse(graph)
    ids = {name: f"n{i}" for i, name in enumerate(graph.nodes)}

    def esc(text: str) -> str:
        return text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")

    lines = ["flowchart TD"]
    for name, node in graph.nodes.items():
        caption = _caption(node)
        label = esc(f"{name} ({node.type})") + (f"<br/>{esc(caption)}" if caption else "")
        shape = ("([", "])") if name in ends else ("{{", "}}") if isinstance(node, MenuNode) else ("[", "]")
        lines.append(f'  {ids[name]}{shape[0]}"{label}"{shape[1]}')
    lines.append(f'  start(("start")) --> {ids[graph.start]}')
    for e in edges:
        arrow = f' -- "{esc(e.label)}" --> ' if e.label else " --> "
        lines.append(f"  {ids[e.source]}{arrow}{ids[e.target]}")
    keys = _global_keys(graph)
    if keys:
        lines.append('  subgraph global_keys["global keys (every node that waits, unless disabled)"]')
        for i, (key, action) in enumerate(keys.items()):
            lines.append(f'    k{i}["{esc(key)} → {esc(action)}"]')
        lines.append("  end")
        for i, action in enumerate(keys.values()):
            if action in ids:
                lines.append(f"  k{i} -.-> {ids[action]}")
    lines += [
        "  classDef unreachable fill:#eee,stroke:#999,stroke-dasharray:4 3,color:#777",
        "  classDef deadend fill:#fdd,stroke:#c00",
        "  classDef ends fill:#eef,stroke:#66a",
    ]
    for cls, names in (("unreachable", set(graph.nodes) - reachable), ("deadend", dead), ("ends", ends)):
        if names:
            lines.append(f"  class {','.join(ids[n] for n in sorted(names))} {cls}")
    return "\n".join(lines) + "\n"


def dot(graph: Graph) -> str:
    edges, reachable, ends, dead = analyse(graph)

    def q(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [
        f"digraph {q(graph.name)} {{",
        "  rankdir=TB;",
        '  node [fontname="sans-serif"];',
        "  __start [shape=point];",
        f"  __start -> {q(graph.start)};",
    ]
    for name, node in graph.nodes.items():
        caption = _caption(node)
        attrs = [f"label={q(f'{name} ({node.type})' + (chr(10) + caption if caption else ''))}"]
        attrs.append(
            "shape="
            + ("doublecircle" if name in ends else "box" if isinstance(node, MenuNode) else "ellipse")
        )
        if name not in reachable:
            attrs.append("style=dashed color=gray fontcolor=gray")
        if name in dead:
            attrs.append('style=filled fillcolor="#ffdddd" color=red')
        lines.append(f"  {q(name)} [{' '.join(attrs)}];")
    for e in edges:
        lines.append(
            f"  {q(e.source)} -> {q(e.target)}" + (f" [label={q(e.label)}]" if e.label else "") + ";"
        )
    keys = _global_keys(graph)
    if keys:
        rows = "\\l".join(f"{k} → {a}".replace('"', '\\"') for k, a in keys.items())
        lines.append(f'  __keys [shape=note label="global keys\\l{rows}\\l"];')
        for action in keys.values():
            if action in graph.nodes:
                lines.append(f"  __keys -> {q(action)} [style=dotted];")
    lines.append("}")
    return "\n".join(lines) + "\n"
