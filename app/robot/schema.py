"""pydantic models of robot.yaml."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_FALLBACK = "抱歉,我没有听懂。您可以换个说法,或在主菜单按 0 转人工服务。"
DEFAULT_CLARIFY = "您是想问「{a}」还是「{b}」?"

Question = Annotated[str, Field(min_length=1, max_length=200)]
Answer = Annotated[str, Field(min_length=1, max_length=2000)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class Intent(_Model):
    """One thing callers ask about: example questions, keywords, the answer."""

    id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    title: Annotated[str, Field(min_length=1, max_length=40)] | None = None
    questions: Annotated[list[Question], Field(min_length=1)]
    keywords: list[Annotated[str, Field(min_length=1, max_length=40)]] = []
    answer: Answer


class RobotFile(_Model):
    """The top level of robot.yaml."""

    version: Literal[1]
    threshold: Annotated[float, Field(ge=0, le=1)] = 0.6
    ambiguity: Annotated[float, Field(ge=0, le=1)] = 0.05
    fallback: Answer = DEFAULT_FALLBACK
    clarify: Annotated[str, Field(min_length=1, max_length=200)] = DEFAULT_CLARIFY
    intents: list[Intent] = []
