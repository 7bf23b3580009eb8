"""The webhook destination against a local HTTP server in a thread: JSON array batches,
`${VAR}` headers, an HMAC signature the receiver can check, and a receiver that fails
with 5xx, refuses with 4xx, times out, goes away and recovers."""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from kaudit_destination_helpers import (
    dead_letters,
    drain,
    emit_events,
    log_events,
    make_config,
    one_runner,
)
from kaudit_destination_servers import HttpBehaviour, HttpReceiver, free_port

from kaudit.config import load_config_text
from kaudit.config.model import WebhookDestination
from kaudit.errors import ExporterError
from kaudit.exporters.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookExporter

SECRET = "s3cr3t-signing-key-0123456789"


def webhook(receiver: HttpReceiver, **extra: Any) -> dict[str, Any]:
    return {"type": "webhook", "url": receiver.url, "batch_interval_secs": 0, **extra}


def received_events(receiver: HttpReceiver) -> list[dict[str, Any]]:
    return [event for body in receiver.bodies() for event in body]


def test_batches_arrive_as_json_arrays_with_headers_from_the_environment(
    tmp_path: Path, receiver: HttpReceiver
) -> None:
    text = f"""
data_dir: {tmp_path / "data"}
audit:
  log: {{fsync: never}}
  destination:
    type: webhook
    url: {receiver.url}
    headers:
      Authorization: Bearer ${{WEBHOOK_TOKEN}}
    batch_size: 100
    retry_attempts: 3
"""
    config = load_config_text(text, env={"WEBHOOK_TOKEN": "tok-123"})
    emit_events(config, ["topic.created", "auth.login"] * 125)
    drain(config)
    assert [len(b) for b in receiver.bodies()] == [100, 100, 50]
    assert received_events(receiver) == log_events(config)
    for request in receiver.received:
        assert request.headers["Authorization"] == "Bearer tok-123"
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["User-Agent"].startswith("kaudit/")
        assert SIGNATURE_HEADER not in request.headers


def test_each_request_is_signed_so_the_receiver_can_check_the_sender(
    tmp_path: Path, receiver: HttpReceiver
) -> None:
    config = make_config(tmp_path, webhook(receiver, secret=SECRET, batch_size=10))
    emit_events(config, ["topic.created"] * 25)
    drain(config)
    assert len(receiver.received) == 3
    for request in receiver.received:
        timestamp = request.headers[TIMESTAMP_HEADER]
        assert abs(int(timestamp) - time.time()) < 60
        expected = hmac.new(
            SECRET.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256
        ).hexdigest()
        assert request.headers[SIGNATURE_HEADER] == f"sha256={expected}"
        # A tampered body does not match.
        forged = hmac.new(
            SECRET.encode(), timestamp.encode() + b"." + request.body + b" ", hashlib.sha256
        ).hexdigest()
        assert request.headers[SIGNATURE_HEADER] != f"sha256={forged}"
    keys = [r.headers["Idempotency-Key"] for r in receiver.received]
    assert len(set(keys)) == 3


def test_5xx_answers_are_retried_until_the_receiver_recovers(
    tmp_path: Path, receiver: HttpReceiver
) -> None:
    receiver.behaviour = HttpBehaviour(status=503, times=6)
    config = make_config(tmp_path, webhook(receiver, retry_attempts=1, batch_size=50))
    emit_events(config, ["topic.created"] * 50)
    runner = drain(config)
    assert received_events(receiver) == log_events(config)
    assert receiver.behaviour.answers == [503] * 6 + [200]
    # Two quick tries per runner attempt: three runner attempts failed.
    assert runner.metrics.retried == 3
    assert runner.metrics.sent == 50 and runner.metrics.dead_lettered == 0


def test_a_4xx_refusal_goes_to_the_dead_letter_file_and_the_cursor_moves_on(
    tmp_path: Path, receiver: HttpReceiver
) -> None:
    receiver.behaviour = HttpBehaviour(status=422, times=1)
    config = make_config(tmp_path, webhook(receiver, batch_size=5))
    emit_events(config, ["topic.created"] * 10)
    runner = drain(config)
    letters = dead_letters(config)
    assert [letter["record"]["details"]["i"] for letter in letters] == list(range(5))
    assert "answered 422" in letters[0]["reason"]
    assert "refused the content" in letters[0]["reason"]
    assert [e["details"]["i"] for e in received_events(receiver)] == list(range(5, 10))
    assert runner.lag() == 0


def test_wrong_credentials_are_named_and_retried(receiver: HttpReceiver) -> None:
    receiver.behaviour = HttpBehaviour(status=401)
    exporter = WebhookExporter(
        WebhookDestination.model_validate(webhook(receiver, retry_attempts=0))
    )
    with pytest.raises(ExporterError) as caught:
        exporter.send([b'{"a":1}'])
    assert caught.value.retryable
    # The destination and its host are named; the URL's path (where a webhook keeps its
    # token) never is.
    host = receiver.url.rsplit("/", 1)[0]
    assert f"webhook destination webhook:{host}: {host} answered 401" in str(caught.value)
    assert "/ingest" not in str(caught.value)
    assert "401" in str(caught.value) and "credentials" in str(caught.value)


def test_a_receiver_that_hangs_times_out_and_is_retried(
    tmp_path: Path, receiver: HttpReceiver
) -> None:
    receiver.behaviour = HttpBehaviour(status=200, times=None, hang_s=1.5)
    exporter = WebhookExporter(
        WebhookDestination.model_validate(webhook(receiver, timeout=0.5, retry_attempts=0))
    )
    with pytest.raises(ExporterError) as caught:
        exporter.send([b'{"a":1}'])
    assert caught.value.retryable
    assert "no answer" in str(caught.value) and "0.5 s" in str(caught.value)
    receiver.behaviour = HttpBehaviour()
    exporter.send([b'{"a":2}'])
    assert receiver.bodies()[-1] == [{"a": 2}]


def test_a_receiver_that_is_down_then_back_gets_every_event(
    tmp_path: Path, receiver: HttpReceiver
) -> None:
    config = make_config(tmp_path, webhook(receiver, batch_size=5, retry_attempts=0))
    emit_events(config, ["topic.created"] * 20)
    receiver.stop()
    runner = one_runner(config)
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            receiver.start()

    runner._sleep = sleep
    runner.drain()
    runner.close()
    assert len(sleeps) == 2 and runner.metrics.retried == 2
    assert [e["details"]["i"] for e in received_events(receiver)] == list(range(20))


def test_unreachable_url_error_names_destination_and_cause() -> None:
    url = f"http://127.0.0.1:{free_port()}/x"
    exporter = WebhookExporter(
        WebhookDestination.model_validate({"type": "webhook", "url": url, "retry_attempts": 0})
    )
    with pytest.raises(ExporterError) as caught:
        exporter.send([orjson.dumps({"a": 1})])
    assert caught.value.retryable
    host = url.removesuffix("/x")
    assert f"webhook destination webhook:{host}: cannot reach {host}" in str(caught.value)
