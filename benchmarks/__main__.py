"""`make bench`: the TCP benchmark, then the UDP one."""

from benchmarks import tcp, udp

tcp.main()
udp.main()
