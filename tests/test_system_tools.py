"""`make test` brings in the system programs its tests drive, or stops at once with one line.

These guard the class of bug where a test needs a program that only a developer's machine has: every
program a test starts by name must be one `scripts/system-tools` checks and installs, and on a PATH
without them the check names every package in a single line instead of failing deep in a test.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
from pathlib import Path

from tests.helpers import REPO, SYSTEM_TOOLS, listed_system_tools

# Programs a test may use only when present (it checks with shutil.which and skips that part).
OPTIONAL = {"dot"}
STARTERS = {
    ("subprocess", "run"),
    ("subprocess", "Popen"),
    ("subprocess", "check_output"),
    ("subprocess", "call"),
    ("asyncio", "create_subprocess_exec"),
    ("pexpect", "spawn"),
    ("", "system_tool"),
}


def _programs_started_by_tests() -> dict[str, str]:
    """Literal program names the tests start, -> where."""
    found: dict[str, str] = {}
    for path in sorted((REPO / "tests").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            if isinstance(func, ast.Attribute):
                name = (getattr(func.value, "id", ""), func.attr)
            else:
                name = ("", getattr(func, "id", ""))
            if name not in STARTERS:
                continue
            first = node.args[0]
            if isinstance(first, ast.List) and first.elts:
                first = first.elts[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str) and "/" not in first.value:
                found.setdefault(first.value, f"{path.relative_to(REPO)}:{node.lineno}")
    return found


def test_every_program_a_test_starts_is_installed_by_make_test() -> None:
    listed = listed_system_tools()
    started = _programs_started_by_tests()
    assert "nc" in started and "telnet" in started  # the scan itself finds what we know is there
    strays = {p: where for p, where in started.items() if p not in listed and p not in OPTIONAL}
    assert not strays, f"tests start programs that scripts/system-tools does not install: {strays}"


def _bare_path(tmp_path: Path) -> str:
    """A PATH with only what the check itself runs: bash and grep, and none of the tools."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for prog in ("bash", "grep", "id"):
        real = shutil.which(prog)
        assert real is not None
        (bin_dir / prog).symlink_to(real)
    return str(bin_dir)


def test_on_a_clean_path_the_check_stops_with_one_line_naming_every_package(tmp_path: Path) -> None:
    env = {"PATH": _bare_path(tmp_path), "HOTLINE_NO_INSTALL": "1"}
    out = subprocess.run([str(SYSTEM_TOOLS)], capture_output=True, text=True, env=env, timeout=30)
    assert out.returncode == 1
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    for package in listed_system_tools().values():
        assert package in lines[0]
    assert "apt-get install -y" in lines[0]


def test_with_every_tool_present_the_check_passes_quietly() -> None:
    missing = [p for p in listed_system_tools() if shutil.which(p) is None]
    out = subprocess.run(
        [str(SYSTEM_TOOLS), "--check"], capture_output=True, text=True, env=dict(os.environ), timeout=30
    )
    # this suite runs after `make test` installed them, so the check must agree with what is on PATH
    assert (out.returncode == 0) == (not missing), (missing, out.stderr)
    if not missing:
        assert out.stdout == out.stderr == ""


def test_make_test_runs_the_check_first() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    test_rule = next(line for line in makefile.splitlines() if line.startswith("test:"))
    assert test_rule.split(":")[1].split()[0] == "system-tools"
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in ci and "apt-get" not in ci  # CI takes the same road as everyone else
