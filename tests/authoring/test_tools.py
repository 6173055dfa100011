"""Authoring tools as a menu author runs them: hotline chat, graph and test."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from app.authoring import diagram
from app.configdir import load_config
from tests.conftest import ServerProcess
from tests.helpers import CONFIG, REPO, write_menu

CONVERSATIONS = REPO / "tests" / "conversations"


def hotline(*args: str, stdin: str = "", cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_chat_from_a_pipe_walks_the_menu_with_simulated_silence() -> None:
    out = hotline("chat", "--config", str(CONFIG), stdin="1\n13800138000\n/wait\n/wait\n/wait\n")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "> 1\n请输入您的 11 位手机号码" in text
    assert "尊敬的张先生" in text
    assert text.count("请按 1、2、3、8 或 0") == 2  # two silences re-prompt, the third says goodbye
    assert text.rstrip().endswith("call ended: timeout")


def test_chat_trace_shows_node_and_variables() -> None:
    out = hotline("chat", "--trace", "--config", str(CONFIG), stdin="1\n13800138000\n/quit\n")
    assert "[ask_phone] vars: none" in out.stdout
    assert "[main] vars: phone='13800138000'" in out.stdout
    assert "call ended: caller" in out.stdout


def test_chat_refuses_a_broken_menu_with_its_line(tmp_path: Path) -> None:
    write_menu(tmp_path, "version: 1\nstart: nowhere\nnodes: {}\n")
    out = hotline("chat", "--config", str(tmp_path), stdin="")
    assert out.returncode == 1
    assert "menu.yaml:2:8: error: start 'nowhere' is not a node" in out.stderr


def test_mermaid_diagram_of_the_shipped_menu() -> None:
    config = load_config(CONFIG)
    assert config.graph is not None
    text = diagram.mermaid(config.graph)
    assert text.startswith("flowchart TD\n")
    assert 'n0 -- "1" --> n1' in text  # main -1-> ask_phone
    assert '-- "/^1(\\d{3})$/" -->' in text  # the pattern labels its edge
    assert text.count("* → back") == 1  # global keys drawn once
    assert re.search(r"n\d+\(\[\"bye \(hangup\)\"\]\)", text)  # ends of the call are marked


def test_graph_marks_unreachable_nodes_and_dead_ends(tmp_path: Path) -> None:
    write_menu(
        tmp_path,
        """
        version: 1
        start: main
        nodes:
          main: {type: menu, prompt: 按 1, options: {"1": stuck}}
          stuck: {type: menu, prompt: 没有出路}
          lost: {type: hangup}
    """,
    )
    out = hotline("graph", "--config", str(tmp_path))
    assert out.returncode == 0
    assert "class n2 unreachable" in out.stdout
    assert "class n1 deadend" in out.stdout
    dot = hotline("graph", "--format", "dot", "--config", str(tmp_path)).stdout
    assert '"lost" [label="lost (hangup)" shape=doublecircle style=dashed' in dot
    if shutil.which("dot"):
        rendered = subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True)
        assert rendered.returncode == 0 and "<svg" in rendered.stdout


def test_shipped_conversations_pass_and_visit_every_node() -> None:
    out = hotline("test", "--coverage", str(CONVERSATIONS), "--config", str(CONFIG))
    assert out.returncode == 0, out.stdout
    assert " 0 failed" in out.stdout
    shipped = len(yaml.safe_load((CONFIG / "menu.yaml").read_text(encoding="utf-8"))["nodes"])
    assert f"nodes visited: {shipped}/{shipped}" in out.stdout


def test_a_failing_conversation_says_which_step_what_was_expected_and_what_came(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        """\
conversations:
  - name: wrong balance
    steps:
      - send: "1"
      - send: "13800138000"
        expect: 余额为 99.00 元
""",
        encoding="utf-8",
    )
    out = hotline("test", str(tmp_path / "bad.yaml"), "--config", str(CONFIG))
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    assert lines[0] == f"{tmp_path}/bad.yaml::wrong balance FAILED"
    assert lines[1] == f"    step 2 ({tmp_path}/bad.yaml:5): send '13800138000'"
    assert lines[2] == "    expected: '余额为 99.00 元'"
    assert lines[3].startswith("    got:      尊敬的张先生,您的账户余额为 86.50 元")
    assert lines[-1].startswith("===== 0 passed, 1 failed")


def test_an_unexpected_hangup_fails(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "conversations:\n  - name: x\n    steps:\n      - send: exit\n", encoding="utf-8"
    )
    out = hotline("test", str(tmp_path / "c.yaml"), "--config", str(CONFIG))
    assert out.returncode == 1
    assert "the call ended here, but the step does not say hangup: true" in out.stdout


def test_conversation_file_errors_have_positions(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "conversations:\n  - name: x\n    steps:\n      - sned: '1'\n", encoding="utf-8"
    )
    out = hotline("test", str(tmp_path / "c.yaml"), "--config", str(CONFIG))
    assert out.returncode == 1
    assert (
        f"{tmp_path}/c.yaml:4:9: error: the conversation file, in conversation 1 step 1, has an unknown key 'sned' (did you mean 'send'?)"
        in out.stdout
    )


def test_conversations_against_a_running_server(server_process: ServerProcess) -> None:
    out = hotline(
        "test", str(CONVERSATIONS / "balance.yaml"), "--server", f"127.0.0.1:{server_process.tcp_port}"
    )
    assert out.returncode == 0, out.stdout
    assert "===== 5 passed, 0 failed" in out.stdout


def test_a_scripted_agent_that_does_not_see_the_line_fails_with_the_agents_screen(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        """\
conversations:
  - name: agent misses a word
    agents: ["1001"]
    steps:
      - send: "0"
      - agent: /accept
        expect: 工号 1001 为您服务
      - send: 你好
        agent_sees: CALLER 您好
""",
        encoding="utf-8",
    )
    out = hotline("test", str(tmp_path / "a.yaml"), "--config", str(CONFIG))
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    assert lines[1] == f"    step 3 ({tmp_path}/a.yaml:8): send '你好'"
    assert lines[2] == "    expected the agent to see: 'CALLER 您好'"
    assert lines[3] == "    got:      [agent] CALLER 你好"


def test_agent_scripts_are_checked_when_loaded_and_against_desk_yaml(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        """\
conversations:
  - name: no agents listed
    steps:
      - agent: /ready
  - name: by someone else
    agents: ["1001"]
    steps:
      - send: "0"
      - agent: /accept
        by: "1003"
""",
        encoding="utf-8",
    )
    out = hotline("test", str(tmp_path / "a.yaml"), "--config", str(CONFIG))
    assert out.returncode == 1
    assert (
        f"{tmp_path}/a.yaml:4:9: error: this step scripts an agent: list the conversation's agents first"
        in out.stdout
    )
    assert f"{tmp_path}/a.yaml:10:13: error: agent '1003' is not in this conversation's agents" in out.stdout
    (tmp_path / "a.yaml").write_text(
        'conversations:\n  - name: x\n    agents: ["1009"]\n    steps:\n      - send: "0"\n', encoding="utf-8"
    )
    out = hotline("test", str(tmp_path / "a.yaml"), "--config", str(CONFIG))
    assert out.returncode == 1 and "agent '1009' is not in desk.yaml" in out.stdout


def test_over_tcp_conversations_that_script_agents_are_skipped(server_process: ServerProcess) -> None:
    out = hotline(
        "test", str(CONVERSATIONS / "agents.yaml"), "--server", f"127.0.0.1:{server_process.tcp_port}"
    )
    assert out.returncode == 0, out.stdout
    assert "SKIPPED (it scripts agents: in process only)" in out.stdout
    scripted = yaml.safe_load((CONVERSATIONS / "agents.yaml").read_text(encoding="utf-8"))["conversations"]
    assert all(c.get("agents") for c in scripted)  # every one of them scripts agents
    assert f"===== 0 passed, 0 failed, {len(scripted)} skipped" in out.stdout


@pytest.mark.parametrize("args", [["--server", "nonsense"], ["--server", "127.0.0.1:1"]])
def test_bad_server_address(args: list[str]) -> None:
    out = hotline("test", str(CONVERSATIONS / "balance.yaml"), *args)
    assert out.returncode in (1, 2)
    assert out.stderr


def test_in_process_a_silent_caller_is_cut_off_as_the_server_does(tmp_path: Path) -> None:
    """The server hangs up on a caller who has typed nothing for HOTLINE_FIRST_INPUT_TIMEOUT (60 s):
    in process too, so a test that passes in process does not fail against `make run`."""
    conv = tmp_path / "silent.yaml"
    conv.write_text(
        "conversations:\n"
        "  - name: 不输入\n"
        "    steps:\n"
        "      - silence: 30s\n"
        "        expect: 请按 1、2、3、8 或 0\n"
        "      - silence: 30s\n"
        "        expect: 请按 1、2、3、8 或 0\n",
        encoding="utf-8",
    )
    out = hotline("test", "--config", str(CONFIG), str(conv))
    assert out.returncode == 1, out.stdout
    assert "got:      感谢您致电中国移动 10086,再见!" in out.stdout  # the goodbye at 60 s
    typed = conv.read_text(encoding="utf-8").replace("    steps:\n", '    steps:\n      - send: "9"\n')
    conv.write_text(typed, encoding="utf-8")  # a caller who typed once is only re-prompted
    assert hotline("test", "--config", str(CONFIG), str(conv)).returncode == 0
