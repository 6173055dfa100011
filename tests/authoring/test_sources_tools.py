"""Sources in the authoring tools, as a menu author runs them: hotline check, chat and test, with
the real source (a backend on a free port) or with canned answers."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from tests.authoring.test_tools import hotline
from tests.backends import ThreadBackend
from tests.conftest import ServerProcess
from tests.helpers import CONFIG

WAIT = "正在为您查询,请稍候。"
BUSY = "抱歉,查询系统繁忙,请稍后再试。"


def sourced_config(tmp_path: Path, url: str, **source: Any) -> Path:
    """The shipped config with 话费查询 asking an HTTP source instead of accounts.yaml."""
    folder = tmp_path / "config"
    shutil.copytree(CONFIG, folder)
    menu = yaml.safe_load((CONFIG / "menu.yaml").read_text(encoding="utf-8"))
    menu["sources"] = {
        "billing": {"url": url + "/api/accounts/{phone}", "timeout": "3s", "result": "data.account", **source}
    }
    menu["nodes"]["find_account"] = {
        "type": "lookup",
        "source": "billing",
        "save_as": "account",
        "found": "balance",
        "missing": "no_account",
        "error": "lookup_failed",
        "wait_prompt": WAIT,
    }
    menu["nodes"]["lookup_failed"] = {"type": "message", "text": BUSY, "next": "main"}
    (folder / "menu.yaml").write_text(
        yaml.safe_dump(menu, allow_unicode=True, sort_keys=False), encoding="utf-8"
    )
    return folder


CANNED = """\
sources:
  billing:
    answers:
      "13800138000": {name: 王先生, balance: "1.50", spent: "2.00", plan: 测试套餐}
    missing: ["13900000000"]
    error: ["13911111111"]
conversations:
  - name: found, missing and error, with no backend
    steps:
      - send: "1"
      - send: "13800138000"
        expect: 尊敬的王先生,您的账户余额为 1.50 元
        absent: 请稍候
      - send: "1"
      - send: "13900000000"
        expect: 未找到号码 13900000000 的账户
      - send: "1"
      - send: "13911111111"
        expect: 抱歉,查询系统繁忙
  - name: a conversation's own answers win
    sources:
      billing: {answers: {"13800138000": {name: 赵女士}}}
    steps:
      - send: "1"
      - send: "13800138000"
        expect: 尊敬的赵女士
  - name: a number listed nowhere
    steps:
      - send: "1"
      - send: "13712345678"
        expect: 余额
"""


def test_canned_answers_replace_a_source_so_tests_need_no_backend(tmp_path: Path) -> None:
    config = sourced_config(tmp_path, "http://127.0.0.1:9")  # nothing listens there
    (tmp_path / "c.yaml").write_text(CANNED, encoding="utf-8")
    out = hotline("test", str(tmp_path / "c.yaml"), "--config", str(config))
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    assert lines[0].endswith("::found, missing and error, with no backend PASSED")
    assert lines[1].endswith("::a conversation's own answers win PASSED")
    assert lines[2].endswith("::a number listed nowhere FAILED")
    assert lines[3] == f"    step 2 ({tmp_path}/c.yaml:30): send '13712345678'"
    assert lines[4] == (
        "    source 'billing' has no canned answer for '13712345678': list it under its answers, missing or error"
    )


def test_replacing_a_source_the_menu_lacks_fails(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "sources: {billing: {missing: ['1']}}\nconversations:\n  - name: x\n    steps:\n      - send: '1'\n",
        encoding="utf-8",
    )
    out = hotline("test", str(tmp_path / "c.yaml"), "--config", str(CONFIG))
    assert out.returncode == 1
    assert "the menu has no source 'billing' to replace (its sources: none)" in out.stdout


def test_hotline_test_and_chat_ask_the_real_source(tmp_path: Path) -> None:
    backend = ThreadBackend()
    try:
        config = sourced_config(tmp_path, backend.url)
        (tmp_path / "c.yaml").write_text(
            "conversations:\n  - name: real\n    steps:\n      - send: '1'\n"
            "      - send: '13800138000'\n        expect: 尊敬的张先生,您的账户余额为 86.50 元\n"
            "      - send: '1'\n      - send: '13900000000'\n        expect: 未找到号码 13900000000\n",
            encoding="utf-8",
        )
        out = hotline("test", str(tmp_path / "c.yaml"), "--config", str(config))
        assert out.returncode == 0, out.stdout
        assert backend.requests == ["/api/accounts/13800138000", "/api/accounts/13900000000"]
        chat = hotline("chat", "--config", str(config), stdin="1\n13800138000\n/quit\n")
        assert chat.returncode == 0, chat.stderr
        assert f"look-up: billing, GET {backend.url}/api/accounts/13800138000" in chat.stdout
        assert "look-up: billing answered found in " in chat.stdout
        assert "尊敬的张先生,您的账户余额为 86.50 元" in chat.stdout
    finally:
        backend.close()


def test_a_slow_real_source_says_the_wait_prompt_in_test_and_chat(tmp_path: Path) -> None:
    backend = ThreadBackend(delay=1.3)
    try:
        config = sourced_config(tmp_path, backend.url)
        (tmp_path / "c.yaml").write_text(
            "conversations:\n  - name: slow\n    steps:\n      - send: '1'\n"
            f"      - send: '13800138000'\n        expect: [{WAIT}, 尊敬的张先生]\n",
            encoding="utf-8",
        )
        out = hotline("test", str(tmp_path / "c.yaml"), "--config", str(config))
        assert out.returncode == 0, out.stdout
        chat = hotline("chat", "--config", str(config), stdin="1\n13800138000\n/quit\n")
        assert chat.stdout.index(WAIT) < chat.stdout.index("look-up: billing answered found")
    finally:
        backend.close()


def test_a_dead_source_in_chat_says_why_and_goes_the_error_way(tmp_path: Path) -> None:
    config = sourced_config(tmp_path, "http://127.0.0.1:9")
    chat = hotline("chat", "--config", str(config), stdin="1\n13800138000\n/quit\n")
    assert "lookup_failed source=billing reason=connect" in chat.stdout
    assert BUSY in chat.stdout


def test_check_reports_sources_with_positions(tmp_path: Path) -> None:
    config = sourced_config(
        tmp_path, "http://127.0.0.1:9", headers={"Authorization": "Bearer ${NO_SUCH_SECRET_1}"}
    )
    out = hotline("check", "--config", str(config))
    assert out.returncode == 0, out.stdout  # a missing secret is a warning for check ...
    assert (
        "warning: source 'billing' header Authorization uses ${NO_SUCH_SECRET_1}, which is not set"
        in out.stdout
    )
    menu = (config / "menu.yaml").read_text(encoding="utf-8")
    (config / "menu.yaml").write_text(menu.replace("source: billing", "source: biling"), encoding="utf-8")
    out = hotline("check", "--config", str(config))
    assert out.returncode == 1
    line = next(n for n, text in enumerate(menu.splitlines(), 1) if "source: billing" in text)
    col = menu.splitlines()[line - 1].index("billing") + 1
    assert (
        f"{config}/menu.yaml:{line}:{col}: error: node 'find_account' asks source 'biling', which is not in "
        "'sources' (did you mean 'billing'?)" in out.stdout
    )


def test_over_tcp_conversations_with_canned_sources_are_skipped(
    tmp_path: Path, server_process: ServerProcess
) -> None:
    (tmp_path / "c.yaml").write_text(CANNED, encoding="utf-8")
    out = hotline("test", str(tmp_path / "c.yaml"), "--server", f"127.0.0.1:{server_process.tcp_port}")
    assert out.returncode == 0, out.stdout
    assert "SKIPPED (it replaces sources with canned answers: in process only)" in out.stdout
