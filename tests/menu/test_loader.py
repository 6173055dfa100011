"""The loader: one test per kind of problem, each with its exact line and column."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.menu import load_menu
from app.menu.loader import MAX_FILE_BYTES
from tests.helpers import CONFIG, Walk, problems_as_shown, said, write_menu

GOOD = """\
version: 1
start: main
keys:
  "#": top
nodes:
  main:
    type: menu
    prompt: 按 1
    options:
      "1": bye
  bye:
    type: hangup
"""


def problems(tmp_path: Path, text: str, **files: str) -> list[str]:
    result = load_menu(write_menu(tmp_path, text, **files))
    return problems_as_shown(result, tmp_path, result.graph)


def test_good_menu_has_no_problems(tmp_path: Path) -> None:
    assert problems(tmp_path, GOOD) == []


def test_yaml_syntax_error_has_position(tmp_path: Path) -> None:
    text = GOOD.replace("    prompt: 按 1", "    prompt: [按 1")
    out = problems(tmp_path, text)
    assert len(out) == 1 and out[0].startswith("menu.yaml:9:") and "YAML syntax" in out[0]


def test_unquoted_star_key_gets_a_hint(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD.replace('"#": top', "*: back"))
    assert out[0].startswith("menu.yaml:4:4: error: YAML syntax")
    assert "must be quoted" in out[0]


def test_colon_in_text_gets_a_hint(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD.replace("prompt: 按 1", "prompt: 请输入: 号码:"))
    assert out[0].startswith("menu.yaml:8:") and "in quotes" in out[0]


def test_duplicate_key(tmp_path: Path) -> None:
    text = GOOD.replace('      "1": bye', '      "1": bye\n      "1": main')
    assert "menu.yaml:11:7: error: key '1' appears twice in the same mapping" in problems(tmp_path, text)


def test_unknown_top_level_key_suggests(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD.replace("keys:", "kyes:"))
    assert out == ["menu.yaml:3:1: error: the menu has an unknown key 'kyes' (did you mean 'keys'?)"]


def test_unknown_node_key_suggests(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD.replace("    prompt: 按 1", "    promt: 按 1\n    prompt: 按 1"))
    assert out == ["menu.yaml:8:5: error: node 'main' has an unknown key 'promt' (did you mean 'prompt'?)"]


def test_unknown_key_in_pattern(tmp_path: Path) -> None:
    text = GOOD.replace(
        '      "1": bye', '      "1": bye\n    patterns:\n      - mtach: "x"\n        go: bye'
    )
    out = problems(tmp_path, text)
    assert out == [
        "menu.yaml:12:9: error: node 'main' needs 'match' in pattern 1",
        "menu.yaml:12:9: error: node 'main', in pattern 1, has an unknown key 'mtach' (did you mean 'match'?)",
    ]


def test_unknown_node_type_suggests(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD.replace("type: hangup", "type: hangpu"))
    assert out == ["menu.yaml:12:11: error: node 'bye' has unknown type 'hangpu' (did you mean 'hangup'?)"]


def test_node_without_type(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD.replace("    type: hangup", "    text: x"))
    assert out[0].startswith("menu.yaml:12:5: error: node 'bye' needs a 'type', one of: hangup, input")


def test_missing_required_field(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD.replace("    prompt: 按 1\n", ""))
    assert out == ["menu.yaml:7:5: error: node 'main' needs 'prompt'"]


def test_wrong_value_kind(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD.replace("    prompt: 按 1", "    prompt: 按 1\n    timeout: soon"))
    assert out == [
        "menu.yaml:9:14: error: node 'main': timeout 'soon' is not a duration; "
        "write a number of seconds or text like 30s, 2m, 500ms"
    ]


def test_version_must_be_1(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD.replace("version: 1", "version: 2"))
    assert out == ["menu.yaml:1:10: error: version must be 1 (the only format version so far)"]


def test_target_not_a_node_suggests(tmp_path: Path) -> None:
    text = GOOD.replace('"1": bye', '"1": by')
    out = problems(tmp_path, text)
    assert (
        out[0]
        == "menu.yaml:10:12: error: node 'main' option \"1\" goes to 'by', which is not a node (did you mean 'bye'?)"
    )


def test_start_not_a_node(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD.replace("start: main", "start: mian"))
    assert out[0] == "menu.yaml:2:8: error: start 'mian' is not a node (did you mean 'main'?)"


def test_regex_that_does_not_compile(tmp_path: Path) -> None:
    text = GOOD.replace('      "1": bye', '      "1": bye\n    patterns:\n      - {match: "^(1", go: bye}')
    out = problems(tmp_path, text)
    # the column points at the '(' that is never closed: 12:17 is the quote, 12:19 the '('
    assert out == [
        "menu.yaml:12:19: error: node 'main' pattern 1 match: the regular expression '^(1' does not "
        "compile: missing ), unterminated subpattern at position 1 ('(1')"
    ]


@pytest.mark.parametrize(
    ("written", "col"),
    [
        (r"'^1(\d{3}$'", 19),  # single quotes: the text as written
        (r'"^1(\\d{3}$"', 19),  # double quotes: the escape comes after the '('
        (r"^1(\d{3}$", 18),  # plain
        (r"'it''s(\d'", 22),  # a doubled quote before the '(' is one character of the value
        (r'"\\d(\\d"', 16),  # an escape before it: the value's start, not a wrong column
    ],
)
def test_regex_error_quotes_the_pattern_and_points_at_its_character(
    tmp_path: Path, written: str, col: int
) -> None:
    text = GOOD.replace(
        '      "1": bye', f'      "1": bye\n    patterns:\n      - match: {written}\n        go: bye'
    )
    out = problems(tmp_path, text)
    assert len(out) == 1 and out[0].startswith(f"menu.yaml:12:{col}: error: node 'main' pattern 1 match: ")
    assert "\\d" in out[0] and "does not compile: missing ), unterminated subpattern" in out[0]


def test_pattern_saves_a_group_it_does_not_have(tmp_path: Path) -> None:
    text = GOOD.replace(
        '      "1": bye',
        '      "1": bye\n    patterns:\n      - {match: "^1(\\\\d)$", go: bye, save: {x: 2}}',
    )
    out = problems(tmp_path, text)
    assert out == [
        "menu.yaml:12:48: error: node 'main' pattern 1 saves group 2 as 'x', but the expression has 1 group(s)"
    ]


def test_template_variable_never_set(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD.replace("prompt: 按 1", "prompt: 您好 {nmae} 按 1"))
    assert out == [
        "menu.yaml:8:13: error: node 'main' prompt uses '{nmae}', but no input, lookup or pattern saves 'nmae'"
    ]


def test_template_field_on_text_variable(tmp_path: Path) -> None:
    text = GOOD.replace('"1": bye', '"1": ask') + (
        "  ask: {type: input, prompt: 号码, save_as: phone, next: show}\n"
        "  show: {type: message, text: '{phone.x}', next: bye}\n"
    )
    assert problems(tmp_path, text) == [
        "menu.yaml:14:31: error: node 'show' text uses '{phone.x}', but 'phone' is text saved from the caller's "
        "input, which has no fields"
    ]


def test_template_bad_brace(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD.replace("prompt: 按 1", "prompt: '按 {1+1}'"))
    assert out == [
        "menu.yaml:8:13: error: node 'main' prompt: '{1+1}' is not a variable; templates allow only {name} and {name.field}"
    ]


def test_template_unknown_builtin_field(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD.replace("prompt: 按 1", "prompt: '{now.year} 按 1'"))
    assert out == [
        "menu.yaml:8:13: error: node 'main' prompt uses '{now.year}'; the built-in 'now' offers {now.date}, {now.time}"
    ]


def test_data_file_missing(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD + "data:\n  accounts: accounts.yaml\n")
    assert out[0].startswith("menu.yaml:14:13: error: data 'accounts': file 'accounts.yaml' does not exist")


def test_data_file_not_a_mapping(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD + "data:\n  accounts: accounts.yaml\n", accounts__yaml="- a\n- b\n")
    assert out == ["accounts.yaml:1:1: error: data 'accounts' must be a mapping of keys to records"]


def test_data_file_syntax_error_names_the_data_file(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD + "data:\n  accounts: accounts.yaml\n", accounts__yaml="a: [1\n")
    assert len(out) == 1 and out[0].startswith("accounts.yaml:2:1: error: YAML syntax")


def test_lookup_table_not_in_data(tmp_path: Path) -> None:
    text = GOOD.replace('"1": bye', '"1": find').replace(
        "  bye:\n",
        "  find: {type: lookup, table: acounts, key: x, save_as: a, found: bye, missing: bye}\n  bye:\n",
    )
    text += "data:\n  accounts: {x: {n: 1}}\n"
    out = problems(tmp_path, text)
    assert out == [
        "menu.yaml:11:31: error: node 'find' reads table 'acounts', which is not in 'data' (did you mean 'accounts'?)"
    ]


def test_global_key_with_unknown_action(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD.replace('"#": top', '"#": tpo'))
    assert out == [
        "menu.yaml:4:8: error: global key '#' does 'tpo', which is neither back, top, repeat, hangup nor a node "
        "(did you mean 'top'?)"
    ]


def test_unreachable_node_is_a_warning(tmp_path: Path) -> None:
    result = load_menu(write_menu(tmp_path, GOOD + "  lost:\n    type: hangup\n"))
    assert result.graph is not None
    assert [str(p).split("/")[-1] for p in result.problems] == [
        "menu.yaml:13:3: warning: node 'lost' cannot be reached from start 'main'"
    ]


def test_menu_with_no_way_out_is_a_warning(tmp_path: Path) -> None:
    text = GOOD.replace('keys:\n  "#": top\n', "").replace('    options:\n      "1": bye\n', "")
    out = problems(tmp_path, text)
    assert (
        "menu.yaml:4:3: warning: menu 'main' has no way out: no option, pattern or global key leads anywhere else"
        in out
    )


def test_option_shadowed_by_global_key_is_a_warning(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD.replace('      "1": bye', '      "1": bye\n      "#": bye'))
    assert out == [
        "menu.yaml:11:7: warning: node 'main' option \"#\" is never used: the global key '#' is tried first"
    ]


def test_every_error_is_reported_at_once_in_order(tmp_path: Path) -> None:
    text = (
        GOOD.replace("start: main", "start: mian")
        .replace('"1": bye', '"1": by')
        .replace("type: hangup", "type: hang")
    )
    out = problems(tmp_path, text)
    assert [p.split(": ")[0] for p in out] == ["menu.yaml:2:8", "menu.yaml:10:12", "menu.yaml:12:11"]


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    out = problems(tmp_path, "\n".join(lines) + "\n")
    assert len(out) == 1 and "aliases used too many times" in out[0]


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD + "#" * (MAX_FILE_BYTES + 1) + "\n")
    assert out[0].startswith("menu.yaml:1:1: error: the file is")


def test_non_utf8_file(tmp_path: Path) -> None:
    path = write_menu(tmp_path, GOOD)
    path.write_bytes(GOOD.encode() + "prompt2: 中".encode("gbk"))
    out = [str(p).split("/")[-1] for p in load_menu(path).problems]
    assert out == ["menu.yaml:13:10: error: the file is not UTF-8 text"]


def test_python_tags_are_not_constructed(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD.replace("prompt: 按 1", "prompt: !!python/object/apply:os.system ['true']"))
    assert len(out) == 1 and out[0].startswith("menu.yaml:8:13: error: YAML value")


def test_unquoted_numeric_option_keys_work(tmp_path: Path) -> None:
    result = load_menu(write_menu(tmp_path, GOOD.replace('"1": bye', "1: bye")))
    assert result.graph is not None
    walk = Walk(result.graph)
    assert walk("1")[-1].reason == "completed"  # type: ignore[union-attr]


def test_menu_format_example_runs_as_written(tmp_path: Path) -> None:
    """The example in docs/menu-format.md, unchanged, with an accounts file beside it."""
    shutil.copy(Path(__file__).parent / "format_example.yaml", tmp_path / "menu.yaml")
    (tmp_path / "accounts.yaml").write_text(
        '"13800138000": {name: 张三, balance: "50.00"}\n', encoding="utf-8"
    )
    result = load_menu(tmp_path)
    assert result.errors == []
    assert result.graph is not None
    walk = Walk(result.graph)
    walk("1")
    assert said(walk("13800138000")).startswith("尊敬的张三,您的话费余额为 50.00 元。")
    assert said(walk("1234")).startswith("您输入的业务代码是 1234。")


def test_shipped_config_is_clean() -> None:
    result = load_menu(CONFIG)
    assert result.graph is not None
    assert result.problems == []


@pytest.mark.parametrize("bad", ["", "just text", "- a list\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, bad: str) -> None:
    out = problems(tmp_path, bad)
    assert out and out[0].startswith("menu.yaml:1:1: error")


def test_text_cut_by_a_hash_comment_is_a_warning(tmp_path: Path) -> None:
    out = problems(tmp_path, GOOD.replace("prompt: 按 1", "prompt: 按 1,返回请按 # 号"))
    assert out == [
        "menu.yaml:8:22: warning: node 'main' prompt stops before '#': YAML reads the rest of the line as a "
        "comment; put the whole text in quotes"
    ]
    assert problems(tmp_path, GOOD.replace("prompt: 按 1", "prompt: '按 1,返回请按 # 号'")) == []


def test_comments_after_other_values_are_fine(tmp_path: Path) -> None:
    assert problems(tmp_path, GOOD.replace("start: main", "start: main   # the first node")) == []


TICKETS = """\
version: 1
start: main
nodes:
  main:
    type: menu
    prompt: 话费请按 1,留言请按 2
    options: {"1": ask_phone, "2": note}
  ask_phone:
    type: input
    prompt: 请输入手机号码
    save_as: phone
    next: note
  note:
    type: ticket
    saved: "工单号 {ticket.id}"
    callback: phone
    next: main
"""


def test_a_ticket_node_loads_with_its_defaults(tmp_path: Path) -> None:
    assert problems(tmp_path, TICKETS) == []
    graph = load_menu(write_menu(tmp_path, TICKETS)).graph
    assert graph is not None
    note = graph.nodes["note"]
    assert note.wait.prompt.template.source.startswith("请留言")  # type: ignore[attr-defined]
    assert note.failed.template.source.startswith("抱歉,留言暂时无法保存")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "callback: phone",
            "callback: phon",
            "node 'note' callback 'phon' is not a variable any input, lookup or pattern saves (did you mean 'phone'?)",
        ),
        ('saved: "工单号 {ticket.id}"', 'saved: "工单号 {ticket.number}"', "'{ticket.number}'"),
        ('saved: "工单号 {ticket.id}"', 'prompt: "工单号 {ticket.id}"', "'{ticket.id}'"),
    ],
)
def test_ticket_node_mistakes_are_errors_with_positions(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    out = problems(tmp_path, TICKETS.replace(old, new))
    assert (
        len(out) == 1 and out[0].startswith("menu.yaml:1") and ": error: " in out[0] and message in out[0]
    ), out


TITLED = """\
version: 1
start: main
nodes:
  main:
    type: menu
    title: 主菜单
    prompt: 按 1 查询,按 0 转人工
    options: {"1": ask, "0": agent}
    patterns:
      - {match: '^1(\\d{3})$', go: code, save: {code: 1}}
  ask:
    type: input
    title: 手机号码
    prompt: 请输入号码
    save_as: phone
    next: find
  find:
    type: lookup
    title: 账户
    table: accounts
    key: "{phone}"
    save_as: account
    fields: {balance: 账户余额, name: 姓名}
    found: main
    missing: main
  code:
    type: message
    title: 业务代码
    text: "{code}"
    next: main
  agent:
    type: transfer
    title: 人工服务
    keys: {"1": note, "*": back}
    next: main
  note:
    type: ticket
    title: 留言
    next: main
data:
  accounts: {"13800138000": {name: 张先生, balance: 86.5, plan: {name: 5G, fee: 128}}}
"""


def test_titles_of_nodes_variables_and_lookup_fields(tmp_path: Path) -> None:
    result = load_menu(write_menu(tmp_path, TITLED))
    assert result.graph is not None, result.problems
    titles = result.graph.titles
    assert titles.nodes == {
        "main": "主菜单",
        "ask": "手机号码",
        "find": "账户",
        "code": "业务代码",
        "agent": "人工服务",
        "note": "留言",
    }
    assert titles.vars == {
        "phone": "手机号码",
        "account": "账户",
        "account.balance": "账户余额",
        "account.name": "姓名",
        "code": "业务代码",  # a pattern's capture: titled as the node it goes to
    }


def test_title_and_fields_are_checked_where_they_are_written(tmp_path: Path) -> None:
    text = TITLED.replace("    title: 手机号码\n", "    title: [手机, 号码]\n")
    text = text.replace("    title: 账户\n", "    title: ''\n")
    text = text.replace("fields: {balance: 账户余额, name: 姓名}", "fields: {balanse: 账户余额, name: 姓名}")
    out = problems(tmp_path, text)
    assert out == [
        "menu.yaml:13:12: error: node 'ask': title should be text",
        "menu.yaml:19:12: error: node 'find': title string should have at least 1 character",
    ]  # a node that did not validate is not checked further: its fields are, once it does
    text = TITLED.replace(
        "fields: {balance: 账户余额, name: 姓名}", "fields: {balanse: 账户余额, name: 姓名}"
    )
    assert problems(tmp_path, text) == [
        "menu.yaml:23:14: error: node 'find' gives a title to field 'balanse', which no record of "
        "table 'accounts' has (did you mean 'balance'?)"
    ]


def test_keys_prompt_default_and_its_checks(tmp_path: Path) -> None:
    from app.menu.nodes import TransferNode

    graph = load_menu(write_menu(tmp_path, TITLED)).graph
    assert graph is not None
    node = graph.nodes["agent"]
    assert isinstance(node, TransferNode) and node.keys_prompt is not None
    assert node.keys_prompt.template.source == "等待期间,留言请按 1,返回上一级请按 *。"  # the node's title
    text = TITLED.replace(
        '    keys: {"1": note, "*": back}\n', '    keys: {"1": note}\n    keys_prompt: 按 1 {nmae}\n'
    )
    out = problems(tmp_path, text)
    assert out == [
        "menu.yaml:35:18: error: node 'agent' keys_prompt uses '{nmae}', but no input, lookup or pattern saves 'nmae'"
    ]
    silent = TITLED.replace(
        '    keys: {"1": note, "*": back}\n', '    keys: {"1": note}\n    keys_prompt: ""\n'
    )
    graph = load_menu(write_menu(tmp_path, silent)).graph
    assert graph is not None
    node = graph.nodes["agent"]
    assert isinstance(node, TransferNode) and node.keys_prompt is None  # "" says nothing


SURVEYED = (
    GOOD.replace('      "1": bye\n', '      "1": bye\n      "0": agent\n').replace("按 1", "按 1 或 0")
    + """\
  agent:
    type: transfer
    survey: rate
    next: main
  rate:
    type: survey
    scores: {"1": 5, "2": 3}
    next: main
"""
)


def test_a_survey_and_a_transfers_survey_are_checked(tmp_path: Path) -> None:
    assert problems(tmp_path, SURVEYED) == []
    out = problems(tmp_path, SURVEYED.replace('{"1": 5, "2": 3}', '{"1": 5, "2": 7}'))
    assert out == ["menu.yaml:20:27: error: node 'rate': scores.2 should be less than or equal to 5"]
    out = problems(tmp_path, SURVEYED.replace("    survey: rate\n", "    survey: bye\n"))
    assert (
        out[0]
        == "menu.yaml:16:13: error: node 'agent' survey goes to 'bye', which is a hangup node, not a survey"
    )
    text = SURVEYED.replace("  bye:\n    type: hangup\n", "  bye:\n    type: hangup\n    survey: rate\n")
    out = problems(tmp_path, text)
    assert out == ["menu.yaml:14:5: error: node 'bye' has an unknown key 'survey'"]  # transfers only


def test_a_survey_scores_once_asks_again_once_and_goes_on(tmp_path: Path) -> None:
    graph = load_menu(write_menu(tmp_path, SURVEYED)).graph
    assert graph is not None
    from app.menu.engine import Session
    from app.menu.events import CallEnded, Score

    s = Session(graph, session_id="s", caller="c")
    s.start(0.0)
    s.feed("0", 1.0)
    events = s.desk_event(CallEnded("agent"), 2.0)
    assert "请对本次服务评价" in said(events) and s.node is not None and s.node.name == "rate"
    events = s.feed("9", 3.0)  # not a score: asked again
    assert s.node.name == "rate" and not [e for e in events if isinstance(e, Score)]
    events = s.feed("9", 4.0)  # again: on, with no score
    assert s.node.name == "main" and not [e for e in events if isinstance(e, Score)]
    s.feed("0", 5.0)
    s.desk_event(CallEnded("agent"), 6.0)
    events = s.feed("２", 7.0)  # full width, as an IME types it
    assert [e.value for e in events if isinstance(e, Score)] == [3] and s.node.name == "main"
    s.feed("0", 8.0)
    events = s.desk_event(CallEnded("caller"), 9.0)  # the caller's own end: no survey
    assert s.node.name == "main"


CALLBACK = SURVEYED.replace(
    "    survey: rate\n",
    '    survey: rate\n    keys: {"1": bye}\n    callback:\n      when_wait_over: 1m\n      key: "2"\n      next: main\n',
)


def test_a_transfers_callback_is_checked(tmp_path: Path) -> None:
    assert problems(tmp_path, CALLBACK) == []
    out = problems(tmp_path, CALLBACK.replace('      key: "2"\n', '      key: "1"\n'))
    assert out == ["menu.yaml:20:7: error: node 'agent' callback key '1' is also one of the node's keys"]
    out = problems(tmp_path, CALLBACK.replace("      next: main\n", "      next: nowhere\n"))
    assert out == [
        "menu.yaml:21:13: error: node 'agent' callback.next goes to 'nowhere', which is not a node"
    ]
    out = problems(tmp_path, CALLBACK.replace("when_wait_over: 1m", "when_wait_over: soon"))
    assert out[0].startswith("menu.yaml:19:23: error: node 'agent': callback.when_wait_over"), out
    out = problems(tmp_path, CALLBACK.replace("      key: ", "      keys: "))
    assert (
        out[0]
        == "menu.yaml:20:7: error: node 'agent', in callback, has an unknown key 'keys' (did you mean 'key'?)"
    )


def test_a_callback_is_offered_once_past_the_threshold_and_books_an_asked_number(tmp_path: Path) -> None:
    from app.menu.engine import Session
    from app.menu.events import BookCallback, QueuePosition

    graph = load_menu(write_menu(tmp_path, CALLBACK)).graph
    assert graph is not None
    s = Session(graph, session_id="s", caller="c")
    s.start(0.0)
    s.feed("0", 1.0)
    events = s.desk_event(QueuePosition(1, 1, 1), 2.0)  # 1 minute: not over when_wait_over
    assert "请按 2" not in said(events)
    events = s.feed("2", 3.0)  # not offered yet: the key just holds
    assert not [e for e in events if isinstance(e, BookCallback)] and s.node is not None
    events = s.desk_event(QueuePosition(2, 2, 2), 4.0)
    assert "如需保留排队位置并由坐席回电,请按 2。" in said(events)
    events = s.desk_event(QueuePosition(2, 2, 3), 5.0)
    assert "请按 2" not in said(events)  # offered once
    assert "回电号码" in said(s.feed("2", 6.0)) and s.masked_input  # the typed number is a secret
    assert "回电号码" in said(s.feed("0800", 7.0))  # not a mobile number: asked again
    events = s.feed("13912345678", 8.0)
    assert [e for e in events if isinstance(e, BookCallback)] == [
        BookCallback("default", "13912345678", 86400.0)
    ]
    assert "坐席将致电 *******5678" in said(events) and "13912345678" not in said(events)
    assert s.node is not None and s.node.name == "main" and not s.masked_input
