"""Sources in menu.yaml, without a network: what `hotline check` says, what the engine asks and
does with the answer, what an answer becomes."""

from __future__ import annotations

from pathlib import Path

from app.configdir import load_config
from app.menu import load_menu
from app.menu.events import Lookup, LookupResult
from app.menu.sources import MAX_ANSWER, parse_answer
from tests.helpers import Walk, graph_of, hung_up, problems_as_shown, said, write_menu

MENU = """
version: 1
start: main
sources:
  billing:
    url: "http://billing.test/api/accounts/{phone}?key=${TEST_KEY}"
    headers: {Authorization: "Bearer ${TEST_TOKEN}"}
    result: data.account
  crm:
    url: "https://crm.test/calls"
    method: post
    body: {phone: "{phone}", session: "{session.id}"}
nodes:
  main:
    type: menu
    prompt: 查询请按 1,登记请按 2
    options: {"1": ask, "2": ask2}
  ask:
    type: input
    prompt: 请输入号码
    save_as: phone
    next: find
  find:
    type: lookup
    source: billing
    save_as: account
    found: balance
    missing: none
    error: busy
    wait_prompt: 正在查询,请稍候。
  ask2:
    type: input
    prompt: 请输入要登记的号码
    save_as: phone
    next: note
  note:
    type: lookup
    source: crm
    save_as: call
    found: noted
    missing: main
  balance:
    type: message
    text: "{account.name},余额 {account.balance} 元。"
    next: main
  none:
    type: message
    text: 没有 {phone} 的账户。
    next: main
  busy:
    type: message
    text: 系统繁忙。
    next: main
  noted:
    type: message
    text: 已登记,编号 {call.id}。
    next: main
"""


def lookup_of(events: list[object]) -> Lookup:
    found = [e for e in events if isinstance(e, Lookup)]
    assert len(found) == 1, events
    return found[0]


def test_the_lookup_asks_with_each_variable_url_encoded_and_waits(tmp_path: Path) -> None:
    graph = load_menu(write_menu(tmp_path, MENU), env={"TEST_KEY": "k/1", "TEST_TOKEN": "t0k"}).graph
    assert graph is not None
    walk = Walk(graph)
    walk("1")
    ask = lookup_of(walk("a/b c?&中"))
    assert ask.url == "http://billing.test/api/accounts/a%2Fb%20c%3F%26%E4%B8%AD?key=k/1"
    assert ask.body is None and ask.key == "a/b c?&中" and ask.node == "find"
    assert dict(ask.source.headers) == {"Authorization": "Bearer t0k"}
    assert "t0k" not in repr(ask.source) and "k/1" not in repr(ask.source)
    assert ask.source.shown(ask.url) == "http://billing.test/api/accounts/a%2Fb%20c%3F%26%E4%B8%AD"
    # waiting: no prompt, no lines taken, no silence timeout but the wait prompt's second
    assert walk.node is None
    assert walk("1") == [] and walk.session.press("1", walk.now) is None
    assert walk.session.deadline == walk.now + 1.0
    assert said(walk.wait(1.0)) == "正在查询,请稍候。"
    assert walk.session.deadline is None and walk.wait(60) == []  # said once
    events = walk.session.lookup_result(
        LookupResult("found", {"name": "张先生", "balance": "86.50"}), walk.now
    )
    assert said(events).startswith("张先生,余额 86.50 元。\n查询请按 1")
    assert walk.node == "main"


def test_missing_and_error_go_their_ways_and_error_defaults_to_missing(tmp_path: Path) -> None:
    graph = graph_of(tmp_path, MENU.replace("    error: busy\n", ""))
    walk = Walk(graph)
    walk("1")
    walk("13900000000")
    assert said(walk.session.lookup_result(LookupResult("missing"), walk.now)).startswith("没有 13900000000")
    walk("1")
    walk("13900000000")
    assert said(walk.session.lookup_result(LookupResult("error", reason="timeout"), walk.now)).startswith(
        "没有 13900000000"
    )
    walk = Walk(graph_of(tmp_path, MENU))
    walk("1")
    walk("13900000000")
    assert said(walk.session.lookup_result(LookupResult("error"), walk.now)).startswith("系统繁忙。")


def test_a_post_sends_its_body_of_templates(tmp_path: Path) -> None:
    walk = Walk(graph_of(tmp_path, MENU))
    walk("2")
    ask = lookup_of(walk("13800138000"))
    assert ask.source.method == "POST" and ask.url == "https://crm.test/calls"
    assert ask.body == {"phone": "13800138000", "session": "test"}
    assert ask.key == "13800138000 test"  # a canned answer's key: the variables' values
    walk.wait(5)  # no wait prompt on this node: nothing is said, the call waits on
    assert walk.node is None and not walk.session.ended
    events = walk.session.lookup_result(LookupResult("found", {"id": "C-1"}), walk.now)
    assert said(events).startswith("已登记,编号 C-1。")


def test_hanging_up_during_a_lookup_says_goodbye_and_a_late_answer_is_ignored(tmp_path: Path) -> None:
    walk = Walk(graph_of(tmp_path, MENU))
    walk("1")
    walk("13800138000")
    events = walk.session.hangup("interrupt", walk.now)
    assert hung_up(events) == "interrupt"
    assert walk.session.lookup_result(LookupResult("found", {"name": "x"}), walk.now) == []


def test_answers_become_text_records() -> None:
    path = ("data", "account")
    assert parse_answer(
        b'{"data": {"account": {"balance": 86.50, "n": 3, "ok": true, "no": null}}}', path
    ) == (
        "found",
        {"balance": "86.50", "n": "3", "ok": "true", "no": ""},  # numbers exactly as written
        "",
    )
    record = parse_answer(b'{"a": {"b": [1.50, "x", null]}, "\\u001b[2Jk": "v\\u009b\\u202e"}', ())[1]
    assert record == {"a": '{"b":[1.50,"x",null]}', "[2Jk": "v"}  # nothing that acts on a terminal
    deep = b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert parse_answer(deep, ())[0] in ("found", "error")  # never an exception
    assert parse_answer(b'{"data": {}}', path) == ("missing", None, "absent")
    assert parse_answer(b'{"data": {"account": null}}', path) == ("missing", None, "absent")
    assert parse_answer(b"null", ()) == ("missing", None, "absent")
    assert parse_answer(b'{"data": [{"id": 7}]}', ("data", "0")) == ("found", {"id": "7"}, "")
    assert parse_answer(b'{"data": {"account": "closed"}}', path) == ("error", None, "not_object")
    assert parse_answer(b"<html>busy</html>", ()) == ("error", None, "not_json")
    assert parse_answer(b'{"a": NaN}', ()) == ("error", None, "not_json")
    assert parse_answer(b"[" * 100_000, ()) == ("error", None, "not_json")  # too deep: no crash
    assert parse_answer(b"\xff\xfe{", ()) == ("error", None, "not_json")
    big = b'{"a": "' + b"x" * MAX_ANSWER + b'"}'
    assert parse_answer(big, ()) == ("error", None, "too_large")


BROKEN = """
version: 1
start: ask
sources:
  billing:
    url: "http://127.0.0.1:9/api/{phon}?k=${MISSING_KEY}"
    headers: {Authorization: "Bearer ${MISSING_TOKEN}", X-Phone: "{phone}", "bad header": x}
    body: {a: "{phone}"}
    retries: 1
    result: data..account
  other:
    url: "ftp://files.test/{phone}"
    method: post
    retries: 2
    timeout: soon
  third:
    url: "${lower-case}/x"
nodes:
  ask:
    type: input
    prompt: 号码
    save_as: phone
    next: find
  find:
    type: lookup
    source: biling
    save_as: account
    found: show
    missing: ask
  find2:
    type: lookup
    source: billing
    table: accounts
    save_as: account
    found: show
    missing: ask
  find3:
    type: lookup
    source: billing
    key: "{phone}"
    save_as: account
    found: show
    missing: ask
  find4:
    type: lookup
    table: accounts
    key: "{phone}"
    save_as: account
    found: show
    missing: ask
    wait_prompt: 请稍候
  show:
    type: message
    text: "{account.name}"
    next: ask
data:
  accounts: {}
"""


def test_check_finds_every_problem_of_sources_with_its_position(tmp_path: Path) -> None:
    result = load_menu(write_menu(tmp_path, BROKEN), env={})
    assert problems_as_shown(result, tmp_path, result.graph) == [
        "menu.yaml:5:10: error: source 'billing' url uses '{phon}', but no input, lookup or pattern saves 'phon' (did you mean 'phone'?)",
        "menu.yaml:5:43: warning: source 'billing' url uses ${MISSING_KEY}, which is not set in the environment; `hotline serve` refuses to start without it",
        "menu.yaml:6:38: warning: source 'billing' header Authorization uses ${MISSING_TOKEN}, which is not set in the environment; `hotline serve` refuses to start without it",
        "menu.yaml:6:66: error: source 'billing' header X-Phone is sent as written: a {variable} is not filled in here (put it in the url or the body; ${NAME} takes the environment's)",
        "menu.yaml:6:77: error: source 'billing' header 'bad header' is not a valid header name",
        "menu.yaml:7:11: error: source 'billing' has a body, which only a POST sends (method: POST)",
        "menu.yaml:9:13: error: source 'billing' result 'data..account' is not a dotted path like data.account",
        "menu.yaml:14:14: error: source 'other': timeout 'soon' is not a duration; write a number of seconds or text like 30s, 2m, 500ms",
        "menu.yaml:16:11: error: source 'third' url: '${lower-case}' is not an environment variable's name (letters, digits and _, not starting with a digit)",
        "menu.yaml:25:13: error: node 'find' asks source 'biling', which is not in 'sources' (did you mean 'billing'?)",
        "menu.yaml:29:3: warning: node 'find2' cannot be reached from start 'ask'",
        "menu.yaml:31:5: error: node 'find2' has both 'table' and 'source'; a lookup reads one of them",
        "menu.yaml:36:3: warning: node 'find3' cannot be reached from start 'ask'",
        "menu.yaml:39:5: error: node 'find3' has 'key', which a source does not use: its url and body say what is sent",
        "menu.yaml:43:3: warning: node 'find4' cannot be reached from start 'ask'",
        "menu.yaml:50:5: error: node 'find4' has 'wait_prompt', which goes with a 'source' (a table cannot fail)",
    ]


def test_a_url_that_is_not_http_and_a_post_with_retries(tmp_path: Path) -> None:
    text = """
    version: 1
    start: ask
    sources:
      files:
        url: "ftp://files.test/{phone}"
      crm:
        url: "https://crm.test/x"
        method: POST
        retries: 2
    nodes:
      ask: {type: input, prompt: 号码, save_as: phone, next: a}
      a: {type: lookup, source: files, save_as: r, found: b, missing: ask}
      b: {type: lookup, source: crm, save_as: s, found: ask, missing: ask}
    """
    result = load_menu(write_menu(tmp_path, text))
    assert problems_as_shown(result, tmp_path, result.graph) == [
        "menu.yaml:5:10: error: source 'files' url 'ftp://files.test/{phone}' is not an http:// or https:// URL with a host",
        "menu.yaml:9:14: warning: source 'crm': a POST is never retried (it may not be safe to send twice)",
    ]


def test_a_missing_secret_is_an_error_for_the_server(tmp_path: Path) -> None:
    write_menu(tmp_path, MENU)
    checked = load_config(tmp_path)
    assert checked.graph is not None and [p.severity for p in checked.problems] == ["warning", "warning"]
    served = load_config(tmp_path, env_required=True)
    assert served.graph is None
    assert [str(p).replace(str(tmp_path) + "/", "") for p in served.errors] == [
        "menu.yaml:5:56: error: source 'billing' url uses ${TEST_KEY}, which is not set in the environment",
        "menu.yaml:6:38: error: source 'billing' header Authorization uses ${TEST_TOKEN}, which is not set in the environment",
    ]


def test_a_variable_a_source_sends_that_some_path_does_not_set_is_a_warning(tmp_path: Path) -> None:
    text = """
    version: 1
    start: main
    sources:
      billing: {url: "http://billing.test/{phone}"}
    nodes:
      main:
        type: menu
        prompt: 1 或 2
        options: {"1": ask, "2": find}
      ask: {type: input, prompt: 号码, save_as: phone, next: find}
      find: {type: lookup, source: billing, save_as: r, found: main, missing: main}
    """
    result = load_menu(write_menu(tmp_path, text))
    assert problems_as_shown(result, tmp_path, result.graph) == [
        "menu.yaml:11:32: warning: node 'find' asks source 'billing', which sends '{phone}', but 'phone' is "
        "not set on every path to this node; it would be sent empty",
    ]
