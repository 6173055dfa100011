"""`make bench`: TCP, the mixed workload, the agent desk, boards, replicas through Redis, records, then UDP."""

import sys

from benchmarks import board, desk, mixed, records, shared, tcp, udp

for bench in (tcp, mixed, desk, board, shared, records, udp):
    sys.argv = sys.argv[:1]  # each takes its own defaults
    bench.main()
