"""Alert rules load as the OSO seed writes them, and a bad rule is an error naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaudit.config import load_config, load_config_text
from kaudit.config.alerts import EmailNotify, PagerDutyNotify, SlackNotify, alert_warnings
from kaudit.errors import ConfigError

SEED = Path(__file__).parents[1] / "fixtures" / "seed"
ENV = {
    "SLACK_WEBHOOK": "https://hooks.slack.com/services/T0/B0/secret",
    "PAGERDUTY_KEY": "R0UTINGKEY0000000000000000000000",
    "PAGERDUTY_ROUTING_KEY": "R0UTINGKEY0000000000000000000001",
}


def test_seed_alert_configuration_loads_as_written() -> None:
    config = load_config(SEED / "alerts.yaml", env=ENV)

    rules = {r.name: r for r in config.audit.alerts}
    assert list(rules) == ["backup-failure", "access-denied-spike", "unauthorized-restore"]
    backup = rules["backup-failure"]
    assert backup.severity == "high" and backup.threshold == 1 and backup.window is None
    assert isinstance(backup.notify[0], SlackNotify)
    assert backup.notify[0].webhook is not None
    assert backup.notify[0].webhook.get_secret_value() == ENV["SLACK_WEBHOOK"]
    assert isinstance(backup.notify[1], PagerDutyNotify)
    spike = rules["access-denied-spike"]
    assert (spike.threshold, spike.window, spike.severity) == (10, 300.0, "medium")
    assert spike.notify == [EmailNotify(to=["security@company.com"])]
    restore = rules["unauthorized-restore"]
    assert restore.condition == (
        "event_type == 'restore.started' and context.environment == 'production'"
    )
    assert isinstance(restore.notify[0], SlackNotify)
    assert restore.notify[0].channel == "#security-alerts"


def test_seed_integrations_load_and_webhook_channel_is_warned_about() -> None:
    config = load_config(SEED / "alert_integrations.yaml", env=ENV)

    slack, pagerduty, email = config.audit.alerts[0].notify
    assert isinstance(slack, SlackNotify) and slack.template is not None
    assert slack.template.startswith(":warning: *{{ .event_type }}*\nUser: {{ .actor.id }}")
    assert isinstance(pagerduty, PagerDutyNotify) and pagerduty.severity == "{{ .severity }}"
    assert isinstance(email, EmailNotify)
    assert email.to == ["ops@company.com", "security@company.com"]
    assert (email.smtp_server, email.from_) == ("smtp.company.com:587", "kafka-backup@company.com")
    warnings = alert_warnings(config.audit.alerts, config.audit.builtin_alerts)
    assert len(warnings) == 1
    assert "ignores channel '#kafka-alerts'" in warnings[0] and "bot token" in warnings[0]


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, env={})
    return "\n".join(str(issue) for issue in caught.value.issues)


def test_bad_condition_names_the_rule_and_the_column() -> None:
    message = _error(
        "audit:\n  alerts:\n    - name: broken\n      condition: \"event_type == 'x' and and\"\n"
    )
    assert "audit.alerts[0]" in message
    assert "rule 'broken'" in message
    assert "column 23 ('and')" in message
    assert "accepted: comparisons" in message


def test_unfinished_condition_points_at_its_end() -> None:
    message = _error('audit:\n  alerts:\n    - name: eof\n      condition: "actor.id =="\n')
    assert "rule 'eof'" in message and "column 12 (the end)" in message


def test_template_with_anything_but_a_path_is_refused() -> None:
    message = _error(
        'audit:\n  alerts:\n    - name: t\n      condition: "true"\n      notify:\n'
        "        - type: slack\n          webhook: https://hooks.example/x\n"
        "          template: 'hi {{ .actor.id | upper }}'\n"
    )
    assert "audit.alerts[0].notify[0].template" in message
    assert "column 4" in message and "is not a path lookup" in message


def test_threshold_without_window_is_an_error() -> None:
    message = _error(
        'audit:\n  alerts:\n    - name: w\n      condition: "true"\n      threshold: 3\n'
    )
    assert "rule 'w': threshold 3 needs a window" in message


def test_builtin_rules_are_off_unless_enabled() -> None:
    config = load_config_text("audit:\n  builtin_alerts:\n    auth_failures: {enabled: true}\n")
    builtin = config.audit.builtin_alerts
    assert builtin.auth_failures.enabled
    assert not any(
        getattr(builtin, name).enabled
        for name in ("access_denied_burst", "off_hours_changes", "log_integrity",
                     "audit_degraded", "exporter_lag", "gateway_bypass")
    )  # fmt: skip
