"""Shared test helpers: build menus from YAML text, walk them, talk to a server."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

from app.authoring.conversations import answer_offline
from app.menu import Graph, Hangup, Say, Session, load_menu
from app.menu.events import Event
from app.yamlfile import HasProblems

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config"


def write_menu(folder: Path, text: str, **files: str) -> Path:
    """Write menu.yaml (dedented) and any extra files into `folder`; return the menu path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "menu.yaml"
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    for name, body in files.items():
        (folder / name.replace("__", ".")).write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    return path


def graph_of(folder: Path, text: str, **files: str) -> Graph:
    result = load_menu(write_menu(folder, text, **files))
    assert result.graph is not None, "\n".join(map(str, result.problems))
    return result.graph


def said(events: list[Event]) -> str:
    """Everything the events say, one Say per line."""
    return "\n".join(e.text for e in events if isinstance(e, Say))


def hung_up(events: list[Event]) -> str | None:
    reasons = [e.reason for e in events if isinstance(e, Hangup)]
    return reasons[0] if reasons else None


class Walk:
    """Drive a Session with a fake clock."""

    def __init__(self, graph: Graph, **kw: object) -> None:
        self.now = 1_700_000_000.0
        self.session = Session(graph, session_id="test", caller="127.0.0.1", **kw)  # type: ignore[arg-type]
        self.events = self.session.start(self.now)

    def __call__(self, line: str) -> list[Event]:
        """Type a line; a transfer is answered as the desk does when no agent is logged in."""
        self.events = answer_offline(self.session, self.session.feed(line, self.now), self.now)
        return self.events

    def wait(self, seconds: float) -> list[Event]:
        self.now += seconds
        self.events = self.session.timeout(self.now)
        return self.events

    @property
    def node(self) -> str | None:
        return self.session.node.name if self.session.node else None


SYSTEM_TOOLS = REPO / "scripts" / "system-tools"


def listed_system_tools() -> dict[str, str]:
    """program -> Debian package, as `scripts/system-tools --list` prints them."""
    out = subprocess.run([str(SYSTEM_TOOLS), "--list"], capture_output=True, text=True, check=True).stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


def system_tool(name: str) -> str:
    """The path of a system program a test drives. It must be one `make test` installs
    (scripts/system-tools); a missing one fails the test with the line that says how to get it."""
    tools = listed_system_tools()
    assert name in tools, f"{name} is not in scripts/system-tools: `make test` would not install it"
    path = shutil.which(name)
    assert path is not None, f"{name} is missing: run `make system-tools` (Debian package {tools[name]})"
    return path


def problems_as_shown(result: HasProblems, tmp_path: Path, product: object) -> list[str]:
    """A loader's problems as an operator reads them, with the temp folder cut off; a file with
    errors must give nothing to serve (`product` is what the loader made of it)."""
    if result.errors:
        assert product is None
    return [str(p).replace(str(tmp_path) + "/", "") for p in result.problems]
