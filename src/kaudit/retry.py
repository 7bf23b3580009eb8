"""The one retry policy: exponential backoff, capped, with optional jitter.

The recorder (retrying the audit log), the exporter runner (retrying a destination) and
the HTTP destinations (retrying one POST) all wait between tries through `Backoff`, so
how waits grow and are capped is decided in one place. Each caller keeps its own loop:
what counts as retryable and when to give up differ, how long to wait does not.
"""

from __future__ import annotations

import random


class Backoff:
    """Waits of `first_s`, doubling per try up to `max_s`.

    With `jitter`, each wait is drawn from [d/2, d] for the current step d, so many
    callers failing together do not retry in lockstep.
    """

    __slots__ = ("_step", "first_s", "jitter", "max_s")

    def __init__(self, first_s: float, max_s: float, *, jitter: bool = False) -> None:
        if first_s <= 0 or max_s < first_s:
            raise ValueError(f"backoff needs 0 < first_s <= max_s, got {first_s}, {max_s}")
        self.first_s = first_s
        self.max_s = max_s
        self.jitter = jitter
        self._step = first_s

    @property
    def step_s(self) -> float:
        """The current step before jitter: the longest the next wait can be."""
        return self._step

    def next_wait(self) -> float:
        """The wait before the next try; each call moves one step further."""
        step = self._step
        self._step = min(step * 2, self.max_s)
        return random.uniform(step / 2, step) if self.jitter else step

    def reset(self) -> None:
        """Back to the first step, after a success."""
        self._step = self.first_s
