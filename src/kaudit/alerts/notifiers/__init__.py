"""Where alert notifications go: one module per kind of target (slack, pagerduty, email,
teams, webhook), each turning an alert into that target's message and sending it, and
`build_notifier`, which picks the module for a configured target.

A notifier's `send(alert)` delivers one notification or raises an ExporterError that
says whether trying again can help (and, for HTTP, how long the receiver asked to wait);
retrying, and keeping what is not delivered, is the engine's delivery loop's job.
"""

from kaudit.alerts.notifiers.base import Notifier, build_notifier, default_text

__all__ = ["Notifier", "build_notifier", "default_text"]
