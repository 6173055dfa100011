"""menu.yaml -> validated models -> checks -> compiled Graph, with every problem as path:line:col.

How this works: `yamlpos` parses safely and remembers where each key and value was written. The top
level is validated against `MenuFile`, then each node separately against the model its `type` names
(so one bad node does not hide another's errors). pydantic's error locations are paths into the
data, which `Document.where` turns into line and column. Then come the checks that need the whole
file (targets, start, regexes, templates and their variables, data tables, reachability). Every
problem is collected; the graph is compiled only when there is no error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic

from app.menu import lint, schema, sources, templates
from app.menu import nodes as handlers
from app.menu.engine import fold
from app.menu.graph import Graph, Titles
from app.yamlfile import HasProblems, Problem, Reporter, YPath, read_yaml, suggest

MAX_FILE_BYTES = 1 << 20
MAX_DATA_BYTES = 16 << 20
MAX_REGEX_LEN = 1000


@dataclass
class LoadResult(HasProblems):
    """The compiled graph (None when there were errors) and every problem found."""

    graph: Graph | None
    problems: list[Problem] = field(default_factory=list)


def _describe(path: YPath) -> str:
    """('options', '2') -> 'option "2"'; ('patterns', 0, 'go') -> 'pattern 1 go'."""
    if len(path) == 2 and path[0] == "options":
        return f'option "{path[1]}"'
    if len(path) >= 2 and path[0] == "patterns" and isinstance(path[1], int):
        rest = " ".join(str(p) for p in path[2:])
        return f"pattern {path[1] + 1}" + (f" {rest}" if rest else "")
    return ".".join(str(p) for p in path)


class _Loader(Reporter):
    def __init__(
        self,
        menu_path: Path,
        label: str,
        known: Mapping[str, Collection[str]],
        env: Mapping[str, str],
        env_required: bool,
    ) -> None:
        super().__init__(label)
        self.path = menu_path
        self.known = known  # kind -> names other files define ("intent", "queue"); absent: unchecked
        self.env = env  # where ${NAME} of sources come from
        self.env_required = env_required  # a missing ${NAME} is an error (serve), else a warning (check)
        self.broken: dict[str, dict[str, Any]] = {}  # nodes that did not validate, as written
        self.broken_sources: set[str] = set()  # sources that did not validate

    def describe(self, path: YPath) -> str:
        return _describe(path)

    # -- the steps ---------------------------------------------------------------------------

    def run(self) -> LoadResult:
        doc = read_yaml(self.path, self.label, MAX_FILE_BYTES, self.problems)
        if doc is None:
            return LoadResult(None, self.problems)
        self.doc = doc
        data = doc.data
        if not isinstance(data, dict):
            self.error((), "the menu file must be a mapping with version, start and nodes")
            return LoadResult(None, self.problems)
        top_ok = self._top(data)
        nodes_value = data.get("nodes")
        raw_nodes: dict[str, Any] = nodes_value if isinstance(nodes_value, dict) else {}
        models = self._nodes(raw_nodes)
        settings = self._settings(data)
        keys = self._keys(data, raw_nodes)
        tables = self._data(data)
        source_models = self._sources(data)
        start = data.get("start") if isinstance(data.get("start"), str) else None
        if start is not None and start not in raw_nodes:
            self.error(("start",), f"start '{start}' is not a node" + suggest(start, raw_nodes))
        self._targets(models, raw_nodes, settings)
        self._references(models)
        self._conflicts(models)
        regexes = self._regexes(models)
        self._templates(models, settings, source_models)
        raw_data = data.get("data")
        self._tables(models, tables, raw_data if isinstance(raw_data, dict) else ())
        self._source_names(models, source_models)
        self._reachability(models, start, keys, settings)
        if not self.broken:  # whole-menu advice only when every node could be read
            asks = {name: sources.variables(m) for name, m in source_models.items()}
            lint.run(models, start, keys, settings, self.error, self.warning, asks)
        self.problems.sort(key=lambda p: (p.file != self.label, p.file, p.line, p.col))
        if any(p.severity == "error" for p in self.problems) or not top_ok or start is None:
            return LoadResult(None, self.problems)
        graph = self._compile(data, models, settings, keys, tables, regexes, source_models)
        return LoadResult(graph, self.problems)

    def _top(self, data: dict[str, Any]) -> bool:
        try:
            schema.MenuFile.model_validate(data)
        except pydantic.ValidationError as exc:
            # node and settings contents are checked on their own, below
            exc_errors = [e for e in exc.errors() if tuple(e["loc"])[:1] not in (("settings",),)]
            if exc_errors:
                self.pydantic_errors(
                    pydantic.ValidationError.from_exception_data(exc.title, exc_errors),  # type: ignore[arg-type]
                    schema.MenuFile,
                    (),
                    "the menu",
                )
            return False
        return True

    def _settings(self, data: dict[str, Any]) -> schema.MenuSettings:
        raw = data.get("settings", {})
        try:
            return schema.MenuSettings.model_validate(raw if raw is not None else {})
        except pydantic.ValidationError as exc:
            self.pydantic_errors(exc, schema.MenuSettings, ("settings",), "settings")
            return schema.MenuSettings()

    def _nodes(self, raw_nodes: dict[str, Any]) -> dict[str, schema.Node]:
        models: dict[str, schema.Node] = {}
        kinds = sorted(schema.NODE_MODELS)
        for name, raw in raw_nodes.items():
            here = ("nodes", name)
            if not isinstance(raw, dict):
                self.error(here, f"node '{name}' must be a mapping with a 'type' ({', '.join(kinds)})")
                continue
            kind = raw.get("type")
            if kind is None:
                self.error(here, f"node '{name}' needs a 'type', one of: {', '.join(kinds)}")
                continue
            model = schema.NODE_MODELS.get(str(kind))
            if model is None:
                self.error(
                    (*here, "type"),
                    f"node '{name}' has unknown type '{kind}'"
                    + (suggest(str(kind), kinds) or f"; the types are: {', '.join(kinds)}"),
                )
                continue
            try:
                models[name] = model.model_validate(raw)
            except pydantic.ValidationError as exc:
                self.pydantic_errors(exc, model, here, f"node '{name}'")
                # Check the rest of the node anyway, without its misspelt keys, so that one typo
                # does not hide the node's other problems or cause false ones elsewhere.
                extra = {
                    e["loc"][0] for e in exc.errors() if e["type"] == "extra_forbidden" and len(e["loc"]) == 1
                }
                if extra and len(extra) == len(exc.errors()):
                    models[name] = model.model_validate({k: v for k, v in raw.items() if k not in extra})
                else:
                    self.broken[name] = raw
        return models

    def _keys(self, data: dict[str, Any], raw_nodes: dict[str, Any]) -> dict[str, str]:
        raw = data.get("keys")
        if not isinstance(raw, dict):
            return {}
        keys: dict[str, str] = {}
        for key, action in raw.items():
            if not isinstance(action, str):
                continue  # reported by the top-level model
            if action not in schema.KEY_ACTIONS and action not in raw_nodes:
                choices = [*schema.KEY_ACTIONS, *raw_nodes]
                self.error(
                    ("keys", key),
                    f"global key '{key}' does {action!r}, which is neither "
                    f"back, top, repeat, hangup nor a node" + suggest(action, choices),
                )
                continue
            folded = str(key).strip().casefold()
            if not folded:
                self.error(("keys", key), "a global key cannot be empty", key=True)
                continue
            keys[folded] = action
        return keys

    def _data(self, data: dict[str, Any]) -> dict[str, dict[str, Any]]:
        raw = data.get("data")
        tables: dict[str, dict[str, Any]] = {}
        if not isinstance(raw, dict):
            return tables
        for name, source in raw.items():
            here = ("data", name)
            if isinstance(source, dict):
                tables[name] = source
                continue
            if not isinstance(source, str):
                continue  # reported by the top-level model
            file = self.path.parent / source
            label = str(Path(self.label).parent / source)
            if not file.is_file():
                self.error(here, f"data '{name}': file '{source}' does not exist (looked in {file.parent})")
                continue
            doc = read_yaml(file, label, MAX_DATA_BYTES, self.problems, raw_scalars=True)
            if doc is None:
                continue
            if not isinstance(doc.data, dict):
                self.report(
                    (), "error", f"data '{name}' must be a mapping of keys to records", doc=doc, label=label
                )
                continue
            tables[name] = doc.data
        return tables

    def _sources(self, data: dict[str, Any]) -> dict[str, schema.SourceModel]:
        """`sources:`, each validated on its own, then what the model cannot tell: secrets from the
        environment, the url's scheme, headers, a body sent with GET."""
        raw = data.get("sources")
        out: dict[str, schema.SourceModel] = {}
        if not isinstance(raw, dict):
            return out
        for name, value in raw.items():
            here = ("sources", name)
            if not isinstance(value, dict):
                self.broken_sources.add(name)
                continue  # reported by the top-level model
            try:
                model = schema.SourceModel.model_validate(value)
            except pydantic.ValidationError as exc:
                self.pydantic_errors(exc, schema.SourceModel, here, f"source '{name}'")
                self.broken_sources.add(name)
                continue
            sources.check(self, name, model, self.env, self.env_required)
            out[name] = model
        return out

    def _source_names(self, models: dict[str, schema.Node], declared: Mapping[str, object]) -> None:
        for name, model in models.items():
            for path, source in model.sources():
                if source not in declared and source not in self.broken_sources:
                    self.error(
                        ("nodes", name, *path),
                        f"node '{name}' asks source '{source}', which is not in 'sources'"
                        + suggest(source, declared),
                    )

    def _conflicts(self, models: dict[str, schema.Node]) -> None:
        for name, model in models.items():
            for path, problem in model.conflicts():
                self.error(("nodes", name, *path), f"node '{name}' {problem}", key=bool(path))

    def _targets(
        self, models: dict[str, schema.Node], raw_nodes: dict[str, Any], settings: schema.MenuSettings
    ) -> None:
        for name, model in models.items():
            for path, target in model.targets():
                if target not in raw_nodes:
                    self.error(
                        ("nodes", name, *path),
                        f"node '{name}' {_describe(path)} goes to '{target}', "
                        "which is not a node" + suggest(target, raw_nodes),
                    )
                elif path == ("survey",) and getattr(models.get(target), "type", "survey") != "survey":
                    self.error(
                        ("nodes", name, *path),
                        f"node '{name}' survey goes to '{target}', which is a {models[target].type} node, "
                        "not a survey",
                    )
        if settings.on_max_failures is not None and settings.on_max_failures not in raw_nodes:
            t = settings.on_max_failures
            self.error(
                ("settings", "on_max_failures"),
                f"settings on_max_failures goes to '{t}', which is not a node" + suggest(t, raw_nodes),
            )

    def _references(self, models: dict[str, schema.Node]) -> None:
        where = {"intent": "an intent of robot.yaml", "queue": "a queue of desk.yaml"}
        for name, model in models.items():
            for path, kind, ref in model.references():
                names = self.known.get(kind)
                if names is not None and ref not in names:
                    self.error(
                        ("nodes", name, *path),
                        f"node '{name}' {_describe(path)}: '{ref}' is not {where[kind]}"
                        + suggest(ref, names),
                        key=kind == "intent",
                    )

    def _regexes(self, models: dict[str, schema.Node]) -> dict[str, re.Pattern[str]]:
        compiled: dict[str, re.Pattern[str]] = {}
        for name, model in models.items():
            for path, source in model.regexes():
                here = ("nodes", name, *path)
                if len(source) > MAX_REGEX_LEN:
                    self.error(
                        here,
                        f"node '{name}' {_describe(path)}: the regular expression is longer "
                        f"than {MAX_REGEX_LEN} characters",
                    )
                    continue
                try:
                    compiled[source] = re.compile(source)
                except re.error as exc:
                    at = self.doc.char_at(here, source, exc.pos) if exc.pos is not None else None
                    self.report(
                        here,
                        "error",
                        f"node '{name}' {_describe(path)}: the regular expression '{source}' does not "
                        f"compile: {exc.msg} at position {exc.pos} ('{source[exc.pos or 0 :][:10]}')",
                        at=at,
                    )
                    continue
            if isinstance(model, schema.MenuNode):
                for i, rule in enumerate(model.patterns):
                    rx = compiled.get(rule.match)
                    if rx is None:
                        continue
                    for var, group in rule.save.items():
                        ok = (group in rx.groupindex) if isinstance(group, str) else 0 <= group <= rx.groups
                        if not ok:
                            self.error(
                                ("nodes", name, "patterns", i, "save", var),
                                f"node '{name}' pattern {i + 1} saves group {group!r} as '{var}', but "
                                f"the expression has {rx.groups} group(s)",
                            )
        return compiled

    def _templates(
        self,
        models: dict[str, schema.Node],
        settings: schema.MenuSettings,
        source_models: Mapping[str, schema.SourceModel],
    ) -> None:
        saved: dict[str, bool] = {}
        for model in models.values():
            for var, is_record in model.saves():
                saved[var] = saved.get(var, False) or is_record
        for raw in self.broken.values():  # be generous: do not add errors about variables they save
            if isinstance(raw.get("save_as"), str):
                saved[raw["save_as"]] = True
            for rule in raw.get("patterns") or []:
                if isinstance(rule, dict) and isinstance(rule.get("save"), dict):
                    saved.update(dict.fromkeys(map(str, rule["save"]), True))
        for name, model in models.items():
            if isinstance(model, schema.TicketNode) and model.callback and model.callback not in saved:
                self.error(
                    ("nodes", name, "callback"),
                    f"node '{name}' callback '{model.callback}' is not a variable any input, lookup or "
                    "pattern saves" + suggest(model.callback, saved),
                )
        texts: list[tuple[YPath, str, str, Mapping[str, frozenset[str] | None]]] = [
            (("settings", f), f"settings {f}", getattr(settings, f), {})
            for f in ("invalid", "goodbye", "error")
        ]
        for name, model in models.items():
            texts += [
                (("nodes", name, *p), f"node '{name}' {_describe(p)}", t, model.local_refs(p))
                for p, t in model.templates()
            ]
        for name, source in source_models.items():  # ${NAME} is the environment's, not a variable
            url = sources.without_env(source.url)
            texts.append((("sources", name, "url"), f"source '{name}' url", url, {}))
            texts += [
                (("sources", name, "body", k), f"source '{name}' body {k}", sources.without_env(v), {})
                for k, v in (source.body or {}).items()
            ]
        for here, who, text, local in texts:
            cut = self.doc.comments_after.get(here)
            if cut is not None:
                line, col = cut
                self.problems.append(
                    Problem(
                        self.label,
                        line,
                        col,
                        "warning",
                        f"{who} stops before '#': YAML reads "
                        "the rest of the line as a comment; put the whole text in quotes",
                    )
                )
            try:
                tpl = templates.parse(text)
            except templates.TemplateError as exc:
                self.error(here, f"{who}: {exc}")
                continue
            for ref in tpl.refs:
                if ref.name in local:
                    fields = local[ref.name]
                    if (ref.field is None) != (fields is None) or (fields and ref.field not in fields):
                        offers = ", ".join("{" + f"{ref.name}.{f}" + "}" for f in sorted(fields or ())) or (
                            "{" + ref.name + "}"
                        )
                        self.error(here, f"{who} uses '{{{ref.text}}}'; here '{ref.name}' offers {offers}")
                    continue
                self._check_ref(here, who, ref, saved)

    def _check_ref(self, here: YPath, who: str, ref: templates.Ref, saved: dict[str, bool]) -> None:
        allowed = templates.BUILTINS.get(ref.name)
        if allowed is not None and ref.name not in saved:
            if ref.field not in allowed:
                fields = ", ".join("{" + f"{ref.name}.{f}" + "}" for f in sorted(allowed))
                self.error(here, f"{who} uses '{{{ref.text}}}'; the built-in '{ref.name}' offers {fields}")
            return
        if ref.name not in saved:
            known = [*saved, *(f"{b}.{f}" for b, fs in templates.BUILTINS.items() for f in fs)]
            self.error(
                here,
                f"{who} uses '{{{ref.text}}}', but no input, lookup or pattern saves "
                f"'{ref.name}'" + suggest(ref.text, known),
            )
        elif ref.field is not None and not saved[ref.name]:
            self.error(
                here,
                f"{who} uses '{{{ref.text}}}', but '{ref.name}' is text saved from the "
                "caller's input, which has no fields",
            )

    def _tables(
        self, models: dict[str, schema.Node], tables: dict[str, dict[str, Any]], declared: Iterable[str]
    ) -> None:
        declared = set(declared)
        for name, model in models.items():
            for path, table in model.tables():
                if table not in declared:
                    self.error(
                        ("nodes", name, *path),
                        f"node '{name}' reads table '{table}', which is not "
                        "in 'data'" + suggest(table, tables),
                    )
            if isinstance(model, schema.LookupNode) and model.fields and model.table in tables:
                columns = {
                    k for record in tables[model.table].values() if isinstance(record, dict) for k in record
                }
                for column in model.fields:
                    if column not in columns:
                        self.error(
                            ("nodes", name, "fields", column),
                            f"node '{name}' gives a title to field '{column}', which no record of "
                            f"table '{model.table}' has" + suggest(column, columns),
                            key=True,
                        )

    def _reachability(
        self,
        models: dict[str, schema.Node],
        start: str | None,
        keys: dict[str, str],
        settings: schema.MenuSettings,
    ) -> None:
        if start is None or start not in models:
            return
        extra = [t for t in keys.values() if t in models]
        if settings.on_max_failures in models:
            extra.append(settings.on_max_failures)
        seen = {start, *extra}
        todo = list(seen)
        while todo:
            model = models.get(todo.pop())
            if model is None:
                continue
            for _, target in model.targets():
                if target not in seen:
                    seen.add(target)
                    todo.append(target)
        for name, model in models.items():
            if name not in seen:
                self.warning(
                    ("nodes", name), f"node '{name}' cannot be reached from start '{start}'", key=True
                )
            if isinstance(model, schema.WaitingNode):
                disabled = {k.strip().casefold() for k in model.disable_keys}
                for k in model.disable_keys:
                    if k.strip().casefold() not in keys:
                        self.warning(
                            ("nodes", name, "disable_keys"),
                            f"node '{name}' disables '{k}', which is not a global key",
                        )
                leaves = [t for _, t in model.targets() if t != name]
                leaves += [a for k, a in keys.items() if k not in disabled and a not in ("repeat", name)]
                if isinstance(model, schema.InputNode):
                    leaves.append(model.next)
                if not leaves:
                    self.warning(
                        ("nodes", name),
                        f"{model.type} '{name}' has no way out: no option, pattern "
                        "or global key leads anywhere else",
                        key=True,
                    )
            if isinstance(model, schema.MenuNode):
                for opt in model.options:
                    f = opt.strip().casefold()
                    if f in keys and f not in {k.strip().casefold() for k in model.disable_keys}:
                        self.warning(
                            ("nodes", name, "options", opt),
                            f"node '{name}' option \"{opt}\" is never "
                            f"used: the global key '{opt}' is tried first",
                            key=True,
                        )

    def _compile(
        self,
        data: dict[str, Any],
        models: dict[str, schema.Node],
        settings: schema.MenuSettings,
        keys: dict[str, str],
        tables: dict[str, dict[str, Any]],
        regexes: dict[str, re.Pattern[str]],
        source_models: dict[str, schema.SourceModel],
    ) -> Graph:
        def text(source: str) -> handlers.Text:
            # block scalars (|) end with a newline; the I/O layer ends every line itself
            return handlers.Text.of(templates.parse(source.rstrip()))

        hangup_nodes = frozenset(n for n, m in models.items() if m.type == "hangup")
        titles = _titles(models)
        compiled_sources = {n: sources.compile_source(n, m, self.env) for n, m in source_models.items()}
        ctx = handlers.CompileContext(
            settings, keys, text, regexes.__getitem__, hangup_nodes, titles.nodes, compiled_sources
        )
        compiled = {name: handlers.HANDLERS[m.type](name, m, ctx) for name, m in models.items()}
        for node in compiled.values():  # the engine's shortcuts (see Waiting.moves, fast_keys, refused)
            if isinstance(node, handlers.WaitNode):
                _shortcuts(node, compiled)
        return Graph(
            name=str(data.get("name", "menu")),
            start=str(data["start"]),
            nodes=compiled,
            tables=tables,
            goodbye=text(settings.goodbye),
            error=text(settings.error),
            source=self.label,
            sensitive_vars=frozenset(
                m.save_as for m in models.values() if isinstance(m, schema.InputNode) and m.sensitive
            ),
            titles=titles,
            sources=compiled_sources,
        )


def _titles(models: Mapping[str, schema.Node]) -> Titles:
    """The menu's titles: each node's; a variable's is its input's or lookup's (the first that saves
    it) or, for a pattern's capture, the title of the node the pattern goes to; a lookup field's its
    `fields:` title (keyed `variable.field`)."""
    nodes = {name: m.title for name, m in models.items() if m.title}
    variables: dict[str, str] = {}
    for m in models.values():
        if isinstance(m, schema.MenuNode):  # a pattern's capture: titled as the node it leads to
            for p in m.patterns:
                for var in p.save:
                    if p.go in nodes:
                        variables.setdefault(var, nodes[p.go])
        if isinstance(m, schema.InputNode | schema.LookupNode):
            if m.title:
                variables.setdefault(m.save_as, m.title)
            if isinstance(m, schema.LookupNode):
                for column, title in m.fields.items():
                    variables.setdefault(f"{m.save_as}.{column}", title)
    return Titles(nodes, variables)


_SINGLE_KEYS = [chr(c) for c in range(0x21, 0x7F) if not chr(c).isupper()]  # printable ASCII, no space


def _widths(key: str) -> list[str]:
    """`key`, and its full-width form when that folds back to it (what a Chinese IME types: ２ *)."""
    wide = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in key)
    return [key, wide] if wide != key and fold(wide)[1] == key else [key]


def _as_typed(key: str) -> bool:
    """The engine may look `key` up as the line was typed: folding leaves it alone, and it is
    printable (so no signal of the I/O layer can match it)."""
    return key.isprintable() and fold(key)[1] == key


def _shortcuts(node: handlers.WaitNode, compiled: Mapping[str, handlers.Node]) -> None:
    """What Session.press may take for a typed line without running the node's handler (see
    Waiting.steps): each does exactly what feed() would (tests/menu/test_engine.py walks both ways
    on every menu shape of the mixed benchmark and compares)."""
    wait = node.wait
    steps = wait.steps

    def add(key: str, step: tuple[str, str]) -> None:
        if key and _as_typed(key):
            move = handlers.fixed_arrival(compiled, step[1]) if step[0] == "go" else None
            for typed in _widths(key):
                steps.setdefault(typed, move or step)

    if node.sensitive:
        object.__setattr__(wait, "secret", True)  # Waiting is frozen: set once, at compile time
    object.__setattr__(wait, "retry", handlers.joined((wait.invalid, wait.short_prompt)))
    if type(node) is handlers.TransferNode:  # its lines go to the desk (Session._desk_line)
        return
    for key, action in wait.keys.items():  # global keys come first, as in feed()
        if action in ("back", "top", "repeat"):
            add(key, (action, ""))
        elif action in compiled:
            add(key, ("go", action))
    if type(node) in (handlers.MenuNode, handlers.RobotNode):
        options: Mapping[str, str] = node.options  # type: ignore[attr-defined]
        for key, target in options.items():
            if key not in wait.keys:
                add(key, ("go", target))
    if type(node) is handlers.MenuNode:
        for key in _SINGLE_KEYS:
            if (
                key not in node.options
                and key not in wait.keys
                and not any(rule.regex.search(key) for rule in node.rules)
            ):
                add(key, ("refuse", ""))


def load_menu(
    path: str | Path,
    known: Mapping[str, Collection[str]] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    env_required: bool = False,
) -> LoadResult:
    """Load `path` (a menu.yaml, or a config folder holding one) into a Graph, or report why not.

    `known` names what the other config files define (kind -> names: "intent", "queue"), so that
    references to them are checked; kinds not given are not checked. Sources' ${NAME} come from
    `env` (default: the process's environment); one that is missing is a warning, or with
    `env_required` (the server) an error."""
    p = Path(path)
    if p.is_dir():
        p = p / "menu.yaml"
    return _Loader(p, str(p), known or {}, os.environ if env is None else env, env_required).run()
