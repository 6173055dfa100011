"""HTTP sources of `lookup` nodes, the pure part: the compiled source, its request, its answer.

menu.yaml's `sources:` name backends (url template, method, headers, body, limits); a lookup node
with `source:` asks one. Here, without any I/O: a source compiled from its model (`${NAME}` taken
from the environment at load, the url's literal parts percent-encoded once), the request a session
makes (its url with each saved variable URL-encoded, its body as text fields), and what an answer
becomes (found with the object to save, missing, or error with a reason); and, for the loader,
what the model of a source cannot check by itself (`check`) and the compiling (`compile_source`).
The requests themselves, with their timeout, retries, cache, breaker and in-flight bound, are
app/net/sources.py's.

Answers are data, never code or markup: JSON numbers are kept as written (`86.50` stays `86.50`),
every key and value is turned into text once, here, with the characters that act on a terminal
removed (app/text.py), and only the saved object's own fields reach templates.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote, urlsplit

from app.menu.schema import SourceModel
from app.menu.templates import BUILTINS, Ref, Template, TemplateError, parse
from app.text import strip_unsafe
from app.yamlfile import Reporter, YPath

MAX_ANSWER: Final = 256 * 1024  # bytes of an answer's body; a longer one is an error
WAIT_PROMPT_AFTER: Final = 1.0  # seconds without an answer before the node's wait_prompt is said
ENV_REF: Final = re.compile(r"\$\{([^}]*)\}")  # ${NAME}; the name is checked by env_names
ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# what a url's literal text may keep as written: reserved characters and existing %-escapes
_URL_SAFE: Final = ":/?#[]@!$&'()*+,;=%~"

HEADER_NAME: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP token (RFC 9110)

FOUND: Final = "found"
MISSING: Final = "missing"
ERROR: Final = "error"


def env_names(text: str) -> list[tuple[int, str]]:
    """Each `${NAME}` in `text`: (offset of the `$`, NAME as written, which may be malformed)."""
    return [(m.start(), m.group(1)) for m in ENV_REF.finditer(text)]


def without_env(text: str) -> str:
    """`text` with every `${NAME}` removed: what is left is checked as a template."""
    return ENV_REF.sub("", text)


def with_env(text: str, env: Mapping[str, str], *, template: bool) -> str:
    """`text` with every `${NAME}` replaced by its value (missing: nothing). In a `template`, braces
    in a value are doubled so that a secret is never read as a variable."""

    def value(m: re.Match[str]) -> str:
        v = env.get(m.group(1), "")
        return v.replace("{", "{{").replace("}", "}}") if template else v

    return ENV_REF.sub(value, text)


def url_literal(template: Template) -> Template:
    """The template with its literal parts percent-encoded where they must be (spaces, non-ASCII);
    reserved characters and existing escapes stay as written."""
    parts = tuple(quote(p, safe=_URL_SAFE) if type(p) is str else p for p in template.parts)
    return Template(template.source, parts)


@dataclass(frozen=True, slots=True)
class Source:
    """One compiled entry of `sources:`. Equal sources (a reload that did not change it) share the
    I/O layer's state: breaker, cache and in-flight count."""

    name: str
    method: str  # GET or POST
    # literal parts percent-encoded, variables URL-encoded when rendered; not in repr: ${NAME} values
    url: Template = field(repr=False)
    body: tuple[tuple[str, Template], ...] | None = field(repr=False)  # POST: sent as a JSON object
    timeout: float  # the whole look-up, retries included
    retries: int  # GET only: after a connect error or 502/503/504
    cache: float  # seconds an answer (found or missing) is kept per request; 0: none
    result: tuple[str, ...]  # the dotted path to the object to save; (): the whole body
    failures: int  # the breaker opens after this many failures in a row ...
    open_for: float  # ... for this many seconds
    max_in_flight: int  # requests at once; past it, `error` at once
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # ${NAME} filled: secrets
    secrets: tuple[str, ...] = field(default=(), repr=False)  # the ${NAME} values, hidden in logged URLs
    refs: tuple[Ref, ...] = ()  # the variables of url and body, in order: a canned answer's key
    logged: str = ""  # the url as logs show it: as written, without query string (see bare_url)

    def request(self, value: Callable[[Ref], str]) -> tuple[str, dict[str, str] | None, str]:
        """(url, body, key) for a session whose variables `value` renders: each variable in the url
        URL-encoded, the body's fields as text, and the key canned answers are listed by (the
        variables' values, joined by a space)."""
        parts = self.url.parts
        url = "".join([p if type(p) is str else quote(value(p), safe="") for p in parts])  # type: ignore[arg-type]
        body = None if self.body is None else {k: t.render(value) for k, t in self.body}
        return url, body, " ".join(value(r) for r in self.refs)

    def shown(self, url: str) -> str:
        """A rendered `url` as the menu's author may see it (`hotline chat`): without its query
        string and user, and with no value of the environment in it."""
        base = bare_url(url)
        for secret in self.secrets:
            if secret:
                base = base.replace(secret, "***").replace(quote(secret, safe=_URL_SAFE), "***")
        return base


def bare_url(url: str) -> str:
    """`url` without query string, fragment, user and password. Applied to the url as written in
    menu.yaml (variables as `{phone}`, the environment's as `${NAME}`), it is what logs show: no
    secret, no caller's data."""
    base = url.split("?", 1)[0].split("#", 1)[0]
    scheme, sep, rest = base.partition("://")
    host, slash, path = rest.partition("/")
    return f"{scheme}{sep}{host.rsplit('@', 1)[-1]}{slash}{path}"


class _Number(str):
    """A JSON number as the backend wrote it (86.50 stays 86.50, not 86.5)."""

    __slots__ = ()


def _json_text(value: Any) -> str:
    """A nested object or list as compact JSON, its numbers as written."""
    if isinstance(value, _Number):
        return str.__str__(value)
    if isinstance(value, dict):
        items = (json.dumps(str(k), ensure_ascii=False) + ":" + _json_text(v) for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(map(_json_text, value)) + "]"
    return json.dumps(value, ensure_ascii=False)


def text_of(value: Any) -> str:
    """A value of an answer as a template shows it: text as sent, numbers as written, true/false,
    null as nothing, a nested object or list as JSON; never a character that acts on a terminal."""
    if isinstance(value, str):  # _Number too
        return strip_unsafe(str.__str__(value))
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return strip_unsafe(_json_text(value))
    return strip_unsafe(str(value))


def record_of(obj: Mapping[Any, Any]) -> dict[str, str]:
    """The object to save: its keys and values as text."""
    return {text_of(k): text_of(v) for k, v in obj.items()}


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_answer(body: bytes, result: tuple[str, ...]) -> tuple[str, dict[str, str] | None, str]:
    """A 2xx answer's body -> (found, the record, "") | (missing, None, why) | (error, None, why).

    Missing: the object at `result` is absent or null. Error: the body is larger than MAX_ANSWER,
    is not JSON, or what is at `result` is not an object."""
    if len(body) > MAX_ANSWER:
        return ERROR, None, "too_large"
    try:
        # numbers as their text: shown exactly as the backend wrote them
        data = json.loads(body, parse_float=_Number, parse_int=_Number, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return ERROR, None, "not_json"
    for step in result:
        if isinstance(data, dict):
            data = data.get(step)
        elif isinstance(data, list) and step.isdigit() and int(step) < len(data):
            data = data[int(step)]
        else:
            data = None
        if data is None:
            return MISSING, None, "absent"
    if data is None:
        return MISSING, None, "absent"
    if not isinstance(data, dict):
        return ERROR, None, "not_object"
    try:
        return FOUND, record_of(data), ""
    except RecursionError:  # nested deeper than text_of can follow
        return ERROR, None, "not_json"


# ---- checking and compiling `sources:` (the loader calls these) -----------------------------------


def check(r: Reporter, name: str, m: SourceModel, env: Mapping[str, str], env_required: bool) -> None:
    """What the model of a source cannot tell, reported at its place: `${NAME}` malformed or missing
    from `env` (an error when `env_required`, the server, else a warning), the url's scheme and
    host, header names and values, a body with GET, retries with POST, the result path."""
    here = ("sources", name)
    who = f"source '{name}'"
    texts: list[tuple[YPath, str, str]] = [((*here, "url"), f"{who} url", m.url)]
    texts += [((*here, "headers", k), f"{who} header {k}", v) for k, v in m.headers.items()]
    texts += [((*here, "body", k), f"{who} body {k}", v) for k, v in (m.body or {}).items()]
    complete = True  # every ${NAME} of the url is set: its scheme can be checked
    for path, what, text in texts:
        for offset, env_name in env_names(text):
            at = r.doc.char_at(path, text, offset)
            if ENV_NAME.fullmatch(env_name) is None:
                complete = complete and path[-1] != "url"
                r.report(
                    path,
                    "error",
                    f"{what}: '${{{env_name}}}' is not an environment variable's name "
                    "(letters, digits and _, not starting with a digit)",
                    at=at,
                )
            elif env_name not in env:
                complete = complete and path[-1] != "url"
                severity = "error" if env_required else "warning"
                later = "" if env_required else "; `hotline serve` refuses to start without it"
                r.report(
                    path,
                    severity,
                    f"{what} uses ${{{env_name}}}, which is not set in the environment{later}",
                    at=at,
                )
    try:
        shape = parse(without_env(m.url))
    except TemplateError:
        shape = None  # reported with the other templates
    if shape is not None and complete:
        probe = parse(with_env(m.url, env, template=True)).render(lambda _: "x")
        parts = urlsplit(probe)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            r.error(
                (*here, "url"),
                f"{who} url '{m.url}' is not an http:// or https:// URL with a host",
            )
    for key, value in m.headers.items():
        path = (*here, "headers", key)
        if HEADER_NAME.fullmatch(key) is None:
            r.error(path, f"{who} header '{key}' is not a valid header name", key=True)
        if "\r" in value or "\n" in value:
            r.error(path, f"{who} header {key} must be one line")
        elif "{" in without_env(value).replace("{{", ""):
            r.error(
                path,
                f"{who} header {key} is sent as written: a {{variable}} is not filled in "
                "here (put it in the url or the body; ${NAME} takes the environment's)",
            )
    if m.body is not None and m.method == "GET":
        r.error((*here, "body"), f"{who} has a body, which only a POST sends (method: POST)")
    if m.retries and m.method == "POST":
        r.warning((*here, "retries"), f"{who}: a POST is never retried (it may not be safe to send twice)")
    if m.result is not None and not all(m.result.split(".")):
        r.error((*here, "result"), f"{who} result '{m.result}' is not a dotted path like data.account")


def variables(m: SourceModel) -> frozenset[str]:
    """The variables a source's url and body use (for the lint of the nodes that ask it)."""
    out: set[str] = set()
    for text in (m.url, *(m.body or {}).values()):
        try:
            out.update(r.name for r in parse(without_env(text)).refs)
        except TemplateError:
            continue
    return frozenset(out - set(BUILTINS))


def compile_source(name: str, m: SourceModel, env: Mapping[str, str]) -> Source:
    """A checked source, compiled: ${NAME} filled in from `env`, templates parsed."""

    def template(text: str) -> Template:
        return parse(with_env(text, env, template=True))

    url = url_literal(template(m.url))
    body = None if m.body is None else tuple((k, template(v)) for k, v in m.body.items())
    refs: dict[str, Ref] = {}
    for tpl in (url, *(t for _, t in body or ())):
        for ref in tpl.refs:
            refs.setdefault(ref.text, ref)
    texts = (m.url, *m.headers.values(), *(m.body or {}).values())
    names = {n for text in texts for _, n in env_names(text)}
    return Source(
        name=name,
        method=m.method,
        url=url,
        body=body,
        timeout=m.timeout,
        retries=m.retries,
        cache=m.cache,
        result=tuple(m.result.split(".")) if m.result else (),
        failures=m.breaker.failures,
        open_for=m.breaker.open_for,
        max_in_flight=m.max_in_flight,
        headers=tuple((k, with_env(v, env, template=False)) for k, v in m.headers.items()),
        secrets=tuple(sorted({env[n] for n in names if env.get(n)})),
        refs=tuple(refs.values()),
        logged=bare_url(m.url),
    )
