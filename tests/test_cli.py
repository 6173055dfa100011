"""The `hotline` command as a user runs it: check, serve's settings, and the container's own command line."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest

from app.settings import Settings, SettingsError, load_settings
from tests.conftest import ServerProcess
from tests.helpers import CONFIG, REPO, write_menu

HOTLINE = [sys.executable, "-m", "app"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HOTLINE, *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        env={**os.environ, "HOTLINE_DATA": tempfile.mkdtemp(prefix="hotline-test-data-"), **(env or {})},
    )


def test_check_passes_on_the_shipped_config() -> None:
    out = run("check", "--config", str(CONFIG))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ok, menu 'china-mobile-10086'" in out.stdout  # the answer, on stdout (a script reads it)
    assert out.stderr == ""


def test_check_and_serve_help_name_every_file_of_the_config_folder() -> None:
    for command in ("check", "serve"):
        out = run(command, "--help")
        assert out.returncode == 0
        text = " ".join(out.stdout.split())
        assert all(name in text for name in ("menu.yaml", "robot.yaml", "desk.yaml")), (command, text)


def test_check_prints_every_problem_and_exits_1(tmp_path: Path) -> None:
    write_menu(
        tmp_path,
        """
        version: 1
        start: main
        nodes:
          main:
            type: menu
            prompt: 按 1 或 2
            options: {"1": nowhere, "2": lost}
          lost: {type: hangup}
          orphan: {type: hangup}
    """,
    )
    out = run("check", "--config", str(tmp_path))
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    assert lines == [
        f"{tmp_path}/menu.yaml:7:20: error: node 'main' option \"1\" goes to 'nowhere', which is not a node",
        f"{tmp_path}/menu.yaml:9:3: warning: node 'orphan' cannot be reached from start 'main'",
        "1 error(s), 1 warning(s)",
    ]


def test_check_warnings_alone_pass(tmp_path: Path) -> None:
    write_menu(
        tmp_path,
        """
        version: 1
        start: main
        nodes:
          main: {type: menu, prompt: hi, options: {"1": main}}
          orphan: {type: hangup}
    """,
    )
    out = run("check", "--config", str(tmp_path))
    assert out.returncode == 0
    assert "warning: node 'orphan' cannot be reached" in out.stdout


def test_check_reads_hotline_config_from_the_environment(tmp_path: Path) -> None:
    out = run("check", env={"HOTLINE_CONFIG": str(tmp_path)})
    assert out.returncode == 1
    assert "cannot read the file" in out.stdout


def test_flags_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOTLINE_TCP_PORT", "2000")
    monkeypatch.setenv("HOTLINE_HOST", "0.0.0.0")
    s = load_settings(tcp_port="3000", host=None)
    assert s.tcp_port == 3000 and s.host == "0.0.0.0"


def test_defaults_match_the_product() -> None:
    s = Settings()
    assert (s.host, s.tcp_port, s.admin_port, s.log_level, str(s.config)) == (
        "127.0.0.1",
        10086,
        9108,
        "info",
        "config",
    )
    assert (s.max_line, s.shutdown_grace, s.encoding) == (1024, 5.0, "utf-8")


def test_bad_settings_name_the_variable_and_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOTLINE_TCP_PORT", "seventy")
    with pytest.raises(SettingsError, match="HOTLINE_TCP_PORT / --tcp-port"):
        load_settings()
    out = run("serve", env={"HOTLINE_ENCODING": "latin-1"})
    assert out.returncode == 2
    assert "HOTLINE_ENCODING / --encoding" in out.stderr


def test_serve_refuses_a_broken_menu_and_says_why(tmp_path: Path) -> None:
    write_menu(tmp_path, "version: 1\nstart: nowhere\nnodes: {}\n")
    out = run(
        "serve",
        "--config",
        str(tmp_path),
        "--tcp-port",
        "0",
        "--admin-port",
        "0",
        env={"HOTLINE_LOG_FORMAT": "json"},
    )
    assert out.returncode == 1
    entry = json.loads(out.stdout.splitlines()[-1])
    assert entry["event"] == "menu_rejected"
    assert "start 'nowhere' is not a node" in entry["errors"][0]


def test_serve_on_a_busy_port_fails_cleanly() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = run(
            "serve",
            "--config",
            str(CONFIG),
            "--tcp-port",
            str(port),
            "--admin-port",
            "0",
            env={"HOTLINE_LOG_FORMAT": "json"},
        )
    assert out.returncode == 1
    assert json.loads(out.stdout.splitlines()[-1])["event"] == "bind_failed"
    assert "Traceback" not in out.stdout + out.stderr


def _dockerfile() -> tuple[list[str], dict[str, str], list[str]]:
    """The image's CMD, ENV and HEALTHCHECK command, read from the Dockerfile itself."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    final = text[text.rindex("\nFROM ") :]
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", final, re.M).group(1))  # type: ignore[union-attr]
    env: dict[str, str] = {}
    for m in re.finditer(r"^ENV (.*)$", final, re.M):
        for item in shlex.split(m.group(1)):
            key, _, value = item.partition("=")
            env[key] = value
    health = json.loads(re.search(r"HEALTHCHECK .*?CMD (\[.*\])$", final, re.M).group(1))  # type: ignore[union-attr]
    return cmd, env, health


def test_the_container_command_runs_in_the_venv() -> None:
    cmd, env, health = _dockerfile()
    assert cmd == ["hotline", "serve"]
    assert env["HOTLINE_HOST"] == "0.0.0.0" and env["HOTLINE_DATA"] == "/app/data"
    bindir = Path(sys.executable).parent
    run_env = {
        k: v for k, v in env.items() if k not in ("PATH", "HOTLINE_HOST", "HOTLINE_CONFIG", "HOTLINE_DATA")
    }
    run_env |= {
        "HOTLINE_CONFIG": str(CONFIG),
        "HOTLINE_HOST": "127.0.0.1",
        "PATH": f"{bindir}:{os.environ['PATH']}",
    }
    proc = ServerProcess([str(bindir / cmd[0]), *cmd[1:]], env=run_env)
    try:
        with socket.create_connection(("127.0.0.1", proc.tcp_port), timeout=5) as s:
            assert "欢迎致电中国移动 10086" in s.recv(4096).decode()
        check = subprocess.run(
            [sys.executable if health[0] == "python" else health[0], *health[1:]],
            timeout=10,
            env={**os.environ, "HOTLINE_ADMIN_PORT": str(proc.admin_port)},
        )
        assert check.returncode == 0
        with urllib.request.urlopen(f"http://127.0.0.1:{proc.admin_port}/readyz", timeout=5) as r:
            assert r.status == 200
    finally:
        assert proc.stop() == 0


def test_python_dash_m_app_is_the_same_command() -> None:
    out = run("--help")
    assert out.returncode == 0 and "serve" in out.stdout and "check" in out.stdout


def test_readme_lists_every_setting_with_its_default() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for name, field in Settings.model_fields.items():
        env, flag = f"HOTLINE_{name.upper()}", "--" + name.replace("_", "-")
        m = re.search(rf"\| `{env}` \| `{flag}[^`]*` \| `([^`]*)` \|", readme)
        assert m is not None, f"README's settings table lacks {env} / {flag}"
        default = "auto" if name == "log_format" else str(field.default)
        assert m.group(1) in (default, default.lower()), (
            f"{env}: README says {m.group(1)}, the code {default}"
        )
