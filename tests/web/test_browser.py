"""The agent console and the board in a real browser: Playwright driving Debian's chromium against a
real server process, with callers dialling in through real `nc`. Controls are found by the accessible
names docs/agent-desk.md lists. Screenshots land in .artifacts/ for a person to look at; with
HOTLINE_DOCS_SCREENSHOTS=1 they are also written to docs/ (the ones the guides show)."""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import ServerProcess
from tests.helpers import REPO, system_tool
from tests.web.conftest import PASSWORD, web_config

ARTIFACTS = REPO / ".artifacts"
WELCOME = "欢迎致电中国移动 10086"
expect.set_options(timeout=10_000)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=system_tool("chromium"), args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def desk_timings() -> dict[str, Any]:
    """The test desk's ring_timeout, wrap_up and max_missed (a test may override this fixture)."""
    return {}


@pytest.fixture
def served(tmp_path: Path, password_hash: str, desk_timings: dict[str, Any]) -> Iterator[ServerProcess]:
    folder = web_config(tmp_path / "config", password_hash, **desk_timings)
    env = {"HOTLINE_LOG_FORMAT": "json"}
    proc = ServerProcess([sys.executable, "-m", "app", "serve", "--config", str(folder)], env=env)
    yield proc
    proc.stop()


class NcCaller:
    """A caller dialling in with `nc`, as the README shows."""

    def __init__(self, port: int) -> None:
        self.child = pexpect.spawn(system_tool("nc"), ["127.0.0.1", str(port)], encoding="utf-8", timeout=10)
        self.child.expect(WELCOME)

    def press(self, line: str) -> None:
        self.child.sendline(line)

    def hears(self, text: str) -> None:
        self.child.expect_exact(text)

    def close(self) -> None:
        self.child.close(force=True)


@pytest.fixture
def callers(served: ServerProcess) -> Iterator[list[NcCaller]]:
    made: list[NcCaller] = []
    yield made
    for c in made:
        c.close()


def open_page(browser: Browser, served: ServerProcess, path: str = "/", width: int = 1280) -> Page:
    context = browser.new_context(viewport={"width": width, "height": 860}, locale="zh-CN")
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{served.admin_port}{path}")
    return page


def log_in(page: Page, agent_id: str, password: str = PASSWORD) -> None:
    page.get_by_label("工号").fill(agent_id)
    page.get_by_label("密码").fill(password)
    page.get_by_role("button", name="登录").click()


def shoot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)
    assert (ARTIFACTS / name).stat().st_size > 10_000
    if os.environ.get("HOTLINE_DOCS_SCREENSHOTS") == "1":
        shutil.copyfile(ARTIFACTS / name, REPO / "docs" / name)


def test_an_agent_answers_an_nc_caller_in_the_browser(
    browser: Browser, served: ServerProcess, callers: list[NcCaller]
) -> None:
    page = open_page(browser, served)
    expect(page.get_by_role("button", name="就绪")).to_have_count(0)  # before login: only the form
    log_in(page, "1001")
    status = page.get_by_role("status", name="状态")
    expect(status).to_contain_text("小休")
    expect(page.get_by_role("button", name="接听")).to_have_count(0)  # no offer, no 接听
    page.get_by_role("button", name="就绪").click()
    expect(status).to_contain_text("就绪")

    caller = NcCaller(served.tcp_port)
    callers.append(caller)
    caller.press("1")
    caller.press("13800138000")
    caller.hears("余额")
    caller.press("0")
    accept = page.get_by_role("button", name="接听")
    expect(accept).to_be_visible()
    expect(page.get_by_role("button", name="拒接")).to_be_visible()
    context = page.get_by_role("region", name="来电信息")
    expect(context).to_contain_text("菜单路径")
    # titles, never internal names: the menu's path and variables, the lookup's fields, the queue
    expect(context).to_contain_text("主菜单 › 手机号码 › 账户 › 话费余额 › 主菜单 › 人工服务")
    expect(context).to_contain_text("手机号码*******8000")  # the sensitive number, masked
    expect(context).to_contain_text("账户余额86.5")
    expect(context).to_contain_text("当前套餐5G 畅享 128 元套餐")
    expect(context).to_contain_text("队列人工服务")
    for internal in ("ask_phone", "find_account", "account.", "变量", "default", "[object Object]"):
        expect(context).not_to_contain_text(internal)
    expect(context).not_to_contain_text("13800138000")
    expect(context.get_by_role("list").last).to_contain_text("来电者")  # the transcript so far
    expect(page.get_by_role("region", name="队列")).to_contain_text("排队 1 人")
    shoot(page, "console-offer.png")
    accept.click()
    caller.hears("工号 1001 为您服务")
    expect(accept).to_have_count(0)

    conversation = page.get_by_role("log", name="对话")
    caller.press("我的话费怎么扣了这么多")
    expect(conversation).to_contain_text("来电者：我的话费怎么扣了这么多")
    page.get_by_label("回复").fill("您好，我帮您查一下本月账单。")
    page.get_by_role("button", name="发送").click()
    caller.hears("客服 1001:您好，我帮您查一下本月账单。")
    expect(conversation).to_contain_text("我：您好，我帮您查一下本月账单。")
    page.get_by_role("button", name="您好，请问有什么可以帮您？").click()  # a canned reply: sent at once
    caller.hears("客服 1001:您好，请问有什么可以帮您？")
    expect(conversation).to_contain_text("我：您好，请问有什么可以帮您？")
    expect(page.get_by_label("回复")).to_have_value("")
    shoot(page, "console.png")

    page.get_by_label("处理结果").select_option("已解决")
    page.get_by_role("button", name="结束通话").click()
    caller.hears("本次服务已结束")
    caller.hears("请对本次服务评价")  # the survey, then back in the menu
    caller.press("1")
    caller.hears(WELCOME)
    expect(conversation).to_contain_text("通话结束")
    expect(page.get_by_role("button", name="结束通话")).to_be_disabled()
    ended = served.wait_for("call_completed")
    assert (ended["by"], ended["disposition"]) == ("agent", "已解决")


def test_a_wrong_password_is_shown_as_an_alert(browser: Browser, served: ServerProcess) -> None:
    page = open_page(browser, served)
    log_in(page, "1001", "not-the-password")
    expect(page.get_by_role("alert")).to_contain_text("工号或密码错误")
    expect(page.get_by_role("button", name="就绪")).to_have_count(0)
    assert "not-the-password" not in page.content() and "password" not in page.url


def test_a_second_agent_gets_the_call_the_first_rejects(
    browser: Browser, served: ServerProcess, callers: list[NcCaller]
) -> None:
    pages = []
    for agent_id in ("1001", "1002"):
        page = open_page(browser, served)
        log_in(page, agent_id)
        page.get_by_role("button", name="就绪").click()
        expect(page.get_by_role("status", name="状态")).to_contain_text("就绪")
        pages.append(page)
    caller = NcCaller(served.tcp_port)
    callers.append(caller)
    caller.press("0")
    offered = served.wait_for("call_offered")
    first = pages[0] if offered["agent"] == "1001" else pages[1]
    second = pages[1] if first is pages[0] else pages[0]
    first.get_by_role("button", name="拒接").click()
    expect(first.get_by_role("button", name="接听")).to_have_count(0)
    second.get_by_role("button", name="接听").click()
    caller.hears(f"工号 {'1002' if offered['agent'] == '1001' else '1001'} 为您服务")


def test_the_board_follows_callers_joining_and_leaving(
    browser: Browser, served: ServerProcess, callers: list[NcCaller]
) -> None:
    agent = open_page(browser, served)
    log_in(agent, "1001")  # logged in, on break: callers wait
    board = open_page(browser, served, "/board")
    expect(board.get_by_role("button", name="登录")).to_be_visible()  # the login form first
    log_in(board, "9001")
    assert board.url.endswith("/board")
    queues = board.get_by_role("table", name="队列")
    for header in ("队列", "等待", "最长等待", "今日接通", "今日放弃", "服务水平"):
        expect(queues.get_by_role("columnheader", name=header, exact=True)).to_be_visible()
    row = queues.get_by_role("row").filter(has=board.get_by_role("rowheader", name="人工服务"))
    waiting = row.get_by_role("cell").nth(0)
    abandoned = row.get_by_role("cell").nth(3)
    expect(waiting).to_have_text("0")
    agents = board.get_by_role("table", name="坐席")
    expect(agents).to_contain_text("小王")
    expect(agents).not_to_contain_text("老张")  # a supervisor is not an agent on the desk

    for _ in range(2):
        c = NcCaller(served.tcp_port)
        callers.append(c)
        c.press("0")
    expect(waiting).to_have_text("2")
    expect(board.locator("#chart polyline")).to_have_count(1)
    shoot(board, "board.png")
    callers[0].press("*")  # one hangs back up to the menu
    expect(waiting).to_have_text("1")
    expect(abandoned).to_have_text("1")
    assert re.fullmatch(r"\d+:\d\d", row.get_by_role("cell").nth(1).inner_text())


def test_the_console_reflows_on_a_narrow_window(browser: Browser, served: ServerProcess) -> None:
    page = open_page(browser, served, width=375)
    log_in(page, "1001")
    expect(page.get_by_role("status", name="状态")).to_contain_text("小休")
    log = page.get_by_role("log", name="对话").bounding_box()
    queue = page.get_by_role("region", name="队列").bounding_box()
    assert log is not None and queue is not None
    assert log["y"] > queue["y"] and log["width"] <= 375  # one column, nothing off to the side
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    shoot(page, "console-narrow.png")


def _ready_agent(browser: Browser, served: ServerProcess, agent_id: str = "1001") -> Page:
    page = open_page(browser, served)
    log_in(page, agent_id)
    page.get_by_role("button", name="就绪").click()
    expect(page.get_by_role("status", name="状态")).to_have_text("就绪 · 空闲")
    return page


@pytest.mark.parametrize("desk_timings", [{"wrap": "3s"}])
def test_the_console_follows_the_desk_and_each_offer_starts_clean(
    browser: Browser, served: ServerProcess, callers: list[NcCaller]
) -> None:
    """Issue 24's walk: the status follows every change without a reload (the caller hanging up,
    wrap-up ending), controls only while connected, a disposition after a call the caller ended, and
    nothing of one call left on screen for the next."""
    page = _ready_agent(browser, served)
    status = page.get_by_role("status", name="状态")
    reply, send, end = (
        page.get_by_label("回复"),
        page.get_by_role("button", name="发送"),
        page.get_by_role("button", name="结束通话"),
    )
    disposition = page.get_by_label("处理结果")
    conversation = page.get_by_role("log", name="对话")
    context = page.get_by_role("region", name="来电信息")
    for control in (reply, send, end, disposition):
        expect(control).to_be_disabled()

    first = NcCaller(served.tcp_port)
    callers.append(first)
    first.press("0")
    first.hears("等待期间,留言请按 1,返回上一级菜单请按 *。")  # the keys, with the first announcement
    expect(status).to_have_text("就绪 · 来电振铃")
    expect(send).to_be_disabled()
    page.get_by_role("button", name="接听").click()
    expect(status).to_have_text("就绪 · 通话中")
    assert "预计等待" not in first.child.before  # the offer rang at once: no estimate was said
    for control in (reply, send, end, disposition):
        expect(control).to_be_enabled()
    first.press("我想问一下套餐")
    expect(conversation).to_contain_text("来电者：我想问一下套餐")
    reply.fill("还没发出去的话")
    disposition.select_option("已解决")

    first.close()  # the caller hangs up: the page follows, no reload
    expect(status).to_have_text("就绪 · 话后整理")
    expect(conversation).to_contain_text("通话结束（来电者挂断）")
    for control in (reply, send, end):
        expect(control).to_be_disabled()
    expect(disposition).to_be_enabled()  # a call the caller ended can still be given its disposition
    expect(context).to_contain_text("通话已结束")
    call_id = served.wait_for("call_completed", by="caller")["session_id"]
    disposition.select_option("需回访")
    expect(conversation).to_contain_text("已记录处理结果：需回访")
    served.wait_for("call_disposition", session_id=call_id, disposition="需回访")
    shoot(page, "console-wrap-up.png")
    expect(status).to_have_text("就绪 · 空闲", timeout=10_000)  # wrap-up (3 s) ended: said by the desk

    second = NcCaller(served.tcp_port)
    callers.append(second)
    second.press("0")
    expect(status).to_have_text("就绪 · 来电振铃")
    expect(reply).to_have_value("")  # a clean slate: nothing of the last call
    expect(disposition).to_have_value("")
    expect(conversation).not_to_contain_text("我想问一下套餐")
    expect(context).not_to_contain_text("通话已结束")
    second_id = served.wait_for("call_offered", agent="1001", timeout=5, session_id=_not(call_id))
    expect(context).to_contain_text(second_id["session_id"])
    page.get_by_role("button", name="拒接").click()
    expect(status).to_have_text("就绪 · 空闲")
    expect(context).not_to_contain_text(second_id["session_id"])  # the rejected caller is not shown
    expect(context).to_contain_text("暂无来电")
    shoot(page, "console-rejected.png")

    third = NcCaller(served.tcp_port)  # the rejected caller waits on; this one is offered
    callers.append(third)
    third.press("0")
    page.get_by_role("button", name="接听").click()
    third.hears("工号 1001 为您服务")
    end.click()  # the agent ends it: wrap-up, then idle, without a reload
    expect(status).to_have_text("就绪 · 话后整理")
    expect(status).to_have_text("就绪 · 空闲", timeout=10_000)
    page.get_by_role("button", name="小休").click()
    expect(status).to_have_text("小休 · 空闲")


class _not:
    """Matches any value but one (for ServerProcess.wait_for)."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return other != self.value

    __hash__ = None  # type: ignore[assignment]


@pytest.mark.parametrize("desk_timings", [{"ring": "1s", "missed": 1}])
def test_a_missed_offer_puts_the_agent_on_break_and_clears_the_caller(
    browser: Browser, served: ServerProcess, callers: list[NcCaller]
) -> None:
    page = _ready_agent(browser, served)
    status = page.get_by_role("status", name="状态")
    caller = NcCaller(served.tcp_port)
    callers.append(caller)
    caller.press("0")
    expect(status).to_have_text("就绪 · 来电振铃")
    expect(page.get_by_role("button", name="接听")).to_be_visible()
    expect(status).to_have_text("小休 · 空闲")  # missed (ring_timeout 1 s), max_missed 1: on break
    expect(page.get_by_role("button", name="接听")).to_have_count(0)
    expect(page.get_by_role("log", name="对话")).to_contain_text("未接来电")
    expect(page.get_by_role("region", name="来电信息")).to_contain_text("暂无来电")
    # every agent logged in is on break now: the waiting caller is told (at the next announcement)
    caller.hears("目前坐席暂时离开")


def test_tickets_show_titles_and_flattened_records(
    browser: Browser, served: ServerProcess, callers: list[NcCaller]
) -> None:
    page = open_page(browser, served)
    log_in(page, "1001")  # on break: the caller waits, and leaves a message instead
    expect(page.get_by_role("status", name="状态")).to_have_text("小休 · 空闲")
    caller = NcCaller(served.tcp_port)
    callers.append(caller)
    caller.press("1")
    caller.press("13800138000")
    caller.hears("余额")
    caller.press("0")
    caller.hears("目前坐席暂时离开")  # every agent logged in is on break
    caller.hears("等待期间,留言请按 1")
    caller.press("1")
    caller.hears("请留言")
    caller.press("请回电")
    caller.hears("工单号是")
    page.get_by_role("button", name="刷新").click()
    tickets = page.get_by_role("region", name="工单")
    expect(tickets).to_contain_text("请回电")
    expect(tickets).to_contain_text("账户余额86.5")
    expect(tickets).to_contain_text("姓名张先生")
    expect(tickets).to_contain_text("手机号码13800138000")  # in full: the agent calls back
    expect(tickets).to_contain_text("人工服务")
    for internal in ("[object Object]", "account", "phone", "default"):
        expect(tickets).not_to_contain_text(internal)
    shoot(page, "console-tickets.png")


def test_the_boards_chart_keeps_its_proportions(browser: Browser, served: ServerProcess) -> None:
    agent = open_page(browser, served)
    log_in(agent, "1001")
    board = open_page(browser, served, "/board")
    log_in(board, "9001")
    agents = board.get_by_role("table", name="坐席")
    expect(agents).to_contain_text("人工服务")  # the queue's title, not its name
    expect(agents).not_to_contain_text("default")
    chart = board.get_by_role("img", name="最近一小时每分钟的等待人数与接通数")
    expect(chart.locator("text").first).to_be_attached()
    # the same scale across and down: axis text is not stretched, whatever the window's width
    for width in (1280, 700):
        board.set_viewport_size({"width": width, "height": 860})
        a, d = board.evaluate(
            "(() => { const m = document.getElementById('chart').getScreenCTM(); return [m.a, m.d]; })()"
        )
        assert abs(a - d) < 0.01 * max(a, d), (width, a, d)
