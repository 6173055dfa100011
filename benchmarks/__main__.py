"""`make bench`: TCP, the mixed workload, the agent desk, boards, records, then UDP."""

import sys

from benchmarks import board, desk, mixed, records, tcp, udp

for bench in (tcp, mixed, desk, board, records, udp):
    sys.argv = sys.argv[:1]  # each takes its own defaults
    bench.main()
