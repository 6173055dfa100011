"""A config folder with a desk for the browser side: two agents, a supervisor, fast timings."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.desk.passwords import hash_password
from tests.helpers import CONFIG

PASSWORD = "web-pass-123"
DESK = """
version: 1
queues:
  default:
    title: 人工服务
    announce_every: 1s
    ring_timeout: {ring}
    wrap_up: {wrap}
    max_missed: {missed}
  vip:
    title: 贵宾服务
agents:
  - {{id: "1001", name: 小王, password_hash: "{hash}", queues: [default]}}
  - {{id: "1002", name: 小李, password_hash: "{hash}", queues: [default]}}
  - {{id: "2001", name: 小贵, password_hash: "{hash}", queues: [vip]}}
  - {{id: "9001", name: 老张, password_hash: "{hash}", role: supervisor}}
canned:
  hi: 您好，请问有什么可以帮您？
dispositions: [已解决, 需回访]
"""


@pytest.fixture(scope="session")
def password_hash() -> str:
    return hash_password(PASSWORD)


def web_config(
    folder: Path, password_hash: str, ring: str = "15s", wrap: str = "0s", missed: int = 3
) -> Path:
    """The shipped menu and robot with the test desk."""
    shutil.copytree(CONFIG, folder, dirs_exist_ok=True)
    desk = DESK.format(hash=password_hash, ring=ring, wrap=wrap, missed=missed)
    (folder / "desk.yaml").write_text(desk, encoding="utf-8")
    return folder


@pytest.fixture
def web_folder(tmp_path: Path, password_hash: str) -> Path:
    return web_config(tmp_path / "config", password_hash)
