"""The network layer: the telnet/nc line discipline (pure), TCP callers, terminal agents, the UDP robot."""
