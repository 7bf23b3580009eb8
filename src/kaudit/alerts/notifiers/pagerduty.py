"""PagerDuty Events API v2: an alert that fires triggers an incident, its resolution
resolves it, both under the alert's dedup key (one incident per rule and group).

Severities: PagerDuty takes critical, error, warning and info. A rule's severity maps as
critical -> critical, high -> error, medium -> warning, low -> info, info -> info; the
target's `severity` template (default `{{ .severity }}`) is rendered first, so it may
also name a PagerDuty severity directly. The API answers 202 when it took the event,
400 when it refuses it (not retried soon: the notification stays pending for a fixed
configuration), 429 and 5xx when it should be tried again.
"""

from __future__ import annotations

from typing import Any

import orjson

from kaudit.alerts.notifiers.base import message_text, post_json
from kaudit.alerts.state import AlertRecord
from kaudit.config.alert_syntax import parse_template, render_template
from kaudit.config.alerts import PagerDutyNotify
from kaudit.exporters.http import make_client

PAGERDUTY_SEVERITY = {
    "critical": "critical",
    "high": "error",
    "error": "error",
    "medium": "warning",
    "warning": "warning",
    "low": "info",
    "info": "info",
}
"""A rendered severity -> the PagerDuty severity it is sent as."""


class PagerDutyNotifier:
    def __init__(self, target: PagerDutyNotify) -> None:
        self.target = target
        self.client = make_client(target.timeout)
        self._severity = parse_template(target.severity)

    def payload(self, alert: AlertRecord) -> dict[str, Any]:
        key = self.target.routing_key.get_secret_value()
        if alert.status == "resolved":
            return {"routing_key": key, "event_action": "resolve", "dedup_key": alert.dedup_key}
        rendered = render_template(self._severity, alert.data).strip().lower()
        data = alert.data
        info = data["alert"]
        summary = message_text(self.target.template, alert, "plain").splitlines()[0]
        return {
            "routing_key": key,
            "event_action": "trigger",
            "dedup_key": alert.dedup_key,
            "client": "kaudit",
            "payload": {
                "summary": summary[:1024],
                "source": self.target.source,
                "severity": PAGERDUTY_SEVERITY.get(rendered, "error"),
                "timestamp": info["at"],
                "component": (data.get("resource") or {}).get("id"),
                "group": (data.get("context") or {}).get("cluster_id"),
                "class": data.get("event_type"),
                "custom_details": {
                    "rule": info["rule"],
                    "group": info["group"],
                    "count": info["count"],
                    "threshold": info["threshold"],
                    "event_ids": info["event_ids"],
                    "actor": (data.get("actor") or {}).get("id"),
                },
            },
        }

    def send(self, alert: AlertRecord) -> None:
        body = orjson.dumps(self.payload(alert))
        post_json(self.client, "pagerduty alert", self.target.url, body)

    def close(self) -> None:
        self.client.close()
