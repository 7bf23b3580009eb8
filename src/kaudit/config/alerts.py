"""The `audit.alerts` section (the OSO seed's `enterprise.audit.alerts`) and
`audit.builtin_alerts`: alert rules and where their notifications go.

This module owns `AlertRule` (a condition, an optional `threshold` within a sliding
`window`, `group_by`, `cooldown`, `repeat_interval`, `resolve`, a `severity` and `notify`
targets), one model per notification target (slack, pagerduty, email, teams, webhook)
chosen by `type`, and `BuiltinAlerts`, the rules kaudit ships, each off unless enabled.
Conditions and templates are checked here (`kaudit.config.alert_syntax`), so a bad rule
is an error naming the rule before anything runs. `alert_warnings` lists settings that
load but do not do what they seem to (a `channel` on a Slack incoming webhook).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from kaudit.config.alert_syntax import TemplateSyntaxError, check_condition, parse_template
from kaudit.config.fields import ConfigModel, HostPort, TypeSwitch, config_error, type_tag
from kaudit.config.secrets import Secret, SecretUrl
from kaudit.errors import TimeFormatError
from kaudit.timeparse import parse_duration

__all__ = [
    "SEVERITIES",
    "AlertRule",
    "BuiltinAlerts",
    "EmailNotify",
    "Notify",
    "PagerDutyNotify",
    "SlackNotify",
    "TeamsNotify",
    "WebhookNotify",
    "alert_warnings",
]

SEVERITIES = ("critical", "high", "medium", "low", "info")
"""A rule's `severity`, most severe first."""


# ---------------------------------------------------------------------------- field types


def _seconds(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except TimeFormatError as exc:
            raise config_error("duration", str(exc)) from None
    return value


Duration = Annotated[float, BeforeValidator(_seconds), Field(ge=0)]
"""Seconds, written as a number or with a unit: `30s`, `5m`, `1h`, `1d`."""


def _template(text: str) -> str:
    try:
        parse_template(text)
    except TemplateSyntaxError as exc:
        raise config_error("template", f"template {exc}") from None
    return text


TemplateText = Annotated[str, AfterValidator(_template)]
"""A Go-template style text with `{{ .path }}` lookups only."""

_FIELD_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


def _field_path(path: str) -> str:
    if not _FIELD_PATH.fullmatch(path):
        raise config_error(
            "field_path", f"must be a dotted path into the event like actor.id, got {path!r}"
        )
    return path


def _listed(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


FieldPaths = Annotated[list[Annotated[str, AfterValidator(_field_path)]], BeforeValidator(_listed)]
"""Dotted paths into the event (`actor.id`), one or a list."""

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


def _address(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise config_error("email", f"must be an email address like ops@company.com, got {value!r}")
    return value


Address = Annotated[str, AfterValidator(_address)]


# ---------------------------------------------------------------------------- targets


class NotifyBase(ConfigModel):
    """What every target has: its type, a template for the text, how long to wait."""

    type: str
    template: TemplateText | None = None
    """The message text; default: a summary of the alert and its latest event."""
    timeout: float = Field(default=10.0, gt=0)


class SlackNotify(NotifyBase):
    """Slack: an incoming webhook (`webhook`), or chat.postMessage with a bot token
    (`token` and `channel`) where the message must go to a channel of your choice."""

    type: Literal["slack"] = "slack"
    webhook: SecretUrl | None = None
    token: Secret | None = None
    """A bot token (xoxb-...): messages go through chat.postMessage to `channel`."""
    channel: str | None = None
    api_url: str = "https://slack.com/api"
    """Slack's Web API; a test points it at a local server."""

    token_env: str = "SLACK_BOT_TOKEN"
    webhook_env: str = "SLACK_WEBHOOK"
    """Without `token` or `webhook` (the seed's `- type: slack` with only a channel),
    the bot token, else the webhook URL, in these environment variables when sending."""

    @model_validator(mode="after")
    def _channel_for_token(self) -> SlackNotify:
        if self.token is not None and not self.channel:
            raise config_error(
                "slack", "a Slack bot token needs a channel to post to (channel: '#alerts')"
            )
        return self


class PagerDutyNotify(NotifyBase):
    """PagerDuty Events API v2: trigger, and resolve, an incident per rule and group."""

    type: Literal["pagerduty"] = "pagerduty"
    routing_key: Secret = Field(min_length=1)
    severity: TemplateText = "{{ .severity }}"
    """critical, error, warning or info, or a rule severity mapped to one of them."""
    url: str = "https://events.pagerduty.com/v2/enqueue"
    source: str = "kaudit"


class EmailNotify(NotifyBase):
    """Email over SMTP with STARTTLS (certificate checked) and a login from the
    environment."""

    type: Literal["email"] = "email"
    to: Annotated[list[Address], BeforeValidator(_listed), Field(min_length=1)]
    smtp_server: HostPort = "localhost:587"
    from_: Address = Field(default="kaudit@localhost", alias="from")
    subject: TemplateText = "[kaudit {{ .severity }}] {{ .alert.rule }}: {{ .event_type }}"
    starttls: bool = True
    ca_file: str | None = None
    """The CA bundle that signed the server's certificate; default: the system's."""
    username_env: str = "SMTP_USERNAME"
    password_env: str = "SMTP_PASSWORD"
    """Environment variables holding the login; no login when the username is unset."""


class TeamsNotify(NotifyBase):
    """Microsoft Teams through a Workflows webhook, as an Adaptive Card."""

    type: Literal["teams"] = "teams"
    url: SecretUrl


class WebhookNotify(NotifyBase):
    """A JSON document per notification, HMAC-signed like the webhook destination."""

    type: Literal["webhook"] = "webhook"
    url: SecretUrl
    secret: Secret | None = Field(default=None, min_length=16)
    headers: dict[str, Secret] = {}


Notify = Annotated[
    Annotated[SlackNotify, Tag("slack")]
    | Annotated[PagerDutyNotify, Tag("pagerduty")]
    | Annotated[EmailNotify, Tag("email")]
    | Annotated[TeamsNotify, Tag("teams")]
    | Annotated[WebhookNotify, Tag("webhook")],
    Discriminator(type_tag(default=None)),
    TypeSwitch("notify"),
]
"""Where one alert's notifications go, chosen by `type`."""


# ---------------------------------------------------------------------------- rules

_RULE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class AlertRule(ConfigModel):
    """One alert: fire when `threshold` events matching `condition` fall within a
    sliding `window` of event time (per `group_by` group), notify, and resolve when the
    count falls back below the threshold."""

    name: str = Field(min_length=1, max_length=200, pattern=_RULE_NAME)
    condition: str = Field(min_length=1)
    threshold: int = Field(default=1, ge=1)
    window: Duration | None = None
    """Needed when threshold is above 1; seconds or 30s, 5m, 1h."""
    group_by: FieldPaths = []
    severity: Literal["critical", "high", "medium", "low", "info"] = "medium"
    cooldown: Duration = 0.0
    """After a firing, the same group does not fire again for this long."""
    repeat_interval: Duration | None = None
    """While still firing, notify again this often (as new events keep matching)."""
    resolve: bool = True
    """Notify (and resolve PagerDuty incidents) when a window's count falls back."""
    enabled: bool = True
    description: str | None = None
    notify: list[Notify] = []

    @model_validator(mode="after")
    def _checked(self) -> AlertRule:
        problem = check_condition(self.condition)
        if problem is not None:
            raise config_error(
                "condition", f"rule {self.name!r}: condition {self.condition!r}: {problem}"
            )
        if self.threshold > 1 and self.window is None:
            raise config_error(
                "window",
                f"rule {self.name!r}: threshold {self.threshold} needs a window to count "
                "events in (like window: 5m)",
            )
        if self.window is not None and self.window <= 0:
            raise config_error("window", f"rule {self.name!r}: window must be above 0")
        return self


# ---------------------------------------------------------------------------- built-ins


class BuiltinRule(ConfigModel):
    """A rule kaudit ships: off unless enabled; notifies `notify`, else the shared one."""

    enabled: bool = False
    severity: Literal["critical", "high", "medium", "low", "info"] = "high"
    cooldown: Duration = 300.0
    notify: list[Notify] = []


class CountingRule(BuiltinRule):
    threshold: int = Field(default=5, ge=1)
    window: Duration = Field(default=300.0, gt=0)


_HOURS = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)-([01]?\d|2[0-4]):([0-5]\d)$")


class OffHoursRule(BuiltinRule):
    """ACL or SCRAM credential changes at a time outside `hours` (UTC) or `days`."""

    hours: str = "08:00-18:00"
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = [
        "mon",
        "tue",
        "wed",
        "thu",
        "fri",
    ]
    cooldown: Duration = 0.0

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        if not _HOURS.fullmatch(value.replace(" ", "")):
            raise config_error(
                "hours", f"must be HH:MM-HH:MM in UTC (like 08:00-18:00), got {value!r}"
            )
        return value.replace(" ", "")


class IntegrityRule(BuiltinRule):
    """The log's checkpoints stopped coming (their heartbeat is overdue), or the events
    read do not follow one another (a sequence gap, a broken HMAC link)."""

    severity: Literal["critical", "high", "medium", "low", "info"] = "critical"
    grace: Duration = 30.0
    """How far past its promised heartbeat a checkpoint may be before this fires."""


class LagRule(BuiltinRule):
    """An exporter more than `max_events` behind the log."""

    max_events: int = Field(default=10_000, gt=0)


class BuiltinAlerts(ConfigModel):
    """The rules kaudit ships, each off unless `enabled: true`."""

    notify: list[Notify] = []
    """Where the built-in rules notify unless a rule names its own targets."""
    auth_failures: CountingRule = CountingRule()
    """Repeated auth.failed from one client address."""
    access_denied_burst: CountingRule = CountingRule(threshold=20, window=60.0)
    """A burst of access.denied for one principal."""
    off_hours_changes: OffHoursRule = OffHoursRule()
    log_integrity: IntegrityRule = IntegrityRule()
    audit_degraded: BuiltinRule = BuiltinRule()
    """audit.degraded: the recorder dropped events."""
    exporter_lag: LagRule = LagRule()
    gateway_bypass: BuiltinRule = BuiltinRule(severity="critical", cooldown=0.0)
    """access.bypassed_gateway: a client reached the brokers without the gateway."""


def alert_warnings(rules: list[AlertRule], builtin: BuiltinAlerts) -> list[str]:
    """Settings that load but do not do what they seem to."""
    warnings = []
    targets = [(rule.name, rule.notify) for rule in rules] + [("builtin_alerts", builtin.notify)]
    for name, notify in targets:
        for target in notify:
            if not isinstance(target, SlackNotify):
                continue
            if target.webhook is None and target.token is None:
                warnings.append(
                    f"alert {name}: the Slack target names no webhook or token; it posts "
                    f"with the bot token in ${target.token_env} (to channel "
                    f"{target.channel or '-'}), else the incoming webhook in "
                    f"${target.webhook_env}"
                )
            elif target.webhook and target.channel and target.token is None:
                warnings.append(
                    f"alert {name}: a Slack incoming webhook posts to the channel it was "
                    f"created for and ignores channel {target.channel!r}; to choose the "
                    "channel, use a bot token (token: xoxb-..., channel: ...) instead"
                )
    return warnings
