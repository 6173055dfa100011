"""config/hooks.yaml -> the webhooks (HooksConfig), with every problem as path:line:col.

The file is optional: without it no event is written to the outbox and nothing is sent. Each webhook
names a URL, the events it takes, a secret (`whsec_` + base64, usually `${NAME}` from the
environment, as sources take theirs: missing is a warning at `hotline check`, an error at `serve`)
and a timeout for one attempt. Secrets are never logged nor repeated in a message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from app.hooks.signing import SecretError, key_of
from app.menu.schema import Duration
from app.menu.sources import ENV_NAME, bare_url, env_names, with_env
from app.records.outbox import EVENTS
from app.yamlfile import HasProblems, Problem, Reporter, YPath, read_yaml, suggest

MAX_FILE_BYTES = 1 << 20
FILE = "hooks.yaml"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WebhookModel(_Model):
    """One entry of `webhooks:` (docs/integrations.md, "Webhooks")."""

    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")]
    url: Annotated[str, Field(min_length=1, max_length=2000)]
    events: Annotated[list[str], Field(min_length=1)]
    secret: Annotated[str, Field(min_length=1, max_length=500)]
    timeout: Annotated[Duration, Field(le=60)] = 5.0  # one attempt, connecting included


class HooksFile(_Model):
    version: Literal[1]
    webhooks: list[WebhookModel] = []


@dataclass(frozen=True)
class Webhook:
    """One compiled webhook: `${NAME}` filled in."""

    name: str
    url: str = field(repr=False)  # may hold a secret of the environment
    logged: str  # the url as written, without query string or user: what logs show
    events: frozenset[str]
    key: bytes = field(repr=False)
    timeout: float = 5.0


@dataclass(frozen=True)
class HooksConfig:
    webhooks: tuple[Webhook, ...] = ()
    source: str = ""

    def subscriptions(self) -> dict[str, tuple[str, ...]]:
        """Event type -> the webhooks that take it (what the recorder writes to the outbox)."""
        return {e: tuple(w.name for w in self.webhooks if e in w.events) for e in EVENTS}


@dataclass
class HooksLoadResult(HasProblems):
    hooks: HooksConfig | None
    problems: list[Problem] = field(default_factory=list)


class _Loader(Reporter):
    def __init__(self, label: str, env: Mapping[str, str], env_required: bool) -> None:
        super().__init__(label)
        self.env = env
        self.env_required = env_required

    def describe(self, path: YPath) -> str:
        return ".".join(str(p) for p in path) or "value"

    def run(self, path: Path) -> HooksLoadResult:
        doc = read_yaml(path, self.label, MAX_FILE_BYTES, self.problems)
        if doc is None:
            return HooksLoadResult(None, self.problems)
        self.doc = doc
        data: Any = doc.data
        if data is None:  # an empty file (or only comments): no webhooks
            return HooksLoadResult(HooksConfig((), self.label), self.problems)
        if not isinstance(data, dict):
            self.error((), "the hooks file must be a mapping with version and webhooks")
            return HooksLoadResult(None, self.problems)
        try:
            model = HooksFile.model_validate(data)
        except pydantic.ValidationError as exc:
            self.pydantic_errors(exc, HooksFile, (), "the hooks file")
            return HooksLoadResult(None, self.problems)
        seen: dict[str, int] = {}
        hooks = []
        for i, m in enumerate(model.webhooks):
            if m.name in seen:
                self.error(
                    ("webhooks", i, "name"),
                    f"webhook '{m.name}' is named twice (first: webhook {seen[m.name] + 1})",
                )
            seen.setdefault(m.name, i)
            hook = self._webhook(i, m)
            if hook is not None:
                hooks.append(hook)
        if self.has_errors:
            return HooksLoadResult(None, self.problems)
        return HooksLoadResult(HooksConfig(tuple(hooks), self.label), self.problems)

    def _env(self, path: YPath, what: str, text: str) -> bool:
        """Report each malformed or missing ${NAME} of `text`; True when every one is set."""
        complete = True
        for offset, name in env_names(text):
            at = self.doc.char_at(path, text, offset)
            if ENV_NAME.fullmatch(name) is None:
                complete = False
                why = "letters, digits and _, not starting with a digit"
                self.report(
                    path,
                    "error",
                    f"{what}: '${{{name}}}' is not an environment variable's name ({why})",
                    at=at,
                )
            elif name not in self.env:
                complete = False
                severity = "error" if self.env_required else "warning"
                later = "" if self.env_required else "; `hotline serve` refuses to start without it"
                message = f"{what} uses ${{{name}}}, which is not set in the environment{later}"
                self.report(path, severity, message, at=at)
        return complete

    def _webhook(self, i: int, m: WebhookModel) -> Webhook | None:
        here: YPath = ("webhooks", i)
        who = f"webhook '{m.name}'"
        for j, event in enumerate(m.events):
            if event not in EVENTS:
                self.error(
                    (*here, "events", j),
                    f"{who}: unknown event '{event}'"
                    + suggest(event, EVENTS)
                    + f" (events: {', '.join(EVENTS)})",
                )
            elif m.events.index(event) != j:
                self.warning((*here, "events", j), f"{who}: event '{event}' is listed twice")
        url, key = None, b""
        if self._env((*here, "url"), f"{who} url", m.url):
            url = with_env(m.url, self.env, template=False)
            parts = urlsplit(url)
            if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
                self.error(
                    (*here, "url"), f"{who} url '{m.url}' is not an http:// or https:// URL with a host"
                )
                url = None
        if self._env((*here, "secret"), f"{who} secret", m.secret):
            try:
                key = key_of(with_env(m.secret, self.env, template=False))
            except SecretError as exc:
                shown = "the secret" if "${" not in m.secret else f"the value of {m.secret}"
                self.error(
                    (*here, "secret"),
                    f"{who}: {shown} {exc}; it must be whsec_ + base64 "
                    "(`hotline hooks secret` prints a new one)",
                )
        if url is None or not key:
            return None
        return Webhook(m.name, url, bare_url(m.url), frozenset(m.events), key, m.timeout)


def load_hooks(
    path: str | Path, *, env: Mapping[str, str] | None = None, env_required: bool = False
) -> HooksLoadResult:
    """Load hooks.yaml (or the one in a config folder); a missing file is no webhooks."""
    p = Path(path)
    if p.is_dir():
        p = p / FILE
    if not p.exists():
        return HooksLoadResult(HooksConfig())
    return _Loader(str(p), os.environ if env is None else env, env_required).run(p)
