"""`Latency`: a histogram the recorder and the gateway keep on their hot paths, read as
a Prometheus histogram by kaudit.ops.metrics at scrape time. A module of its own so the
parts that keep one do not import prometheus-client (which takes long to import) until
a process serves its metrics."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

__all__ = ["LATENCY_BOUNDS", "Latency"]

LATENCY_BOUNDS: tuple[float, ...] = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Histogram buckets in seconds: from the gateway's tens of microseconds to a log write
that waits seconds for a slow disk or broker."""


class Latency:
    """A latency histogram kept by the one thread that observes it: a bisect and two
    additions per observation, no lock (prometheus-client's Histogram takes one per
    call), read as a histogram at scrape time."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float] = LATENCY_BOUNDS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative (le, count) pairs, ending with +Inf, as Prometheus reads them."""
        counts = list(self.counts)  # one copy: the observing thread goes on meanwhile
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*map(repr, self.bounds), "+Inf"), counts, strict=True):
            running += count
            out.append((bound, running))
        return out
