"""Alerts: rules over the audit log, judged once per event, with notifications that are
delivered or kept until they are.

The engine (`engine`) reads the log behind its own durable cursor, like an exporter, and
runs inside `kaudit run` when rules are configured (`audit.alerts`, the OSO seed's
`enterprise.audit.alerts`, and the enabled `audit.builtin_alerts`). Its parts, one job
each: `conditions` (rule-engine expressions over events), `windows` (one group's sliding
window and firing state), `ruleset` (configured and built-in rules, compiled),
`rules` (the evaluator: an event's rules, its groups, firings and resolutions), `state`
(the SQLite state and notification log), `probes` (built-in rules fed by checks instead
of events), `notifiers/` (slack, pagerduty, email, teams, webhook), `replay`
(`kaudit alerts test`) and `status` (`kaudit alerts status`).

Alerts read the log like exporters: they may import `kaudit.exporters` (feeds, HTTP),
`kaudit.integrity`, `kaudit.log`, `kaudit.config`, `kaudit.events` and `kaudit.errors`,
never the sources, the session or the recorder; `alert.fired` is recorded through a
callable that whoever runs the engine hands in.
"""

from kaudit.alerts.engine import AlertCounters, AlertEngine, has_rules
from kaudit.alerts.replay import replay, would_fire

__all__ = ["AlertCounters", "AlertEngine", "has_rules", "replay", "would_fire"]
