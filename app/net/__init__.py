"""The network layer: the telnet/nc line discipline (pure), TCP caller sessions and the admin endpoint."""
