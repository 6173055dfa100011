"""`make bench`: the TCP benchmark, the agent desk's, the records', then the UDP one."""

import sys

from benchmarks import desk, records, tcp, udp

for bench in (tcp, desk, records, udp):
    sys.argv = sys.argv[:1]  # each takes its own defaults
    bench.main()
