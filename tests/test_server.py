"""Server lifecycle: reload keeps callers on the menu they started with; broken menus are refused."""

from __future__ import annotations

import shutil
import signal
import sys
from pathlib import Path

import structlog

from tests.conftest import Caller, ServerProcess, start_server
from tests.helpers import CONFIG


def _config_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "config"
    shutil.copytree(CONFIG, folder)
    return folder


async def test_reload_pins_sessions_and_refuses_broken_menus(tmp_path: Path) -> None:
    folder = _config_copy(tmp_path)
    menu = folder / "menu.yaml"
    srv = await start_server(folder)
    try:
        old = await Caller.dial(srv.tcp_port)
        await old.expect("欢迎致电中国移动 10086")

        menu.write_text(
            menu.read_text(encoding="utf-8").replace("欢迎致电中国移动", "您好,这里是新菜单"),
            encoding="utf-8",
        )
        with structlog.testing.capture_logs() as logs:
            assert srv.reload()
        assert logs[0]["event"] == "menu_reloaded"

        new = await Caller.dial(srv.tcp_port)
        await new.expect("您好,这里是新菜单 10086")
        old.send("?")
        await old.expect("欢迎致电中国移动 10086")  # still on the menu it started with

        menu.write_text(
            menu.read_text(encoding="utf-8").replace('"2": data_usage', '"2": data_usag'), encoding="utf-8"
        )
        with structlog.testing.capture_logs() as logs:
            assert not srv.reload()
        assert logs[0]["event"] == "menu_rejected"
        assert any(
            ":38:12: error: node 'main' option \"2\" goes to 'data_usag'" in e for e in logs[0]["errors"]
        )

        third = await Caller.dial(srv.tcp_port)
        await third.expect("您好,这里是新菜单 10086")
        third.send("2")
        await third.expect("剩余 7.5 GB")
        for c in (old, new, third):
            c.close()
    finally:
        await srv.shutdown()


def test_sighup_reloads_a_running_server(tmp_path: Path) -> None:
    folder = _config_copy(tmp_path)
    proc = ServerProcess([sys.executable, "-m", "app", "serve", "--config", str(folder)])
    try:
        menu = folder / "menu.yaml"
        menu.write_text(
            menu.read_text(encoding="utf-8").replace("套餐办理请按 3", "套餐请按 3"), encoding="utf-8"
        )
        proc.proc.send_signal(signal.SIGHUP)
        assert proc.wait_for("menu_reloaded")["menu"] == "china-mobile-10086"
        menu.write_text("version: 1\nstart: [\n", encoding="utf-8")
        proc.proc.send_signal(signal.SIGHUP)
        rejected = proc.wait_for("menu_rejected")
        assert rejected["errors"][0].startswith(f"{folder}/menu.yaml:3:1: error: YAML syntax")
    finally:
        assert proc.stop() == 0
