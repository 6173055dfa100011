"""Baseline: the seed's design, socketserver.ThreadingTCPServer with a thread per caller (benchmark only)."""

from __future__ import annotations

import socketserver
import sys

from benchmarks.baselines.menu2 import MAIN, answer


class Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(MAIN)
        state = 0
        for line in self.rfile:
            state, reply = answer(state, line)
            self.wfile.write(reply)


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 4096


if __name__ == "__main__":
    Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
