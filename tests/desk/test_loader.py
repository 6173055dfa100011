"""desk.yaml problems, each with its line and column, and the shipped demo desk."""

from __future__ import annotations

from pathlib import Path

from app.desk.loader import load_desk
from app.desk.passwords import hash_password, verify_password
from tests.helpers import CONFIG, problems_as_shown

HASH = hash_password("a long secret")
GOOD = f"""\
version: 1
queues:
  default:
    title: 人工服务
    hours:
      timezone: Asia/Shanghai
      open:
        mon-fri: "08:00-20:00"
      closed_dates: [2026-10-01]
    strategy: fewest_calls
    announce_every: 20s
    wrap_up: 0s
  vip: {{}}
agents:
  - id: "1001"
    name: 小王
    password_hash: "{HASH}"
    queues: [default, vip]
"""


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "desk.yaml"
    path.write_text(text, encoding="utf-8")
    result = load_desk(path)
    return problems_as_shown(result, tmp_path, result.desk)


def test_good_file(tmp_path: Path) -> None:
    (tmp_path / "desk.yaml").write_text(GOOD, encoding="utf-8")
    desk = load_desk(tmp_path).desk
    assert desk is not None
    q = desk.queues["default"]
    assert (q.title, q.model.strategy, q.model.announce_every, q.model.wrap_up) == (
        "人工服务",
        "fewest_calls",
        20,
        0,
    )
    assert q.hours is not None and q.hours.text == "mon-fri 08:00-20:00"
    assert desk.agents["1001"].queues == ["default", "vip"]


def test_no_file_is_one_default_queue_and_no_agents(tmp_path: Path) -> None:
    desk = load_desk(tmp_path).desk
    assert desk is not None and list(desk.queues) == ["default"] and desk.agents == {}


def test_unknown_queue_of_an_agent_suggests(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD.replace("queues: [default, vip]", "queues: [defualt]"))
    assert out == [
        "desk.yaml:18:14: error: agent '1001': queue 'defualt' is not in queues (did you mean 'default'?)"
    ]


def test_unknown_key_suggests(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD.replace("    strategy:", "    stratgey:"))
    assert len(out) == 1 and out[0].startswith("desk.yaml:10:5: error:")
    assert "'stratgey'" in out[0] and "did you mean 'strategy'?" in out[0]


def test_a_password_instead_of_a_hash(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD.replace(HASH, "demo1001"))
    assert out == [
        "desk.yaml:17:20: error: agent '1001': password_hash is not a password hash; make one with: hotline passwd"
    ]


def test_duplicate_agent_id(tmp_path: Path) -> None:
    twice = GOOD + f'  - {{id: "1001", name: 小李, password_hash: "{HASH}", queues: [vip]}}\n'
    out = problems(tmp_path, twice)
    assert out == ["desk.yaml:19:10: error: agent id '1001' is used twice (first: agent 1)"]


def test_bad_hours_and_durations(tmp_path: Path) -> None:
    for old, new, words in (
        ('"08:00-20:00"', '"20:00-08:00"', "ends before it starts"),
        ("mon-fri:", "fri-mon:", "runs backwards"),
        ("Asia/Shanghai", "Asia/Shanghia", "is not a time zone"),
        ("announce_every: 20s", "announce_every: 0s", "announce_every"),
        ("wrap_up: 0s", "wrap_up: -1s", "wrap_up"),
    ):
        out = problems(tmp_path, GOOD.replace(old, new))
        assert len(out) == 1 and ": error: " in out[0] and words in out[0], (new, out)
        assert "function-after" not in out[0] and "constrained" not in out[0], out[0]  # no pydantic internals


def test_shipped_demo_desk_and_its_documented_passwords() -> None:
    result = load_desk(CONFIG)
    assert result.problems == [] and result.desk is not None
    for agent_id in ("1001", "1002"):
        assert verify_password(f"demo{agent_id}", result.desk.agents[agent_id].password_hash)
    readme = (CONFIG.parent / "README.md").read_text(encoding="utf-8")
    assert "demo1001" in readme and "demo1002" in readme
