"""The state of one rule for one group: its sliding window of matching events, whether it
is firing, and the decisions it leads to (fire, repeat, resolve).

A window slides with the event time of what it counts: an event at time t counts the
matching events in (t - window, t]. Times are kept at a resolution of a thousandth of
the window (5 minutes: 0.3 s), as (time, count) pairs, so a window holds at most about a
thousand entries however many events fall in it. The ids of the latest events (up to the
threshold, at most `MAX_IDS`) are kept for the `alert.fired` event and the notification.

`GroupState` is plain data that `to_json`/`from_json` carry into the state store; it
knows nothing of rules' conditions or notifications.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["MAX_IDS", "Decision", "GroupState"]

MAX_IDS = 50
"""The most event ids an alert carries."""

Decision = Literal["fire", "repeat", "resolve"]


@dataclass(slots=True)
class GroupState:
    """One (rule, group): its window and firing state. Times are Unix seconds."""

    window_s: float | None
    threshold: int
    starts: collections.deque[float] = field(default_factory=collections.deque)
    """Each bucket's start time, oldest first (floats and ints in deques of their own
    keep the window out of the garbage collector's way)."""
    counts: collections.deque[int] = field(default_factory=collections.deque)
    """The matching events in each bucket."""
    count: int = 0
    ids: collections.deque[str] = field(default_factory=collections.deque)
    firing: bool = False
    fired_at: float | None = None
    """Event time of the last firing (or repeat), for cooldown and repeat_interval."""
    first_at: float | None = None
    last_at: float | None = None
    fired_count: int = 0
    _resolution: float = field(default=1.0, init=False, repr=False)

    def __post_init__(self) -> None:
        self._resolution = self.window_s / 1000.0 if self.window_s else 1.0
        self.ids = collections.deque(self.ids, maxlen=max(1, min(self.threshold, MAX_IDS)))

    def add(self, at: float, event_id: str) -> bool:
        """Count one matching event at event time `at`; whether the count has reached
        the threshold."""
        window_s = self.window_s
        if window_s is not None:
            starts, resolution = self.starts, self._resolution
            if starts:
                if starts[0] + resolution <= at - window_s:
                    self.expire(at)
                start = at - at % resolution
                if starts and starts[-1] >= start:
                    self.counts[-1] += 1  # same bucket, or an event slightly out of order
                else:
                    starts.append(start)
                    self.counts.append(1)
            else:
                starts.append(at - at % resolution)
                self.counts.append(1)
        count = self.count = self.count + 1
        self.ids.append(event_id)
        if count == 1 or self.first_at is None:
            self.first_at = at
        last = self.last_at
        if last is None or at > last:
            self.last_at = at
        return count >= self.threshold

    def expire(self, now: float) -> None:
        """Forget what has slid out of the window by event time `now`."""
        if self.window_s is None:
            return
        edge = now - self.window_s - self._resolution
        starts, counts = self.starts, self.counts
        dropped = False
        while starts and starts[0] <= edge:
            starts.popleft()
            self.count -= counts.popleft()
            dropped = True
        if dropped:
            self.first_at = starts[0] if starts else None
            while len(self.ids) > max(self.count, 0):
                self.ids.popleft()

    def decide(self, at: float, cooldown_s: float, repeat_s: float | None) -> Decision | None:
        """After an event was added at `at`: fire, repeat, or nothing."""
        if self.count < self.threshold:
            return None
        if self.window_s is None:
            # Every match is an alert of its own (still subject to cooldown); the engine
            # calls `after_single` once it has read the event ids.
            if self.fired_at is not None and at - self.fired_at < cooldown_s:
                return None
            return self._fired(at, "fire")
        if not self.firing:
            if self.fired_at is not None and at - self.fired_at < cooldown_s:
                return None
            self.firing = True
            return self._fired(at, "fire")
        if repeat_s is not None and self.fired_at is not None and at - self.fired_at >= repeat_s:
            return self._fired(at, "repeat")
        return None

    def _fired(self, at: float, decision: Decision) -> Decision:
        self.fired_at = at
        self.fired_count += 1
        return decision

    def after_single(self) -> None:
        """A rule without a window starts counting afresh after each match."""
        self.count = 0
        self.ids.clear()

    def check_resolved(self, now: float) -> bool:
        """Whether a firing window has fallen back below its threshold by `now`."""
        if not self.firing or self.window_s is None:
            return False
        self.expire(now)
        if self.count >= self.threshold:
            return False
        self.firing = False
        return True

    @property
    def idle(self) -> bool:
        """Nothing left to remember but the time of the last firing."""
        return self.count == 0 and not self.firing

    def to_json(self) -> dict[str, Any]:
        return {
            "window_s": self.window_s,
            "threshold": self.threshold,
            # Two flat lists: a list of pairs costs twice as much to write, and a save
            # writes every changed window.
            "starts": list(self.starts),
            "counts": list(self.counts),
            "count": self.count,
            "ids": list(self.ids),
            "firing": self.firing,
            "fired_at": self.fired_at,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "fired_count": self.fired_count,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], window_s: float | None, threshold: int) -> GroupState:
        """The saved state, under the rule's current window and threshold (which a
        configuration change may have moved)."""
        state = cls(window_s=window_s, threshold=threshold)
        if data.get("window_s") == window_s:
            state.starts.extend(float(t) for t in data.get("starts", []))
            state.counts.extend(int(c) for c in data.get("counts", []))
            state.count = int(data.get("count", 0))
            state.ids.extend(data.get("ids", []))
            state.first_at = data.get("first_at")
            state.last_at = data.get("last_at")
        state.firing = bool(data.get("firing", False))
        state.fired_at = data.get("fired_at")
        state.fired_count = int(data.get("fired_count", 0))
        return state
