"""Rate limits as GCRA (the generic cell rate algorithm): a token bucket kept as one time per client.

A client's next request is due every `interval` at the steady rate; the time it is due may run ahead
of now by `tolerance` (a burst of `burst` requests) and no further: a request that finds its due time
more than `tolerance` ahead is over the rate and is not counted. The caller keeps the due time (one
float per client) and does the two comparisons inline on its hot path:

    if due - now > rate.tolerance: refuse
    else: due = max(due, now) + rate.interval

The half interval in `tolerance` absorbs rounding in sums of large times (epoch seconds) without
letting one more request through.
"""

from __future__ import annotations


class Rate:
    """`rate` per second with bursts of `burst`."""

    __slots__ = ("interval", "tolerance")

    def __init__(self, rate: float, burst: float) -> None:
        self.interval = 1.0 / rate
        self.tolerance = (burst - 0.5) * self.interval
