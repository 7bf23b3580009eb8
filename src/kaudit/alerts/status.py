"""`kaudit alerts status`: each rule's state and last alert, and the notification log,
read from the engine's state store (while `kaudit run` keeps it up to date)."""

from __future__ import annotations

from typing import Any

from kaudit.alerts.rules import Evaluator
from kaudit.alerts.ruleset import compile_rules
from kaudit.alerts.state import StateStore
from kaudit.config import Config

__all__ = ["alert_status"]


def alert_status(config: Config, notifications: int = 20) -> dict[str, Any]:
    """{"rules": one row per configured rule, "notifications": the latest ones}."""
    from kaudit.alerts.engine import state_path

    rules = compile_rules(config.audit.alerts, config.audit.builtin_alerts)
    path = state_path(config)
    if not path.exists():
        rows: list[dict[str, Any]] = [
            {
                "rule": r.name,
                "severity": r.config.severity,
                "firing": False,
                "groups": [],
                "last_alert": None,
            }
            for r in rules
        ]
        return {"rules": rows, "notifications": [], "pending": 0, "counters": None}
    store = StateStore(path)
    try:
        evaluator = Evaluator(rules)
        evaluator.load(store.groups())
        last = store.last_alerts()
        rows = []
        for rule in rules:
            groups = [
                {"group": group, "count": state.count, "firing": state.firing}
                for (name, group), state in evaluator.states.items()
                if name == rule.name and (state.firing or state.count)
            ]
            rows.append(
                {
                    "rule": rule.name,
                    "severity": rule.config.severity,
                    "firing": any(g["firing"] for g in groups),
                    "groups": groups,
                    "last_alert": last.get(rule.name),
                }
            )
        log = store.notification_log(notifications)
        pending = sum(1 for n in store.notification_log(100_000) if n["status"] == "pending")
        return {
            "rules": rows,
            "notifications": log,
            "pending": pending,
            "counters": store.meta("counters"),
        }
    finally:
        store.close()
