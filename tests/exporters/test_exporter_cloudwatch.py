"""The CloudWatch Logs destination against moto's server in its own process: one log
event per audit event in time order, group and stream created, `${HOSTNAME}` streams,
calls cut to PutLogEvents limits, oversized events dead-lettered alone, clear errors."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from kaudit_destination_helpers import (
    ONE_EVENT_LINE,
    dead_letters,
    drain,
    emit_events,
    log_events,
    make_config,
)
from kaudit_destination_servers import MotoServer

from kaudit.config import load_config_text
from kaudit.config.model import CloudWatchDestination
from kaudit.errors import ExporterError
from kaudit.exporters.cloudwatch import (
    EVENT_OVERHEAD_BYTES,
    MAX_EVENT_BYTES,
    MAX_SPAN_MS,
    CloudWatchExporter,
    plan_calls,
)


def cw_destination(moto: MotoServer, **extra: Any) -> dict[str, Any]:
    return {
        "type": "cloudwatch",
        "log_group": "/kafka-backup/audit",
        "log_stream": "node-1",
        "batch_interval_secs": 0,
        **moto.access(),
        **extra,
    }


def stream_events(moto: MotoServer, group: str, stream: str) -> list[dict[str, Any]]:
    logs = moto.client("logs")
    out: list[dict[str, Any]] = []
    token = None
    while True:
        kwargs: dict[str, Any] = {"logGroupName": group, "logStreamName": stream}
        kwargs["startFromHead"] = True
        if token:
            kwargs["nextToken"] = token
        answer = logs.get_log_events(**kwargs)
        out += answer["events"]
        if not answer["events"] or answer["nextForwardToken"] == token:
            return out
        token = answer["nextForwardToken"]


def test_events_arrive_as_log_events_in_a_created_group_and_stream(
    tmp_path: Path, moto: MotoServer
) -> None:
    config = make_config(tmp_path, cw_destination(moto, batch_size=30))
    emit_events(config, ["topic.created", "auth.login", "acl.created"] * 25)
    runner = drain(config)
    got = stream_events(moto, "/kafka-backup/audit", "node-1")
    logged = log_events(config)
    assert [orjson.loads(e["message"]) for e in got] == logged
    for event, log_event in zip(logged, got, strict=True):
        assert log_event["timestamp"] == int(
            datetime.fromisoformat(event["timestamp"]).timestamp() * 1000
        )
    assert runner.metrics.sent == 75


def test_the_seed_hostname_stream_comes_from_the_environment(
    tmp_path: Path, moto: MotoServer
) -> None:
    text = f"""
data_dir: {tmp_path / "data"}
audit:
  destination:
    type: cloudwatch
    log_group: /kafka-backup/audit
    log_stream: ${{HOSTNAME}}
    region: us-west-2
    endpoint_url: {moto.url}
    access_key_id: testing
    secret_access_key: testing
    format: ocsf
"""
    config = load_config_text(text, env={"HOSTNAME": "kafka-backup-7d9f"})
    emit_events(config, ["auth.login", "topic.created"])
    drain(config)
    west = moto.client("logs", region="us-west-2")
    streams = west.describe_log_streams(logGroupName="/kafka-backup/audit")["logStreams"]
    assert [s["logStreamName"] for s in streams] == ["kafka-backup-7d9f"]
    events = west.get_log_events(
        logGroupName="/kafka-backup/audit", logStreamName="kafka-backup-7d9f", startFromHead=True
    )["events"]
    assert [orjson.loads(e["message"])["class_uid"] for e in events] == [3002, 6003]


def test_a_batch_is_sorted_by_time_before_it_is_put(tmp_path: Path, moto: MotoServer) -> None:
    config = make_config(tmp_path, cw_destination(moto))
    emit_events(config, ["topic.created"] * 3)
    logged = log_events(config)
    # Out of time order in one batch, as a Kafka log with several writers can give.
    logged[0]["timestamp"], logged[2]["timestamp"] = logged[2]["timestamp"], logged[0]["timestamp"]
    exporter = CloudWatchExporter(CloudWatchDestination.model_validate(cw_destination(moto)))
    exporter.send([orjson.dumps(e) for e in logged])
    got = stream_events(moto, "/kafka-backup/audit", "node-1")
    stamps = [e["timestamp"] for e in got]
    assert stamps == sorted(stamps)
    assert sorted(orjson.loads(e["message"])["event_id"] for e in got) == sorted(
        e["event_id"] for e in logged
    )


def test_plan_calls_keeps_each_call_within_putlogevents_limits() -> None:
    items = [(i, 1_000 + i, b"x" * 100) for i in range(25)]
    calls, too_large = plan_calls(items, max_events=10)
    assert [len(c) for c in calls] == [10, 10, 5]
    assert too_large == []

    calls, _ = plan_calls(items, max_bytes=5 * (100 + EVENT_OVERHEAD_BYTES))
    assert [len(c) for c in calls] == [5, 5, 5, 5, 5]

    spread = [(0, 0, b"a"), (1, MAX_SPAN_MS + 1, b"b"), (2, 10, b"c")]
    calls, _ = plan_calls(spread)
    assert [[i for i, _, _ in c] for c in calls] == [[0, 2], [1]]

    big = [(0, 5, b"a"), (1, 6, b"y" * (MAX_EVENT_BYTES + 1)), (2, 7, b"c")]
    calls, too_large = plan_calls(big)
    assert too_large == [1]
    assert [[i for i, _, _ in c] for c in calls] == [[0, 2]]


def test_an_event_too_large_for_cloudwatch_is_dead_lettered_alone(
    tmp_path: Path, moto: MotoServer
) -> None:
    config = make_config(tmp_path, cw_destination(moto))
    emit_events(config, ["topic.created"] * 2)
    emit_events(config, ["topic.created"], start=2, pad=MAX_EVENT_BYTES)
    emit_events(config, ["topic.created"] * 2, start=3)
    runner = drain(config)
    got = [
        orjson.loads(e["message"])["details"]["i"]
        for e in stream_events(moto, "/kafka-backup/audit", "node-1")
    ]
    assert got == [0, 1, 3, 4]
    (letter,) = dead_letters(config)
    assert letter["record"]["details"]["i"] == 2
    assert "1 of 5 events refused" in letter["reason"]
    assert runner.metrics.sent == 4 and runner.metrics.dead_lettered == 1


def test_a_missing_stream_without_create_log_group_is_a_clear_retryable_error(
    moto: MotoServer,
) -> None:
    destination = CloudWatchDestination.model_validate(cw_destination(moto, create_log_group=False))
    exporter = CloudWatchExporter(destination)
    with pytest.raises(ExporterError) as caught:
        exporter.send([ONE_EVENT_LINE])
    assert caught.value.retryable
    message = str(caught.value)
    assert "cloudwatch destination" in message and "/kafka-backup/audit" in message
    assert "ResourceNotFoundException" in message


def test_a_paused_server_times_out_with_a_retryable_error(moto: MotoServer) -> None:
    destination = CloudWatchDestination.model_validate(cw_destination(moto, timeout_secs=1))
    exporter = CloudWatchExporter(destination)
    moto.pause()
    try:
        with pytest.raises(ExporterError) as caught:
            exporter.send([ONE_EVENT_LINE])
    finally:
        moto.resume()
    assert caught.value.retryable
    assert "cannot reach the endpoint" in str(caught.value)
