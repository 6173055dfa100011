"""`make bench`: TCP, the mixed workload, HTTP look-ups, webhook deliveries, the agent desk, boards,
replicas through Redis, records, reports, then UDP."""

import sys

from benchmarks import board, desk, hooks, lookup, mixed, records, report, shared, tcp, udp

for bench in (tcp, mixed, lookup, hooks, desk, board, shared, records, report, udp):
    sys.argv = sys.argv[:1]  # each takes its own defaults
    bench.main()
