"""What every notifier shares: the contract, the default message text, template
rendering with the target's escaping, and the choice of notifier for a target."""

from __future__ import annotations

import importlib
from typing import Protocol

import httpx

from kaudit.alerts.state import AlertRecord
from kaudit.config.alert_syntax import parse_template, render_template
from kaudit.config.alerts import Notify
from kaudit.exporters.http import post

_NOTIFIERS = {
    "slack": "kaudit.alerts.notifiers.slack:SlackNotifier",
    "pagerduty": "kaudit.alerts.notifiers.pagerduty:PagerDutyNotifier",
    "email": "kaudit.alerts.notifiers.email:EmailNotifier",
    "teams": "kaudit.alerts.notifiers.teams:TeamsNotifier",
    "webhook": "kaudit.alerts.notifiers.webhook:WebhookNotifier",
}


class Notifier(Protocol):
    """Sends one alert's notification to one target."""

    def send(self, alert: AlertRecord) -> None:
        """Deliver, or raise ExporterError (retryable or not)."""

    def close(self) -> None: ...


def build_notifier(target: Notify) -> Notifier:
    """The notifier for a configured target."""
    module_name, _, class_name = _NOTIFIERS[target.type].partition(":")
    notifier: Notifier = getattr(importlib.import_module(module_name), class_name)(target)
    return notifier


_DEFAULT_FIRED = (
    "[{{ .severity }}] {{ .alert.rule }} fired: {{ .alert.count }} matching events "
    "({{ .alert.first_at }} to {{ .alert.last_at }})\n"
    "Latest: {{ .event_type }} by {{ .actor.id }} on {{ .resource.type }} {{ .resource.id }} "
    "at {{ .timestamp }}"
)
_DEFAULT_RESOLVED = (
    "[resolved] {{ .alert.rule }}: {{ .alert.count }} matching events left in the window "
    "at {{ .alert.at }}"
)


def default_text(alert: AlertRecord) -> str:
    """The default message template for an alert, by whether it fired or resolved."""
    return _DEFAULT_RESOLVED if alert.status == "resolved" else _DEFAULT_FIRED


def message_text(template: str | None, alert: AlertRecord, escape: str) -> str:
    """The target's `template` (else the default) rendered for a firing; a resolution
    (which has no event of its own to fill a template in) says so in the default words."""
    use_template = template is not None and alert.status != "resolved"
    text = template if use_template and template is not None else default_text(alert)
    return render_template(parse_template(text), alert.data, escape)


def post_json(
    client: httpx.Client, where: str, url: str, body: bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    """POST a JSON body (the exporters' `post`: its errors say whether to retry)."""
    return post(
        client,
        where,
        url,
        body,
        {"Content-Type": "application/json", **(headers or {})},
        " (the receiver refused it: the notification is kept and tried again later)",
    )
