"""The alert rules, compiled from configuration: `compile_rules` turns `audit.alerts` and
the enabled `audit.builtin_alerts` into `CompiledRule`s (a condition, its groups, its
notifications), and `reading_projected` makes a rule read events decoded by a projection
(`projection_for` the rules) instead of whole dicts. What the rules then decide is
kaudit.alerts.rules's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kaudit.alerts.compiled import path_getter
from kaudit.alerts.conditions import Condition
from kaudit.alerts.projection import Projection
from kaudit.config.alerts import AlertRule, BuiltinAlerts, Notify, OffHoursRule

__all__ = ["PROBE_RULES", "CompiledRule", "compile_rules", "projection_for", "reading_projected"]

PROBE_RULES = ("log_integrity", "exporter_lag")
"""Built-in rules fed by the engine's own checks rather than by events."""

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule ready to judge events (or, for probe rules, observations)."""

    name: str
    config: AlertRule
    condition: Condition | None
    group_paths: tuple[tuple[str, ...], ...]
    notify: tuple[Notify, ...]
    extra: Callable[[float], bool] | None = None
    """A further test on the event time (the off-hours rule's hours and days)."""
    group_getters: tuple[Callable[[Any], Any], ...] = ()
    test: Callable[[Any], Any] | None = None
    """The condition's `test`, None when finding the rule by its indexed value was
    the whole test (the judging loop reads it in one step)."""
    retest: Callable[[Any], Any] | None = None
    """`test` again, when `test` raised AttributeError (it reads a projected event
    through attrgetters, which raise on a value on the way that is not an object,
    where this one reads None)."""
    key: tuple[str, str] = dataclasses.field(init=False)
    """The key of its state when it has no `group_by`."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (self.name, ""))


def _off_hours(rule: OffHoursRule) -> Callable[[float], bool]:
    start, _, end = rule.hours.partition("-")
    first = int(start[:2].rstrip(":")) * 60 + int(start[-2:])
    last = int(end[:2].rstrip(":")) * 60 + int(end[-2:])
    days = {_DAYS.index(d) for d in rule.days}

    def outside(at: float) -> bool:
        when = datetime.fromtimestamp(at, UTC)
        minute = when.hour * 60 + when.minute
        return when.weekday() not in days or not first <= minute < last

    return outside


def _builtin(builtin: BuiltinAlerts) -> list[tuple[AlertRule, Callable[[float], bool] | None]]:
    shared = builtin.notify
    rules: list[tuple[AlertRule, Callable[[float], bool] | None]] = []

    def add(name: str, condition: str, settings: Any, **extra: Any) -> AlertRule | None:
        if not settings.enabled:
            return None
        rule = AlertRule(
            name=f"builtin.{name}",
            condition=condition,
            severity=settings.severity,
            cooldown=settings.cooldown,
            notify=settings.notify or shared,
            **extra,
        )
        return rule

    a = builtin.auth_failures
    spec: list[tuple[str, str, Any, dict[str, Any]]] = [
        (
            "auth_failures",
            "event_type == 'auth.failed'",
            a,
            {"threshold": a.threshold, "window": a.window, "group_by": ["actor.ip_address"]},
        ),
        (
            "access_denied_burst",
            "event_type == 'access.denied'",
            builtin.access_denied_burst,
            {
                "threshold": builtin.access_denied_burst.threshold,
                "window": builtin.access_denied_burst.window,
                "group_by": ["actor.id"],
            },
        ),
        ("audit_degraded", "event_type == 'audit.degraded'", builtin.audit_degraded, {}),
        (
            "gateway_bypass",
            "event_type == 'access.bypassed_gateway'",
            builtin.gateway_bypass,
            {"group_by": ["actor.id"]},
        ),
    ]
    for name, condition, settings, extra in spec:
        rule = add(name, condition, settings, **extra)
        if rule is not None:
            rules.append((rule, None))
    off = builtin.off_hours_changes
    rule = add(
        "off_hours_changes",
        "event_type in ['acl.created', 'acl.deleted', 'auth.credentials_changed']",
        off,
    )
    if rule is not None:
        rules.append((rule, _off_hours(off)))
    for name in PROBE_RULES:
        settings = getattr(builtin, name)
        rule = add(name, "false", settings)
        if rule is not None:
            rules.append((rule, None))
    return rules


def compile_rules(rules: Iterable[AlertRule], builtin: BuiltinAlerts) -> list[CompiledRule]:
    """The enabled configured rules, then the enabled built-in ones."""
    compiled = []
    pairs = [(r, None) for r in rules if r.enabled] + _builtin(builtin)
    for rule, extra in pairs:
        probe = rule.name.removeprefix("builtin.") in PROBE_RULES
        condition = None if probe else Condition(rule.condition)
        compiled.append(
            CompiledRule(
                name=rule.name,
                config=rule,
                condition=condition,
                test=condition.test if condition and condition.needs_evaluation else None,
                group_paths=tuple(tuple(p.split(".")) for p in rule.group_by),
                group_getters=tuple(path_getter(tuple(p.split("."))) for p in rule.group_by),
                notify=tuple(rule.notify),
                extra=extra,
            )
        )
    return compiled


def projection_for(rules: list[CompiledRule]) -> Projection | None:
    """The projection of events that every rule's condition and groups read, or None
    when a condition is left to rule-engine (it may read anything)."""
    paths: set[tuple[str, ...]] = set()
    for rule in rules:
        if rule.condition is None:
            continue
        if rule.condition.paths is None:
            return None
        paths |= rule.condition.paths
        paths.update(rule.group_paths)
        if rule.condition.index is not None:
            paths.add(rule.condition.index[0])
    return Projection(paths)


def reading_projected(rule: CompiledRule, projection: Projection) -> CompiledRule:
    """The rule with its test and groups reading events decoded by `projection`."""
    condition = rule.condition
    tested = condition is not None and rule.test is not None
    return dataclasses.replace(
        rule,
        test=condition.test_with(projection.fast_getter) if condition and tested else None,
        retest=condition.test_with(projection.getter) if condition and tested else None,
        group_getters=tuple(projection.getter(path) for path in rule.group_paths),
    )
