"""Whole-menu lint: loops that never wait, dead patterns, variables unset on some path, prompts and keys."""

from __future__ import annotations

from pathlib import Path

from app.menu import load_menu
from tests.helpers import write_menu

BASE = """\
version: 1
start: main
keys: {"#": top}
nodes:
  main:
    type: menu
    prompt: 按 1 或 2
    options: {"1": ask, "2": show}
  ask: {type: input, prompt: 号码, save_as: phone, next: show}
  show: {type: message, text: "号码 {phone}", next: main}
"""


def problems(tmp_path: Path, text: str) -> list[str]:
    return [str(p).replace(str(tmp_path) + "/", "") for p in load_menu(write_menu(tmp_path, text)).problems]


def test_variable_not_set_on_every_path(tmp_path: Path) -> None:
    assert problems(tmp_path, BASE) == [
        "menu.yaml:10:31: warning: node 'show' text uses '{phone}', which is not set on every path to this node "
        "(not when coming from 'main'); it would show as nothing"
    ]


def test_variable_set_on_every_path_is_fine(tmp_path: Path) -> None:
    assert problems(tmp_path, BASE.replace('"2": show', '"2": ask')) == []


def test_lookup_sets_its_variable_only_when_found(tmp_path: Path) -> None:
    text = BASE.replace("next: show}", "next: find}") + (
        "  find: {type: lookup, table: t, key: '{phone}', save_as: rec, found: show, missing: show}\n"
        "data: {t: {'1': {n: x}}}\n"
    ).replace("", "")
    text = text.replace('text: "号码 {phone}"', 'text: "号码 {phone} {rec.n}"').replace(
        '"2": show', '"2": ask'
    )
    out = problems(tmp_path, text)
    assert out == [
        "menu.yaml:10:31: warning: node 'show' text uses '{rec.n}', which is not set on every path to this node "
        "(not when coming from 'find'); it would show as nothing"
    ]


def test_loop_that_never_waits_is_an_error(tmp_path: Path) -> None:
    text = BASE.replace('"2": show', '"2": a').replace('"2": ask', '"2": a') + (
        "  a: {type: message, text: A, next: b}\n  b: {type: message, text: B, next: a}\n"
    )
    out = [p for p in problems(tmp_path, text) if "loop" in p]
    assert out == [
        "menu.yaml:11:6: error: nodes a -> b -> a form a loop that never waits for input; a caller who gets there is cut off"
    ]


def test_pattern_hidden_by_an_option(tmp_path: Path) -> None:
    text = BASE.replace(
        'options: {"1": ask, "2": show}',
        'options: {"1": ask, "2": ask}\n    patterns: [{match: "^1$", go: show}]',
    )
    assert (
        "menu.yaml:9:24: warning: node 'main' pattern 1 can never match: option \"1\" is tried first"
        in problems(tmp_path, text)
    )


def test_pattern_after_a_catch_all(tmp_path: Path) -> None:
    text = BASE.replace(
        'options: {"1": ask, "2": show}',
        'options: {"1": ask, "2": ask}\n'
        '    patterns: [{match: ".*", go: ask}, {match: "^9(\\\\d)$", go: ask}]',
    )
    assert (
        "menu.yaml:9:48: warning: node 'main' pattern 2 can never match: pattern 1 matches everything"
        in problems(tmp_path, text)
    )


def test_duplicate_pattern(tmp_path: Path) -> None:
    text = BASE.replace(
        'options: {"1": ask, "2": show}',
        'options: {"1": ask, "2": ask}\n    patterns: [{match: "^9$", go: ask}, {match: "^9$", go: ask}]',
    )
    assert (
        "menu.yaml:9:49: warning: node 'main' pattern 2 can never match: it is the same as pattern 1"
        in problems(tmp_path, text)
    )


def test_prompt_that_does_not_mention_an_option(tmp_path: Path) -> None:
    text = BASE.replace('"2": show', '"2": ask, "5": ask')
    assert problems(tmp_path, text) == [
        "menu.yaml:8:40: warning: menu 'main' offers option \"5\" but its prompt never mentions it "
        "(set check_prompt_keys: false on the node if that is on purpose)"
    ]
    quiet = text.replace("    prompt: 按 1 或 2", "    prompt: 按 1 或 2\n    check_prompt_keys: false")
    assert problems(tmp_path, quiet) == []
