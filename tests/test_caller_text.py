"""What a caller types reaches people clean (README.md, "The doors"): C1 controls and bidirectional
overrides typed over TCP, in UTF-8 and on a GB18030 listener, never reach an agent's terminal
(CALLER, CONTEXT asked, /history), the database, or what `hotline calls show` and `hotline tickets
show` print. A real server process, a real agent on its port, real callers, the real CLI."""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.text import UNSAFE
from tests.conftest import ServerProcess
from tests.helpers import CONFIG, REPO

# CSI (C1) + "31m", NEL (C1), RLO ... PDF (a reversed number), LRI ... PDI, LRM, RLM, ALM, a line
# separator, and a tab, which stays
TYPED = "话费\x9b31m不对\x85请\u202e0008\u202c回电\u2066!\u2069\u200e\u200f\u061c\u2028\t好"
SHOWN = "话费31m不对请0008回电!\t好"
HEARD = re.compile(r"工单号是 (T\d{8}-\d{4,})。")


def unsafe(text: str) -> set[str]:
    """The characters of app.text.UNSAFE in `text`, but the line ends of the protocol or output."""
    return {ch for ch in text if ord(ch) in UNSAFE and ch not in "\r\n"}


class Peer:
    """A caller or a terminal agent over TCP, speaking the listener's encoding; `everything` is all
    it was sent."""

    def __init__(self, port: int, encoding: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.encoding = encoding
        self.raw = b""
        self.seen = 0

    @property
    def everything(self) -> str:
        return self.raw.decode(self.encoding, "replace")

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode(self.encoding) + b"\r\n")

    def expect(self, text: str, timeout: float = 10.0) -> str:
        """What arrived up to and including `text` since the last expect."""
        deadline = time.monotonic() + timeout
        while (i := self.everything.find(text, self.seen)) < 0:
            left = deadline - time.monotonic()
            assert left > 0, f"{text!r} not received; got {self.everything[self.seen :]!r}"
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            assert chunk, f"closed before {text!r}; got {self.everything[self.seen :]!r}"
            self.raw += chunk
        got, self.seen = self.everything[self.seen : i + len(text)], i + len(text)
        return got

    def close(self) -> None:
        self.sock.close()


def hotline(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("encoding", ["utf-8", "gb18030"])
def test_what_a_caller_types_reaches_agents_transcripts_and_tickets_clean(
    tmp_path: Path, encoding: str
) -> None:
    data = tmp_path / "data"
    server = ServerProcess(
        [sys.executable, "-m", "app", "serve", "--config", str(CONFIG)],
        env={"HOTLINE_DATA": str(data), "HOTLINE_ENCODING": encoding},
    )
    agent = caller = None
    try:
        agent = Peer(server.agent_port, encoding)
        agent.expect("HELLO hotline agent desk")
        agent.send("/login 1001 demo1001")  # the shipped demo agent
        agent.expect("OK login 1001 ")
        agent.send("/ready")
        agent.expect("OK ready\r\n")

        caller = Peer(server.tcp_port, encoding)
        caller.expect("结束通话请输入 exit。")
        caller.send("8")
        caller.expect("请直接输入您的问题")
        caller.send(TYPED)  # a question to the robot: the agent sees it in CONTEXT
        caller.send("0")
        offer = agent.expect(" transcript /history")
        call_id = offer.split("OFFER ")[1].split()[0]
        assert f"CONTEXT {call_id} asked {SHOWN}\r\n" in offer
        agent.send("/accept")
        agent.expect(f"CONNECTED {call_id}\r\n")
        caller.expect("工号 1001 为您服务。")
        caller.send(TYPED)
        agent.expect(f"CALLER {SHOWN}\r\n")
        agent.send("/history")
        agent.expect(f"HISTORY {call_id} caller {SHOWN}\r\n")  # the chat line, read back from the database
        agent.send("/end")
        agent.expect(f"ENDED {call_id} by=agent\r\n")
        agent.send("/logout")
        agent.expect("OK logout\r\n")
        assert unsafe(agent.everything) == set(), agent.everything

        caller.expect("请对本次服务评价")  # the survey after the agent's end
        caller.send("1")
        caller.expect("欢迎致电中国移动 10086!")
        caller.send("0")  # no agent logged in now: leave a message
        caller.expect("请留言")
        caller.send(TYPED)
        heard = HEARD.search(caller.expect("感谢您的耐心。"))
        assert heard is not None
        ticket_id = heard.group(1)
        caller.send("exit")
        caller.expect("再见")
    finally:
        for peer in (agent, caller):
            if peer is not None:
                peer.close()
        server.stop()  # SIGTERM: the transcript is written before the process ends

    # what the database holds: every text of every transcript chunk, the ticket
    db = sqlite3.connect(f"file:{data / 'hotline.db'}?mode=ro", uri=True)
    stored = [x for (chunk,) in db.execute("SELECT lines FROM chunks") for x in json.loads(chunk)]
    stored += [text for (text,) in db.execute("SELECT text FROM texts")]
    stored += [text for row in db.execute("SELECT message, vars FROM tickets") for text in row]
    db.close()
    texts = [x for x in stored if isinstance(x, str)]
    assert [t for t in texts if unsafe(t)] == []
    assert texts.count(SHOWN) >= 4  # the robot question, the chat line, the message (transcript, ticket)

    # what the CLI prints, as a table and as JSON
    call = json.loads(hotline("calls", "show", call_id, "--json", "--data", str(data)))
    caller_lines = [line["text"] for line in call["lines"] if line["direction"] == "caller"]
    assert caller_lines.count(SHOWN) == 3  # the robot question, the chat line, the message
    assert not any(unsafe(line["text"]) for line in call["lines"])
    shown = hotline("calls", "show", call_id, "--data", str(data))
    assert unsafe(shown) == set() and f" {SHOWN}\n" in shown
    ticket = json.loads(hotline("tickets", "show", ticket_id, "--json", "--data", str(data)))
    assert ticket["message"] == SHOWN
    for out in (
        hotline("tickets", "show", ticket_id, "--data", str(data)),
        hotline("tickets", "list", "--data", str(data)),
    ):
        assert unsafe(out) == set() and SHOWN.split("\t", maxsplit=1)[0] in out
