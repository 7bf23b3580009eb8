"""Each notifier sends its service's exact payload to a local server playing the service,
and reads its answers (200, 202, 400, 429 with Retry-After, 500) as the service means
them. The servers check payloads as the services do (alert_servers.py); Slack, PagerDuty
and Teams cannot run here, so these local peers stand in for them."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import orjson
import pytest
from alert_servers import AlertReceiver

from kaudit.alerts.notifiers import build_notifier
from kaudit.alerts.rules import Evaluator, dedup_key
from kaudit.alerts.ruleset import compile_rules
from kaudit.alerts.state import AlertRecord
from kaudit.config import load_config_text
from kaudit.config.alerts import Notify
from kaudit.errors import DestinationHttpError, ExporterError, NotificationError

EVENT: dict[str, Any] = {
    "timestamp": "2026-11-22T10:15:30.123Z",
    "event_type": "backup.failed",
    "event_id": "evt_01JD0000000000000000000001",
    "actor": {"type": "user", "id": "alice@company.com", "ip_address": "10.0.0.50"},
    "resource": {"type": "backup", "id": "production-backup-20241201", "path": None},
    "context": {"cluster_id": "prod-us-west-2", "environment": "production"},
}
SEED_TEMPLATE = (
    ":warning: *{{ .event_type }}*\nUser: {{ .actor.id }}\nResource: {{ .resource.id }}\n"
    "Time: {{ .timestamp }}\n"
)


def _alert(
    target: dict[str, Any], event: dict[str, Any] | None = None
) -> tuple[Notify, AlertRecord]:
    rule = {"name": "backup-failure", "condition": "event_type == 'backup.failed'",
            "severity": "high", "notify": [target]}  # fmt: skip
    yaml = orjson.dumps({"audit": {"alerts": [rule]}}).decode()
    config = load_config_text(yaml)
    evaluator = Evaluator(compile_rules(config.audit.alerts, config.audit.builtin_alerts))
    event = event or EVENT
    (alert,) = evaluator.judge(event, evaluator.candidates(event["event_type"]) or [])
    return config.audit.alerts[0].notify[0], alert


def test_slack_webhook_gets_the_seed_template_escaped_for_mrkdwn(receiver: AlertReceiver) -> None:
    evil = {**EVENT, "actor": {"id": "<!channel> & bob"}}
    target, alert = _alert(
        {"type": "slack", "webhook": f"{receiver.url}/slack/T0/B0/x", "channel": "#kafka-alerts",
         "template": SEED_TEMPLATE}, evil,
    )  # fmt: skip
    build_notifier(target).send(alert)
    (request,) = receiver.wait_for(1)
    assert request.status == 200
    assert request.json() == {
        "text": ":warning: *backup.failed*\nUser: &lt;!channel&gt; &amp; bob\n"
        "Resource: production-backup-20241201\nTime: 2026-11-22T10:15:30.123Z\n",
        "unfurl_links": False,
    }


def test_slack_bot_token_posts_to_the_channel_with_chat_post_message(
    receiver: AlertReceiver,
) -> None:
    target, alert = _alert(
        {"type": "slack", "token": "xoxb-test-token", "channel": "#security-alerts",
         "api_url": f"{receiver.url}/api", "template": "{{ .event_type }} by {{ .actor.id }}"}
    )  # fmt: skip
    build_notifier(target).send(alert)
    (request,) = receiver.wait_for(1)
    assert request.path == "/api/chat.postMessage"
    assert request.headers["Authorization"] == "Bearer xoxb-test-token"
    assert request.json() == {
        "text": "backup.failed by alice@company.com",
        "unfurl_links": False,
        "channel": "#security-alerts",
    }


def test_slack_refusal_in_a_200_answer_is_an_error(receiver: AlertReceiver) -> None:
    target, alert = _alert(
        {"type": "slack", "token": "xoxb-t", "channel": "#c", "api_url": f"{receiver.url}/api"}
    )
    receiver.answer(200, b'{"ok": false, "error": "channel_not_found"}')
    receiver.answer(200, b'{"ok": false, "error": "ratelimited"}')
    notifier = build_notifier(target)
    with pytest.raises(NotificationError, match="channel_not_found") as refused:
        notifier.send(alert)
    assert not refused.value.retryable
    with pytest.raises(NotificationError, match="ratelimited") as limited:
        notifier.send(alert)
    assert limited.value.retryable


def test_seed_slack_without_webhook_uses_the_environment(
    receiver: AlertReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    target, alert = _alert({"type": "slack", "channel": "#security-alerts"})
    notifier = build_notifier(target)
    with pytest.raises(NotificationError, match=r"\$SLACK_BOT_TOKEN and \$SLACK_WEBHOOK"):
        notifier.send(alert)
    monkeypatch.setenv("SLACK_WEBHOOK", f"{receiver.url}/slack/env")
    notifier.send(alert)
    assert receiver.wait_for(1)[0].path == "/slack/env"


def test_pagerduty_trigger_is_events_v2_with_mapped_severity(receiver: AlertReceiver) -> None:
    target, alert = _alert(
        {"type": "pagerduty", "routing_key": "R0UTINGKEY0000000000000000000000",
         "severity": "{{ .severity }}", "url": f"{receiver.url}/v2/enqueue"}
    )  # fmt: skip
    build_notifier(target).send(alert)
    (request,) = receiver.wait_for(1)
    assert request.status == 202
    assert request.json() == {
        "routing_key": "R0UTINGKEY0000000000000000000000",
        "event_action": "trigger",
        "dedup_key": dedup_key("backup-failure", ""),
        "client": "kaudit",
        "payload": {
            "summary": "[high] backup-failure fired: 1 matching events "
            "(2026-11-22T10:15:30.123Z to 2026-11-22T10:15:30.123Z)",
            "source": "kaudit",
            "severity": "error",  # the seed's high
            "timestamp": "2026-11-22T10:15:30.123Z",
            "component": "production-backup-20241201",
            "group": "prod-us-west-2",
            "class": "backup.failed",
            "custom_details": {
                "rule": "backup-failure",
                "group": {},
                "count": 1,
                "threshold": 1,
                "event_ids": ["evt_01JD0000000000000000000001"],
                "actor": "alice@company.com",
            },
        },
    }


@pytest.mark.parametrize(
    ("status", "headers", "retryable", "retry_after"),
    [(400, {}, False, None), (429, {"Retry-After": "30"}, True, 30.0), (500, {}, True, None)],
)
def test_pagerduty_answers_are_read_as_the_api_means_them(
    receiver: AlertReceiver,
    status: int,
    headers: dict[str, str],
    retryable: bool,
    retry_after: float | None,
) -> None:
    target, alert = _alert(
        {"type": "pagerduty", "routing_key": "k", "url": f"{receiver.url}/v2/enqueue"}
    )
    receiver.answer(status, b'{"status":"error"}', headers)
    with pytest.raises(DestinationHttpError) as caught:
        build_notifier(target).send(alert)
    assert (caught.value.status, caught.value.retryable) == (status, retryable)
    assert caught.value.retry_after == retry_after


def test_teams_gets_an_adaptive_card(receiver: AlertReceiver) -> None:
    target, alert = _alert({"type": "teams", "url": f"{receiver.url}/teams/workflow",
                            "template": "{{ .event_type }} on {{ .resource.id }}"})  # fmt: skip
    build_notifier(target).send(alert)
    (request,) = receiver.wait_for(1)
    assert request.status == 202
    card = request.json()["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["content"]["body"] == [
        {"type": "TextBlock", "text": "Alert: backup-failure (high)", "weight": "Bolder",
         "size": "Medium", "color": "Attention", "wrap": True},
        {"type": "TextBlock", "text": "backup.failed on production-backup-20241201", "wrap": True},
        {"type": "FactSet", "facts": [
            {"title": "Rule", "value": "backup-failure"},
            {"title": "Severity", "value": "high"},
            {"title": "Count", "value": "1"},
            {"title": "Group", "value": "-"},
            {"title": "Time", "value": "2026-11-22T10:15:30.123Z"},
        ]},
    ]  # fmt: skip


def test_teams_shows_a_markdown_link_in_an_event_as_text(receiver: AlertReceiver) -> None:
    phish = "[Re-authenticate](https://evil.example/login)"
    evil = {**EVENT, "resource": {"type": "backup", "id": phish}}
    teams = {"type": "teams", "url": f"{receiver.url}/teams/workflow",
             "template": "{{ .event_type }} on {{ .resource.id }}"}  # fmt: skip
    target, alert = _alert(teams, evil)
    build_notifier(target).send(alert)
    (request,) = receiver.wait_for(1)
    text = request.json()["attachments"][0]["content"]["body"][1]["text"]
    assert text == "backup.failed on \\[Re-authenticate\\]\\(https://evil.example/login\\)"


def test_generic_webhook_is_hmac_signed(receiver: AlertReceiver) -> None:
    secret = "0123456789abcdef-secret"
    target, alert = _alert({"type": "webhook", "url": f"{receiver.url}/hook", "secret": secret})
    build_notifier(target).send(alert)
    (request,) = receiver.wait_for(1)
    stamp = request.headers["X-Kaudit-Timestamp"]
    mac = hmac.new(secret.encode(), stamp.encode() + b"." + request.body, hashlib.sha256)
    assert request.headers["X-Kaudit-Signature"] == f"sha256={mac.hexdigest()}"
    body = request.json()
    assert body["kind"] == "alert.fired"
    assert body["alert"]["rule"] == "backup-failure"
    assert body["event"]["event_id"] == EVENT["event_id"]


def test_unreachable_target_is_retryable() -> None:
    target, alert = _alert({"type": "teams", "url": "http://127.0.0.1:9/teams"})
    with pytest.raises(ExporterError) as caught:
        build_notifier(target).send(alert)
    assert caught.value.retryable
