"""Baseline: Twisted's LineReceiver on the epoll reactor (benchmark only; `pip install .[bench]`)."""

from __future__ import annotations

import sys

from twisted.internet import epollreactor

epollreactor.install()

from twisted.internet import protocol, reactor  # noqa: E402
from twisted.protocols.basic import LineReceiver  # noqa: E402

from benchmarks.baselines.menu2 import MAIN, answer  # noqa: E402


class Menu(LineReceiver):
    delimiter = b"\n"

    def connectionMade(self) -> None:
        self.state = 0
        self.transport.write(MAIN)

    def lineReceived(self, line: bytes) -> None:
        self.state, reply = answer(self.state, line)
        self.transport.write(reply)


class Factory(protocol.Factory):
    protocol = Menu


if __name__ == "__main__":
    reactor.listenTCP(int(sys.argv[1]), Factory(), backlog=4096, interface="127.0.0.1")
    reactor.run()
