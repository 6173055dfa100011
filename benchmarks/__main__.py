"""`make bench`: the TCP benchmark, the agent desk's, then the UDP one."""

import sys

from benchmarks import desk, tcp, udp

for bench in (tcp, desk, udp):
    sys.argv = sys.argv[:1]  # each takes its own defaults
    bench.main()
