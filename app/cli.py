"""The `hotline` command: serve, check, ask, chat, graph, test, robot eval and the records."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from app import __version__, logs
from app.hooks import commands as hooks_commands
from app.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from app.configdir import Config
    from app.menu.graph import Graph


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="run the server until SIGTERM or SIGINT",
        description="Run the hotline server on the config folder's menu.yaml (with its data files), "
        "robot.yaml (the robot's knowledge base) and desk.yaml (agent queues and agents); each file is "
        "reloaded when it changes. Every flag can also be set with its HOTLINE_* environment "
        "variable; flags win.",
    )
    fields = Settings.model_fields
    for name, info in fields.items():
        flag = "--" + name.replace("_", "-")
        env = "HOTLINE_" + name.upper()
        default = info.default
        kwargs: dict[str, object] = {
            "dest": name,
            "default": None,
            "help": f"{info.description} (env {env}, default {default})",
        }
        if name == "config":
            kwargs["metavar"] = "DIR"
        p.add_argument(flag, **kwargs)  # type: ignore[arg-type]


def _check(config: str | None) -> int:
    from app.configdir import load_config  # noqa: PLC0415 - keep `hotline --help` fast

    folder = Path(config) if config else load_settings().config
    result = load_config(folder)
    for problem in result.problems:
        print(problem)
    if result.graph is None or result.desk is None:
        print(f"{len(result.errors)} error(s), {len(result.warnings)} warning(s)")
        return 1
    g, desk = result.graph, result.desk
    print(  # the summary is the command's answer: on stdout, after the problems
        f"{g.source}: ok, menu '{g.name}' with {len(g.nodes)} nodes, {len(desk.queues)} queue(s), "
        f"{len(desk.agents)} agent(s), "
        + (f"{len(result.hooks.webhooks)} webhook(s), " if result.hooks.webhooks else "")
        + f"{len(result.warnings)} warning(s)"
    )
    return 0


def _ask(question: str, host: str | None, port: int | None, as_json: bool, timeout: float) -> int:
    import json  # noqa: PLC0415
    import os  # noqa: PLC0415
    import socket  # noqa: PLC0415

    settings = load_settings()
    host = host or ("127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host)
    port = port if port is not None else settings.udp_port
    request_id = os.urandom(4).hex()
    payload = json.dumps({"id": request_id, "q": question}, ensure_ascii=False) if as_json else question
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(payload.encode("utf-8"), (host, port))
            reply, _ = sock.recvfrom(65535)
        except TimeoutError:
            print(
                f"hotline ask: no answer from {host}:{port} within {timeout:g} s (is the server running? "
                "over the robot's rate limit?)",
                file=sys.stderr,
            )
            return 1
        except OSError as exc:
            print(f"hotline ask: {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    print(reply.decode("utf-8", "replace").rstrip("\n"))
    return 0


def _config(config: str | None) -> Config:
    """Load the config folder for an authoring command; problems go to stderr (graph None on errors)."""
    from app.configdir import load_config  # noqa: PLC0415

    folder = Path(config) if config else load_settings().config
    result = load_config(folder)
    for problem in result.problems:
        print(problem, file=sys.stderr)
    return result


def _graph_or_none(config: str | None) -> Graph | None:
    return _config(config).graph


def _chat(config: str | None, trace: bool) -> int:
    from app.authoring.chat import run_chat  # noqa: PLC0415

    graph = _graph_or_none(config)
    return 1 if graph is None else run_chat(graph, trace=trace)


def _graph(config: str | None, fmt: str) -> int:
    from app.authoring import diagram  # noqa: PLC0415

    graph = _graph_or_none(config)
    if graph is None:
        return 1
    sys.stdout.write(diagram.mermaid(graph) if fmt == "mermaid" else diagram.dot(graph))
    return 0


def _test(files: list[str], config: str | None, server: str | None, coverage: bool) -> int:
    import time  # noqa: PLC0415

    from app.authoring import conversations as conv  # noqa: PLC0415

    started = time.monotonic()
    paths = conv.collect(Path(f) for f in (files or ["tests/conversations"]))
    graph = desk = None
    if server is None:
        folder = _config(config)
        graph, desk = folder.graph, folder.desk
        if graph is None:
            return 1
    else:
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit():
            print("hotline test: --server takes HOST:PORT, e.g. 127.0.0.1:10086", file=sys.stderr)
            return 2
    outcomes = []
    problems = []
    visited: set[str] = set()
    live = None
    if graph is not None and graph.sources:  # sources no conversation replaces are really asked
        from app.net.sources import Blocking  # noqa: PLC0415

        live = Blocking()
    try:
        for path in paths:
            loaded = conv.load(path)
            problems += loaded.problems
            if any(p.severity == "error" for p in loaded.problems):
                continue
            for c, lines in zip(loaded.conversations, loaded.lines, strict=True):
                if graph is not None:
                    fetch = live.fetch if live is not None else None
                    outcome = conv.run_in_process(graph, c, lines, desk, loaded.sources, fetch)
                else:
                    try:
                        outcome = conv.run_over_tcp(
                            host, int(port), c, lines, load_settings().encoding, bool(loaded.sources)
                        )
                    except OSError as exc:
                        print(f"hotline test: cannot dial {server}: {exc.strerror or exc}", file=sys.stderr)
                        return 1
                visited |= outcome.visited
                outcomes.append((str(path), outcome))
    finally:
        if live is not None:
            live.close()
    if not paths:
        print("hotline test: no conversation files found", file=sys.stderr)
    code = conv.report(outcomes, problems, time.monotonic() - started, sys.stdout)
    if coverage and graph is not None:
        missed = sorted(set(graph.nodes) - visited)
        print(
            f"nodes visited: {len(graph.nodes) - len(missed)}/{len(graph.nodes)}"
            + (f"; never: {', '.join(missed)}" if missed else "")
        )
    return code


def _robot_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`hotline robot eval`: the knowledge base measured on questions with known answers."""
    robot = sub.add_parser(
        "robot",
        help="measure the robot's knowledge base (eval)",
        description="Tools for the robot's knowledge base (docs/robot-format.md).",
    )
    actions = robot.add_subparsers(dest="action", metavar="ACTION", required=True)
    ev = actions.add_parser(
        "eval",
        help="accuracy, clarify rate and confident-wrong rate on questions with expected intents",
        description="Ask the robot every question of FILE (question TAB expected intent, or - for "
        "none, optionally TAB kind) and print accuracy, clarify rate and confident-wrong rate, "
        "per kind, then every miss. Exits 1 when a floor given is missed.",
    )
    ev.add_argument("file", nargs="?", metavar="FILE", help="default: robot-eval.tsv in the config folder")
    ev.add_argument("--config", metavar="DIR", help="config folder (default: HOTLINE_CONFIG or config)")
    ev.add_argument("--min-accuracy", type=float, metavar="X", help="exit 1 when accuracy is below X (0-1)")
    ev.add_argument(
        "--max-confident-wrong",
        type=float,
        metavar="X",
        help="exit 1 when the confident-wrong rate is above X",
    )


def _robot_eval(args: argparse.Namespace) -> int:
    from app.robot import evaluate, load_robot  # noqa: PLC0415

    folder = Path(args.config) if args.config else load_settings().config
    loaded = load_robot(folder)
    for problem in loaded.problems:
        print(problem, file=sys.stderr)
    if loaded.matcher is None:
        return 1
    path = Path(args.file) if args.file else (folder if folder.is_dir() else folder.parent) / "robot-eval.tsv"
    try:
        cases = evaluate.load(path)
    except OSError as exc:
        print(f"hotline robot eval: {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except (evaluate.EvalFileError, UnicodeDecodeError) as exc:
        print(f"hotline robot eval: {exc}", file=sys.stderr)
        return 2
    report = evaluate.evaluate(loaded.matcher, cases)
    sys.stdout.write(evaluate.format_report(report, str(path)))
    code = 0
    overall = report.overall
    if args.min_accuracy is not None and overall.accuracy < args.min_accuracy:
        print(f"accuracy {overall.accuracy:.1%} is below {args.min_accuracy:.1%}", file=sys.stderr)
        code = 1
    if args.max_confident_wrong is not None and overall.confident_wrong_rate > args.max_confident_wrong:
        print(
            f"confident-wrong {overall.confident_wrong_rate:.1%} is above {args.max_confident_wrong:.1%}",
            file=sys.stderr,
        )
        code = 1
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hotline", description="A 10086-style customer-service bot server.")
    parser.add_argument("--version", action="version", version=f"hotline {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _serve_parser(sub)
    check = sub.add_parser(
        "check",
        help="load and lint menu.yaml, robot.yaml, desk.yaml and hooks.yaml; print problems as path:line:col",
        description="Check the config folder: menu.yaml (and the data files it names), robot.yaml "
        "(the robot's knowledge base), desk.yaml (agent queues and agents) and hooks.yaml (webhooks, "
        "optional), together, as the server loads them. Prints every problem as "
        "path:line:col: error|warning: message, then a summary line; exits 1 on any error.",
    )
    check.add_argument(
        "--config",
        metavar="DIR",
        help="config folder (menu.yaml, robot.yaml, desk.yaml) or a menu file with the others beside "
        "it (default: HOTLINE_CONFIG or config)",
    )
    ask = sub.add_parser(
        "ask",
        help="ask the UDP robot a question and print the answer",
        description="Send QUESTION to the robot on HOST:PORT (UDP) and print its answer.",
    )
    ask.add_argument("question", metavar="QUESTION")
    ask.add_argument("--host", help="default: 127.0.0.1 (or HOTLINE_HOST)")
    ask.add_argument("--port", type=int, help="default: HOTLINE_UDP_PORT or 10086")
    ask.add_argument(
        "--json", action="store_true", help="ask in JSON and print the JSON reply (intent, confidence)"
    )
    ask.add_argument("--timeout", type=float, default=2.0, help="seconds to wait (default 2)")
    chat = sub.add_parser(
        "chat",
        help="walk the menu in the terminal, offline",
        description="Walk the menu with the real engine, no server and no network. "
        "/wait simulates silence, /vars shows saved variables, /quit hangs up.",
    )
    chat.add_argument("--config", metavar="DIR", help="config folder (default: HOTLINE_CONFIG or config)")
    chat.add_argument("--trace", action="store_true", help="show the node and variables after every step")
    graph = sub.add_parser(
        "graph",
        help="draw the menu as a Mermaid or Graphviz diagram",
        description="Print the menu as a diagram: Mermaid (renders on GitHub) or DOT.",
    )
    graph.add_argument("--config", metavar="DIR", help="config folder (default: HOTLINE_CONFIG or config)")
    graph.add_argument("--format", choices=["mermaid", "dot"], default="mermaid")
    test = sub.add_parser(
        "test",
        help="run conversation tests against the menu",
        description="Run conversation tests (docs/menu-format.md, 'Testing a menu'): in "
        "process with a simulated clock, or against a running server with --server.",
    )
    test.add_argument(
        "files", nargs="*", metavar="FILES", help="files or folders (default: tests/conversations)"
    )
    test.add_argument("--config", metavar="DIR", help="config folder (default: HOTLINE_CONFIG or config)")
    test.add_argument(
        "--server", metavar="HOST:PORT", help="dial a running server instead of running in process"
    )
    test.add_argument("--coverage", action="store_true", help="list the menu nodes no conversation visits")
    _records_parsers(sub)
    _report_parser(sub)
    hooks_commands.add_parser(sub)
    _robot_parser(sub)
    sub.add_parser(
        "passwd",
        help="read an agent password from stdin, print its hash for desk.yaml",
        description="Read a password from standard input (the first line; type it, or pipe it: "
        "echo -n SECRET | hotline passwd) and print a salted scrypt hash for an agent's "
        "password_hash in desk.yaml. The password itself is never stored or printed.",
    )
    return parser


def _list_and_show(
    parser: argparse.ArgumentParser, show_help: str, key: str, metavar: str
) -> tuple[
    argparse._SubParsersAction[argparse.ArgumentParser], argparse.ArgumentParser, argparse.ArgumentParser
]:
    """ACTION subcommands `list` (newest first, --limit) and `show KEY`."""
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="newest first")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    show = actions.add_parser("show", help=show_help)
    show.add_argument(key, metavar=metavar)
    return actions, listing, show


def _records_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`hotline tickets list|show|close` and `hotline calls list|show`."""
    data = {"metavar": "DIR", "help": "data folder (default: HOTLINE_DATA or data)"}
    url = {"metavar": "URL", "help": "PostgreSQL database instead (default: HOTLINE_DATABASE_URL)"}
    tickets = sub.add_parser(
        "tickets",
        help="list, show and close the tickets callers left",
        description="The tickets in the records database: the data folder's SQLite file, or PostgreSQL "
        "(HOTLINE_DATABASE_URL). Readable while the server runs.",
    )
    tsub, listing, show = _list_and_show(tickets, "one ticket in full", "id", "ID")
    listing.add_argument("--status", choices=["open", "closed"])
    close = tsub.add_parser("close", help="mark a ticket closed")
    close.add_argument("id", metavar="ID")
    close.add_argument("--note", help="what was done")
    calls = sub.add_parser(
        "calls",
        help="list calls and show their transcripts",
        description="Call transcripts in the records database: the data folder's SQLite file, or "
        "PostgreSQL (HOTLINE_DATABASE_URL). Readable while the server runs.",
    )
    _, clist, cshow = _list_and_show(calls, "one call's transcript", "session_id", "SESSION_ID")
    backup = sub.add_parser(
        "backup",
        help="copy the tickets and transcripts database, also while the server runs",
        description="Write a consistent copy of the data folder's database to FILE (SQLite's online "
        "backup: safe while the server writes). Restore by stopping the server and putting the copy "
        "in place as hotline.db. Records in PostgreSQL are backed up with pg_dump.",
    )
    backup.add_argument("file", metavar="FILE", help="the copy to write (must not exist)")
    backup.add_argument("--data", **data)  # type: ignore[arg-type]
    backup.add_argument("--database-url", **url)  # type: ignore[arg-type]
    for p in (listing, show, close, clist, cshow):
        p.add_argument("--data", **data)  # type: ignore[arg-type]
        p.add_argument("--database-url", **url)  # type: ignore[arg-type]
        if p is not close:
            p.add_argument("--json", action="store_true", help="JSON instead of a table")


def _report_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`hotline report [abandoned]` (docs/reports.md)."""
    import datetime as dt  # noqa: PLC0415

    p = sub.add_parser(
        "report",
        help="service level, abandonment, waits and satisfaction by queue, day, hour or agent",
        description="Report on the desk calls in the records database (docs/reports.md), readable while "
        "the server runs. Days are the server's (HOTLINE_TIMEZONE); each queue's service_level_seconds and "
        "short_abandon are read from desk.yaml in the config folder. `hotline report abandoned` lists "
        "the abandoned and timed-out calls, newest first, with the caller's phone.",
    )
    p.add_argument("what", nargs="?", choices=["abandoned"], help="the abandoned list instead")
    p.add_argument("--from", dest="first", type=dt.date.fromisoformat, metavar="DATE", help="default: today")
    p.add_argument("--to", dest="last", type=dt.date.fromisoformat, metavar="DATE", help="default: --from")
    p.add_argument("--queue", metavar="Q", help="only this queue")
    p.add_argument("--by", choices=["day", "hour", "agent"], help="default: by queue")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="a JSON array of objects")
    fmt.add_argument("--csv", action="store_true", help="CSV with a header row")
    p.add_argument(
        "--config", metavar="DIR", help="config folder with desk.yaml (default: HOTLINE_CONFIG or config)"
    )
    p.add_argument("--data", metavar="DIR", help="data folder (default: HOTLINE_DATA or data)")
    p.add_argument(
        "--database-url", metavar="URL", help="PostgreSQL database instead (default: HOTLINE_DATABASE_URL)"
    )


def _report(args: argparse.Namespace) -> int:
    import time  # noqa: PLC0415

    from app import zone  # noqa: PLC0415
    from app.desk.loader import load_desk  # noqa: PLC0415
    from app.records.report import Levels  # noqa: PLC0415

    if args.what == "abandoned" and args.by:
        print("hotline report: --by is for the report, not the abandoned list", file=sys.stderr)
        return 2
    args.first = args.first or zone.day(time.time())
    args.last = args.last or args.first
    if args.last < args.first:
        print("hotline report: --to is before --from", file=sys.stderr)
        return 2
    loaded = load_desk(Path(args.config) if args.config else load_settings().config)
    if loaded.desk is None:  # the thresholds are the config's: a report with other ones would mislead
        for problem in loaded.problems:
            print(problem, file=sys.stderr)
        return 1
    queues = loaded.desk.queues.values()
    args.levels = {q.name: Levels(q.model.service_level_seconds, q.model.short_abandon) for q in queues}
    args.names = {a.id: a.name for a in loaded.desk.agents.values()}
    return _records(args)


def _records(args: argparse.Namespace) -> int:
    from app.records.commands import records_target, run  # noqa: PLC0415

    target = records_target(getattr(args, "database_url", None), args.data)
    return run(args.command, getattr(args, "action", ""), args, target)


def _passwd() -> int:
    import getpass  # noqa: PLC0415

    from app.desk.passwords import hash_password  # noqa: PLC0415

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("hotline passwd: the two passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 8:
        print("hotline passwd: use at least 8 characters", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `hotline graph | head`: the reader left; that is not an error
        import os  # noqa: PLC0415

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "check":
        try:
            return _check(args.config)
        except SettingsError as exc:
            print(f"hotline: bad settings:\n{exc}", file=sys.stderr)
            return 2
    if args.command in ("chat", "graph", "test"):
        try:
            if args.command == "chat":
                return _chat(args.config, args.trace)
            if args.command == "graph":
                return _graph(args.config, args.format)
            return _test(args.files, args.config, args.server, args.coverage)
        except SettingsError as exc:
            print(f"hotline: bad settings:\n{exc}", file=sys.stderr)
            return 2
    if args.command == "passwd":
        return _passwd()
    if args.command == "robot":
        try:
            return _robot_eval(args)
        except SettingsError as exc:
            print(f"hotline: bad settings:\n{exc}", file=sys.stderr)
            return 2
    if args.command == "hooks":
        try:
            return hooks_commands.run(args)
        except SettingsError as exc:
            print(f"hotline: bad settings:\n{exc}", file=sys.stderr)
            return 2
    if args.command in ("tickets", "calls", "backup", "report"):
        try:
            return _report(args) if args.command == "report" else _records(args)
        except SettingsError as exc:
            print(f"hotline: bad settings:\n{exc}", file=sys.stderr)
            return 2
    if args.command == "ask":
        try:
            return _ask(args.question, args.host, args.port, args.json, args.timeout)
        except SettingsError as exc:
            print(f"hotline: bad settings:\n{exc}", file=sys.stderr)
            return 2
    if args.command == "serve":
        overrides = {name: getattr(args, name) for name in Settings.model_fields}
        try:
            settings = load_settings(**overrides)
        except SettingsError as exc:
            print(f"hotline: bad settings:\n{exc}", file=sys.stderr)
            return 2
        logs.configure(settings.log_level, settings.resolved_log_format())
        from app.server import serve  # noqa: PLC0415

        return serve(settings)
    parser.print_help()
    return 2
