"""The Slack destination (Kpow's integration) against a local HTTP server that checks each
payload is valid Slack incoming-webhook JSON: one readable message per user action,
verbosity MUTATIONS / QUERIES / ALL, Retry-After honoured on 429."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from kaudit_destination_helpers import ONE_EVENT_LINE, drain, emit_events, log_events, make_config
from kaudit_destination_servers import HttpBehaviour, HttpReceiver

from kaudit.config.model import SlackDestination
from kaudit.errors import ExporterError
from kaudit.exporters.slack import SlackExporter

_BLOCK_TYPES = {"section", "context", "divider", "header", "actions", "image", "rich_text"}
_TEXT_TYPES = {"mrkdwn", "plain_text"}


def slack_payload_problem(body: bytes) -> str | None:
    """What makes `body` invalid as a Slack incoming-webhook message, or None.

    The rules are Slack's documented limits for incoming webhooks and Block Kit.
    """
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "invalid_payload: not JSON"
    if not isinstance(payload, dict):
        return "invalid_payload: not an object"
    text = payload.get("text")
    if not isinstance(text, str) or not text.strip():
        return "no_text"
    if len(text) > 40_000:
        return "msg_too_long"
    blocks = payload.get("blocks", [])
    if not isinstance(blocks, list) or len(blocks) > 50:
        return "invalid_blocks"
    for block in blocks:
        if block.get("type") not in _BLOCK_TYPES:
            return f"invalid_blocks: type {block.get('type')!r}"
        if block["type"] == "section":
            texts = ([block["text"]] if "text" in block else []) + block.get("fields", [])
            if not texts or len(block.get("fields", [])) > 10:
                return "invalid_blocks: section"
            for t in texts:
                limit = 3000 if t is block.get("text") else 2000
                if t.get("type") not in _TEXT_TYPES or not t.get("text") or len(t["text"]) > limit:
                    return "invalid_blocks: section text"
        if block["type"] == "context":
            elements = block.get("elements", [])
            if not 1 <= len(elements) <= 10:
                return "invalid_blocks: context"
            if any(e.get("type") not in _TEXT_TYPES | {"image"} for e in elements):
                return "invalid_blocks: context element"
    channel = payload.get("channel")
    if channel is not None and not (isinstance(channel, str) and channel):
        return "channel_not_found"
    return None


@pytest.fixture
def slack(receiver: HttpReceiver) -> HttpReceiver:
    receiver.behaviour = HttpBehaviour(validate=slack_payload_problem)
    return receiver


def slack_destination(receiver: HttpReceiver, **extra: Any) -> dict[str, Any]:
    return {
        "type": "slack",
        "webhook": receiver.url,
        "channel": "#kafka-audit",
        "batch_interval_secs": 0,
        **extra,
    }


def event_ids(receiver: HttpReceiver) -> list[str]:
    out = []
    for body in receiver.bodies():
        context = body["blocks"][-1]["elements"][0]["text"]
        out.append(re.search(r"event (\S+)", context).group(1))  # type: ignore[union-attr]
    return out


MIXED = ["topic.created", "auth.login", "acl.deleted", "records.consumed", "config.viewed"]


def test_each_mutation_is_one_readable_message_by_default(
    tmp_path: Path, slack: HttpReceiver
) -> None:
    config = make_config(tmp_path, slack_destination(slack))
    emit_events(config, MIXED * 2)
    emit_events(config, ["topic.deleted"], start=10, result="denied")
    runner = drain(config)
    logged = log_events(config)
    mutations = [
        e for e in logged if e["event_type"] in ("topic.created", "acl.deleted", "topic.deleted")
    ]
    assert event_ids(slack) == [e["event_id"] for e in mutations]
    assert all(a == 200 for a in slack.behaviour.answers)
    first = slack.bodies()[0]
    assert first["channel"] == "#kafka-audit"
    assert first["text"] == "User:alice: topic.created on topic t0"
    headline = first["blocks"][0]["text"]["text"]
    assert "*User:alice*" in headline and "`topic.created`" in headline
    assert "topic t0" in headline and "succeeded" in headline
    assert "cluster prod" in first["blocks"][-1]["elements"][0]["text"]
    denied = slack.bodies()[-1]["blocks"][0]["text"]["text"]
    assert ":no_entry: denied" in denied
    # Queries are read but not sent; the cursor passes them all.
    assert runner.metrics.sent == len(logged) and runner.lag() == 0


@pytest.mark.parametrize(
    ("verbosity", "expected"),
    [
        ("QUERIES", {"auth.login", "records.consumed", "config.viewed"}),
        ("ALL", set(MIXED)),
        ("MUTATIONS", {"topic.created", "acl.deleted"}),
    ],
)
def test_verbosity_selects_mutations_queries_or_all(
    tmp_path: Path, slack: HttpReceiver, verbosity: str, expected: set[str]
) -> None:
    config = make_config(tmp_path, slack_destination(slack, verbosity=verbosity))
    emit_events(config, MIXED)
    drain(config)
    by_id = {e["event_id"]: e["event_type"] for e in log_events(config)}
    assert {by_id[i] for i in event_ids(slack)} == expected
    assert len(event_ids(slack)) == len(expected)


def test_markup_in_names_is_escaped(tmp_path: Path, slack: HttpReceiver) -> None:
    config = make_config(tmp_path, slack_destination(slack))
    import kaudit

    with kaudit.open(config) as session:
        session.emit("topic.created", actor="User:<b>&co", resource="topic:a<b>")
    drain(config)
    headline = slack.bodies()[0]["blocks"][0]["text"]["text"]
    assert "User:&lt;b&gt;&amp;co" in headline and "a&lt;b&gt;" in headline


def test_a_429_is_waited_out_as_retry_after_asks(slack: HttpReceiver, tmp_path: Path) -> None:
    slack.behaviour = HttpBehaviour(
        status=429, times=1, retry_after="1", validate=slack_payload_problem
    )
    config = make_config(tmp_path, slack_destination(slack))
    emit_events(config, ["topic.created"] * 2)
    runner = drain(config)
    assert slack.behaviour.answers == [429, 200, 200]
    assert len(event_ids(slack)) == 2 and runner.metrics.retried == 0


def test_an_invalid_payload_answer_is_not_retried(slack: HttpReceiver) -> None:
    slack.behaviour = HttpBehaviour(validate=lambda body: "invalid_payload")
    exporter = SlackExporter(SlackDestination.model_validate(slack_destination(slack)))
    with pytest.raises(ExporterError) as caught:
        exporter.send([ONE_EVENT_LINE])
    assert not caught.value.retryable
    assert "answered 400" in str(caught.value) and "invalid_payload" in str(caught.value)


def test_a_retried_batch_resumes_after_the_messages_already_posted(
    slack: HttpReceiver, tmp_path: Path
) -> None:
    config = make_config(tmp_path, slack_destination(slack))
    emit_events(config, ["topic.created"] * 4)
    lines = [orjson.dumps(e) for e in log_events(config)]
    exporter = SlackExporter(SlackDestination.model_validate(slack_destination(slack)))
    exporter.send(lines[:2])
    slack.behaviour = HttpBehaviour(status=503, times=1, validate=slack_payload_problem)
    with pytest.raises(ExporterError):
        exporter.send(lines)  # the first two go again (a new batch), the third fails
    exporter.send(lines)  # the retry starts at the third
    ids = event_ids(slack)
    assert ids == [orjson.loads(line)["event_id"] for line in [*lines[:2], *lines]]
