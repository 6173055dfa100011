"""The config folder: `menu.yaml` (with its data files), `robot.yaml`, `desk.yaml` and the optional
`hooks.yaml` (webhooks), loaded and checked together (a transfer naming a queue desk.yaml lacks, or
an on_intent naming an intent robot.yaml lacks, is an error).

`hotline check`, the server at start-up and every reload go through `load_config`, so they agree on
what is an error. The robot is attached to the menu graph so that `robot` nodes and the UDP endpoint
answer from the same knowledge base.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from app.desk.loader import DeskConfig, load_desk
from app.hooks.config import HooksConfig, load_hooks
from app.menu import Graph, load_menu
from app.robot import Matcher, load_robot
from app.robot.schema import RobotFile
from app.yamlfile import HasProblems, Problem


@dataclass
class Config(HasProblems):
    """A loaded config folder; `graph` and `robot` are None when anything has an error."""

    graph: Graph | None
    robot: Matcher | None
    problems: list[Problem] = field(default_factory=list)
    desk: DeskConfig | None = None
    hooks: HooksConfig = field(default_factory=HooksConfig)  # hooks.yaml's webhooks (none without it)


def load_config(folder: str | Path, *, env_required: bool = False) -> Config:
    """Load menu.yaml and robot.yaml from `folder` (or a menu file and the robot.yaml beside it).
    `env_required` (the server): a source's ${NAME} missing from the environment is an error, not
    a warning."""
    path = Path(folder)
    menu_path = path / "menu.yaml" if path.is_dir() else path
    robot_path = menu_path.parent / "robot.yaml"
    loaded = load_robot(robot_path) if robot_path.exists() else None
    intents = set(loaded.matcher.ids) if loaded is not None and loaded.matcher is not None else None
    desk = load_desk(menu_path.parent / "desk.yaml")
    known: dict[str, set[str]] = {}
    if intents is not None:
        known["intent"] = intents
    if desk.desk is not None:
        known["queue"] = set(desk.desk.queues)
    menu = load_menu(menu_path, known, env_required=env_required)
    hooks = load_hooks(menu_path.parent / "hooks.yaml", env_required=env_required)
    problems = list(menu.problems) + desk.problems + hooks.problems
    if loaded is not None:
        problems += loaded.problems
        robot = loaded.matcher
    else:
        robot = Matcher(RobotFile(version=1))
        if menu.graph is not None and any(n.type == "robot" for n in menu.graph.nodes.values()):
            problems.append(
                Problem(
                    str(robot_path),
                    1,
                    1,
                    "warning",
                    "there is no robot.yaml: robot nodes answer every question with the fallback",
                )
            )
    if menu.graph is None or robot is None or desk.desk is None or hooks.hooks is None:
        return Config(None, None, problems)
    return Config(dataclasses.replace(menu.graph, robot=robot), robot, problems, desk.desk, hooks.hooks)
