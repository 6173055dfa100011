"""The smart robot: a knowledge base of intents and a fuzzy matcher for Chinese questions.

Pure: no sockets, no asyncio, no logging. The UDP endpoint (`net/udp.py`) and the menu's `robot`
node both ask the same `Matcher`.
"""

from app.robot.loader import RobotLoadResult, load_robot
from app.robot.matcher import Answer, Matcher

__all__ = ["Answer", "Matcher", "RobotLoadResult", "load_robot"]
