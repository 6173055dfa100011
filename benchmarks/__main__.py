"""`make bench`: TCP, the mixed workload, HTTP look-ups, the agent desk, boards, replicas through Redis,
records, reports, then UDP."""

import sys

from benchmarks import board, desk, lookup, mixed, records, report, shared, tcp, udp

for bench in (tcp, mixed, lookup, desk, board, shared, records, report, udp):
    sys.argv = sys.argv[:1]  # each takes its own defaults
    bench.main()
