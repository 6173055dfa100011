"""`make bench`: the TCP benchmark, the agent desk's, the boards', the records', then the UDP one."""

import sys

from benchmarks import board, desk, records, tcp, udp

for bench in (tcp, desk, board, records, udp):
    sys.argv = sys.argv[:1]  # each takes its own defaults
    bench.main()
