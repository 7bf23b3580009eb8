"""Judging events against the compiled rules (`Evaluator`): which rules an event can
match, their groups and windows, and the firings and resolutions that follow. No I/O:
the engine reads the log, saves what changed and sends the notifications; the rules come
from kaudit.alerts.ruleset, each group's window from kaudit.alerts.windows.

`Evaluator.judge` runs the rules an event can match (indexed by the event types their
conditions name), `Evaluator.sweep` resolves windows that fell back below their
threshold, and `Evaluator.observe` feeds the rules whose facts are not events (a
checkpoint heartbeat that is overdue, an exporter lagging), which fire while the fact
holds and resolve when it stops.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from kaudit.alerts.compiled import EvalError, Getters, path_getter
from kaudit.alerts.ruleset import CompiledRule, projection_for, reading_projected
from kaudit.alerts.state import AlertRecord
from kaudit.alerts.windows import Decision, GroupState

__all__ = [
    "MAX_CLOCK_SKEW_S",
    "MAX_GROUPS_PER_RULE",
    "OVERFLOW_GROUP",
    "Evaluator",
    "dedup_key",
    "event_time",
]

MAX_CLOCK_SKEW_S = 5.0
"""How far ahead of the wall clock an event time may move windows. Windows slide by
event time, and every window is expired up to the latest time seen: one event dated
years ahead (a wrong clock, or a forged time) would otherwise empty every window at
once and keep them empty until a restart. Such an event is still judged, its own
timestamp kept in the alert's data, but counts at wall clock + this skew. Small,
because an event dated within the skew still moves every window by up to the skew (a
`30s` window would lose a sixth of its span to 5 s), while an honest host's clock is
within a second of ours and its events are read after they were written."""

MAX_GROUPS_PER_RULE = 10_000
"""The most groups a rule keeps state for. Groups come from event values an attacker
may choose (a client address, a principal): past this, a new group's events are
counted together in the rule's `OVERFLOW_GROUP` (which alerts like any group) and in
`Evaluator.overflowed`, never dropped, while memory and the state store stay bounded."""

OVERFLOW_GROUP = "*overflow*"
"""The group of a rule's events past `MAX_GROUPS_PER_RULE` groups (not a JSON array,
so never the name of a real group)."""


@functools.lru_cache(maxsize=4096)
def dedup_key(rule: str, group: str) -> str:
    """The same for every alert of one rule and group (PagerDuty's dedup_key)."""
    digest = hashlib.sha256(f"{rule}\n{group}".encode()).hexdigest()[:32]
    return f"kaudit-{digest}"


def event_time(event: dict[str, Any]) -> float | None:
    """The event's timestamp as Unix seconds; None when it has none that reads."""
    stamp = event.get("timestamp")
    if type(stamp) is not str:
        return None
    return _stamp_seconds(stamp)


@functools.lru_cache(maxsize=1024)
def _stamp_seconds(stamp: str) -> float | None:
    """Parsed once per distinct timestamp: events written together share it."""
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


_NO_ALERTS: tuple[AlertRecord, ...] = ()
"""What judging most events raises (shared: no list per event)."""


class Evaluator:
    """The rules and the state of each of their groups.

    Events are decoded dicts; with `projected`, when every condition is compiled, they
    are lines decoded by `projection` instead (the engine's way: `judge` then takes the
    line too, decoded whole only for an alert's data)."""

    def __init__(self, rules: list[CompiledRule], *, projected: bool = False) -> None:
        self.projection = projection_for(rules) if projected else None
        get: Getters = path_getter if self.projection is None else self.projection.getter
        if self.projection is not None:
            rules = [reading_projected(rule, self.projection) for rule in rules]
        self._timestamp = get(("timestamp",))
        self._event_id = get(("event_id",))
        self.rules = {r.name: r for r in rules}
        self.states: dict[tuple[str, str], GroupState] = {}
        self.dirty: set[tuple[str, str]] = set()
        self._by_type: dict[str, list[CompiledRule]] = {}
        self._by_path: dict[tuple[str, ...], dict[str, list[CompiledRule]]] = {}
        self._unindexed: list[CompiledRule] = []
        for rule in rules:
            if rule.condition is None:
                continue
            index = rule.condition.index
            if index is None:
                self._unindexed.append(rule)
            elif index[0] == ("event_type",):
                for name in index[1]:
                    self._by_type.setdefault(name, []).append(rule)
            else:
                by_value = self._by_path.setdefault(index[0], {})
                for value in index[1]:
                    by_value.setdefault(value, []).append(rule)
        fast: Getters = get if self.projection is None else self.projection.fast_getter
        self._by_getter = [(fast(path), by_value) for path, by_value in self._by_path.items()]
        """Each indexed path other than the event type, read by a getter that may raise
        AttributeError where the path is null."""
        self.judges_every_type = bool(self._by_path or self._unindexed)
        """Whether some rule is not tied to event types (every event must be decoded)."""
        self._candidates: dict[str, list[CompiledRule] | None] = {}
        self._last_stamp: str | None = None
        self._last_at: float | None = None
        """The last timestamp read, and its time (events written together share it)."""
        self._group_names: dict[str | tuple[str, ...], str] = {}
        self._kept: dict[str, int] = {}
        """The groups each grouped rule keeps state for (its overflow group aside)."""
        self._forgotten: set[tuple[str, str]] = set()
        """Groups forgotten by `sweep`, to delete from the state store."""
        self.overflowed: dict[str, int] = {}
        """Per rule, the events counted in its overflow group."""
        self.watermark: float | None = None
        """The latest event time seen, never past the wall clock by more than
        `MAX_CLOCK_SKEW_S`: the clock windows slide by."""
        self._ceiling = float("-inf")
        """Wall clock + `MAX_CLOCK_SKEW_S`, as last read (read again when an event
        time passes it)."""

    def load(self, saved: Iterable[tuple[str, str, dict[str, Any]]]) -> None:
        """Bring back saved group states (of rules still configured)."""
        for name, group, data in saved:
            rule = self.rules.get(name)
            if rule is not None:
                self.states[(name, group)] = GroupState.from_json(
                    data, rule.config.window, rule.config.threshold
                )
                if rule.group_getters and group != OVERFLOW_GROUP:
                    self._kept[name] = self._kept.get(name, 0) + 1

    def candidates(self, event_type: Any) -> list[CompiledRule] | None:
        """The rules an event of this type may match by its type (and those tied to no
        value), or None when no rule can match it at all (an alert.* event matches
        none: the engine's own records are never judged). An event type that is not a
        string matches no rule looked up by type."""
        if type(event_type) is not str:
            return self._unindexed if self.judges_every_type else None
        try:
            return self._candidates[event_type]
        except KeyError:
            pass
        found: list[CompiledRule] | None
        if event_type.startswith("alert."):
            found = None
        else:
            found = self._by_type.get(event_type, []) + self._unindexed
            if not found and not self.judges_every_type:
                found = None
        self._candidates[event_type] = found
        return found

    def judge(
        self, event: Any, by_type: list[CompiledRule], line: bytes | None = None
    ) -> Sequence[AlertRecord]:
        """Run the rules that may match the event (`by_type`: its `candidates`, to
        which the rules indexed by other fields are added). With a projection, `event`
        is `line` decoded by it."""
        rules = by_type
        for get, by_value in self._by_getter:
            try:
                value = get(event)
            except AttributeError:
                continue  # null
            if type(value) is str:
                more = by_value.get(value)
                if more is not None:
                    rules = rules + more
        if not rules:
            return _NO_ALERTS
        stamp = self._timestamp(event)
        if type(stamp) is not str:
            return _NO_ALERTS
        if stamp == self._last_stamp:
            at = self._last_at
        else:
            at = self._last_at = _stamp_seconds(stamp)
            self._last_stamp = stamp
        if at is None:
            return _NO_ALERTS
        if self.watermark is None or at > self.watermark:
            if at > self._ceiling:
                self._ceiling = time.time() + MAX_CLOCK_SKEW_S
                if at > self._ceiling:
                    at = self._ceiling  # ahead of the clock: counted at the limit
            self.watermark = at
        alerts: list[AlertRecord] | None = None
        event_id: str | None = None
        states, dirty = self.states, self.dirty
        for rule in rules:
            # A rule found by the only value its condition tests needs no evaluation.
            test = rule.test
            if test is not None:
                try:
                    if not test(event):
                        continue
                except EvalError:
                    continue
                except AttributeError:
                    if not _retest(rule, event):
                        continue
            if rule.extra is not None and not rule.extra(at):
                continue
            if rule.group_getters:
                group = self._group(rule, event)
                key = (rule.name, group)
            else:
                group, key = "", rule.key
            state = states.get(key)
            if state is None:
                if rule.group_getters:
                    group, key, state = self._new_group(rule, group)
                else:
                    config = rule.config
                    state = states[key] = GroupState(config.window, config.threshold)
            dirty.add(key)
            if event_id is None:
                event_id = str(self._event_id(event) or "")
            if state.add(at, event_id):
                config = rule.config
                decision = state.decide(at, config.cooldown, config.repeat_interval)
                if decision is not None:
                    whole = event if line is None else orjson.loads(line)
                    alert = self._alert(rule, group, state, decision, at, whole)
                    alerts = [alert] if alerts is None else [*alerts, alert]
            if state.window_s is None:
                state.after_single()
        return _NO_ALERTS if alerts is None else alerts

    def _new_group(self, rule: CompiledRule, group: str) -> tuple[str, tuple[str, str], GroupState]:
        """A state for a group seen first, or the rule's overflow group's when the rule
        keeps `MAX_GROUPS_PER_RULE` groups already."""
        kept = self._kept.get(rule.name, 0)
        if kept < MAX_GROUPS_PER_RULE:
            self._kept[rule.name] = kept + 1
        else:
            self.overflowed[rule.name] = self.overflowed.get(rule.name, 0) + 1
            group = OVERFLOW_GROUP
        key = (rule.name, group)
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = GroupState(rule.config.window, rule.config.threshold)
        return group, key, state

    def _forgettable(self, rule: CompiledRule, state: GroupState, now: float | None) -> bool:
        """Whether a group has nothing left to remember: its window empty, not firing
        (resolved), and past the cooldown of its last firing (a firing again would be
        allowed anyway, so forgetting it changes no decision)."""
        if not state.idle:
            return False
        fired_at = state.fired_at
        return fired_at is None or (now is not None and now - fired_at >= rule.config.cooldown)

    def _forget(self, key: tuple[str, str]) -> None:
        del self.states[key]
        if key[1] != OVERFLOW_GROUP and self.rules[key[0]].group_getters:
            self._kept[key[0]] -= 1

    def _group(self, rule: CompiledRule, event: Any) -> str:
        """The group's name: its values as a JSON array (kept per strings, as most
        events fall in groups seen before; other values are written each time, as
        1, 1.0 and true are equal keys of a dict but different groups)."""
        getters = rule.group_getters
        key: Any
        if len(getters) == 1:
            key = getters[0](event)
            if type(key) is not str:
                return orjson.dumps((key,)).decode()
        else:
            key = tuple(get(event) for get in getters)
            if not all(type(value) is str for value in key):
                return orjson.dumps(key).decode()
        name = self._group_names.get(key)
        if name is None:
            if len(self._group_names) >= 100_000:
                self._group_names.clear()
            name = self._group_names[key] = orjson.dumps(
                key if type(key) is tuple else (key,)
            ).decode()
        return name

    def sweep(self, now: float | None = None) -> list[AlertRecord]:
        """Resolve the firing windows that have fallen back below their threshold by
        `now` (default: the watermark; never past the wall clock by more than
        `MAX_CLOCK_SKEW_S`, as `kaudit alerts test` sweeps by each event's own time),
        and forget idle groups."""
        now = self.watermark if now is None else max(now, self.watermark or now)
        if now is None:
            return []
        if now > self._ceiling:
            self._ceiling = time.time() + MAX_CLOCK_SKEW_S
            now = min(now, self._ceiling)
        alerts = []
        for key, state in list(self.states.items()):
            rule = self.rules[key[0]]
            if rule.condition is None:
                continue
            if state.window_s is None:
                if self._forgettable(rule, state, now):
                    self._forget(key)
                    self._forgotten.add(key)
                continue
            before = state.count
            if state.check_resolved(now):
                self.dirty.add(key)
                if rule.config.resolve:
                    alerts.append(self._alert(rule, key[1], state, "resolve", now, None))
            else:
                state.expire(now)
                if state.count != before:
                    self.dirty.add(key)
            if self._forgettable(rule, state, now):
                self._forget(key)
                self._forgotten.add(key)
        return alerts

    def observe(
        self, name: str, group: str, holds: bool, at: float, facts: dict[str, Any]
    ) -> AlertRecord | None:
        """A probe rule's fact for `group` at wall time `at`: fire when it starts to hold
        (after cooldown), resolve when it stops."""
        rule = self.rules.get(f"builtin.{name}")
        if rule is None:
            return None
        key = (rule.name, group)
        state = self.states.get(key)
        if state is None:
            if not holds:
                return None
            state = self.states[key] = GroupState(None, 1)
        if holds == state.firing:
            return None
        self.dirty.add(key)
        if holds:
            if state.fired_at is not None and at - state.fired_at < rule.config.cooldown:
                return None
            state.firing = True
            state.count = 1
            state.fired_at = at
            state.fired_count += 1
            return self._alert(rule, group, state, "fire", at, facts)
        state.firing = False
        state.count = 0
        return (
            self._alert(rule, group, state, "resolve", at, facts) if rule.config.resolve else None
        )

    def changed(self) -> list[tuple[str, str, dict[str, Any] | None]]:
        """The groups changed since the last call, to save (None: forget it)."""
        out: list[tuple[str, str, dict[str, Any] | None]] = [
            (name, group, None) for name, group in self._forgotten - self.dirty
        ]
        self._forgotten.clear()
        for key in self.dirty:
            state = self.states.get(key)
            if state is None:
                out.append((key[0], key[1], None))
                continue
            rule = self.rules[key[0]]
            if rule.condition is not None and self._forgettable(rule, state, self.watermark):
                self._forget(key)
                out.append((key[0], key[1], None))
            else:
                out.append((key[0], key[1], state.to_json()))
        self.dirty.clear()
        return out

    def _alert(
        self,
        rule: CompiledRule,
        group: str,
        state: GroupState,
        decision: Decision,
        at: float,
        event: dict[str, Any] | None,
    ) -> AlertRecord:
        status = "resolved" if decision == "resolve" else "fired"
        key = dedup_key(rule.name, group)
        if group == OVERFLOW_GROUP:
            groups = {"overflow": f"past {MAX_GROUPS_PER_RULE} groups"}
        elif rule.group_paths:
            values = orjson.loads(group)
            groups = {".".join(p): v for p, v in zip(rule.group_paths, values, strict=False)}
        else:
            groups = {"name": group} if group else {}
        alert = {
            "rule": rule.name,
            "status": status,
            "repeat": decision == "repeat",
            "severity": rule.config.severity,
            "description": rule.config.description,
            "group": groups,
            "count": state.count,
            "threshold": rule.config.threshold,
            "window_s": rule.config.window,
            "event_ids": list(state.ids),
            "first_at": _iso(state.first_at),
            "last_at": _iso(state.last_at),
            "at": _iso(at),
            "dedup_key": key,
        }
        data = {**(event or {}), "severity": rule.config.severity, "alert": alert}
        return AlertRecord(
            rule=rule.name,
            group=group,
            dedup_key=key,
            status=status,
            at=at,
            count=state.count,
            data=data,
            targets=tuple(t.type for t in rule.notify),
        )


def _retest(rule: CompiledRule, event: Any) -> bool:
    assert rule.retest is not None
    try:
        return bool(rule.retest(event))
    except EvalError:
        return False


def _iso(at: float | None) -> str | None:
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
