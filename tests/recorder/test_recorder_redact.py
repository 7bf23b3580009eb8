"""Secrets never reach the log: the recorder redacts sensitive values before writing.

Every test looks for the secret in the raw bytes of every file in the log directory, not
just in the decoded field, so a secret leaking anywhere (another field, a later line)
fails the test.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from kaudit.events.model import Action, Actor, AuditEvent, Resource
from kaudit.log.segments import LogReader, SegmentLog
from kaudit.recorder.core import Recorder, RecorderSettings
from kaudit.recorder.redact import REDACTED

SECRET = "hunter2-S3cr3t-value"


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "log"


@pytest.fixture
def recorder(log_dir: Path) -> Iterator[Recorder]:
    rec = Recorder(
        SegmentLog(log_dir, fsync="never"),
        RecorderSettings(redact_keys=(r"^x-internal-",)),
    )
    yield rec
    rec.close()


def log_bytes(log_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(log_dir.iterdir()) if p.is_file())


def written_details(recorder: Recorder, log_dir: Path) -> list[dict[str, Any]]:
    recorder.flush(timeout=10)
    return [orjson.loads(line)["details"] for _, line in LogReader(log_dir).iter_lines()]


CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "password": ({"user": "alice", "password": SECRET}, {"user": "alice", "password": REDACTED}),
    "sasl.jaas.config": (
        {"sasl.jaas.config": f'PlainLoginModule required password="{SECRET}";'},
        {"sasl.jaas.config": REDACTED},
    ),
    "ssl.key.password": ({"ssl.key.password": SECRET}, {"ssl.key.password": REDACTED}),
    "ssl.keystore.password": (
        {"ssl.keystore.password": SECRET, "ssl.keystore.type": "PKCS12"},
        {"ssl.keystore.password": REDACTED, "ssl.keystore.type": "PKCS12"},
    ),
    "token": ({"token": SECRET, "expires": 3600}, {"token": REDACTED, "expires": 3600}),
    "a delegation token's id is not its secret": (
        {"token_id": "4zZQBWiLQh", "delegation_token": True, "token_hmac": SECRET},
        {"token_id": "4zZQBWiLQh", "delegation_token": True, "token_hmac": REDACTED},
    ),
    "api key and secret": (
        {"api_key": SECRET, "client_secret": SECRET},
        {"api_key": REDACTED, "client_secret": REDACTED},
    ),
    "scram credentials": (
        {"scram_credentials": {"mechanism": "SCRAM-SHA-256", "salted_password": SECRET}},
        {"scram_credentials": REDACTED},
    ),
    "nested in objects and lists": (
        {"request": {"configs": [{"ok": 1}, {"db": {"password": SECRET}}]}},
        {"request": {"configs": [{"ok": 1}, {"db": {"password": REDACTED}}]}},
    ),
    "list of lists": (
        {"rows": [[{"token": SECRET}], ["plain"]]},
        {"rows": [[{"token": REDACTED}], ["plain"]]},
    ),
    "field/new_value sibling": (
        {
            "changes": [
                {"field": "sasl.jaas.config", "operation": "SET", "new_value": SECRET},
                {"field": "retention.ms", "operation": "SET", "new_value": "604800000"},
            ]
        },
        {
            "changes": [
                {"field": "sasl.jaas.config", "operation": "SET", "new_value": REDACTED},
                {"field": "retention.ms", "operation": "SET", "new_value": "604800000"},
            ]
        },
    ),
    "name/value sibling with old and new": (
        {"name": "ssl.truststore.password", "old_value": SECRET, "value": SECRET + "2"},
        {"name": "ssl.truststore.password", "old_value": REDACTED, "value": REDACTED},
    ),
    "config/values sibling": (
        {"config": "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config", "values": [SECRET]},
        {"config": "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config", "values": REDACTED},
    ),
    "configured redact_keys": (
        {"x-internal-signing": SECRET, "x-public": "visible"},
        {"x-internal-signing": REDACTED, "x-public": "visible"},
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_emit_redacts_sensitive_values(
    recorder: Recorder, log_dir: Path, case: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    details, expected = case
    original = copy.deepcopy(details)
    recorder.emit("config.changed", actor="User:admin", resource="broker:1", details=details)
    assert written_details(recorder, log_dir) == [expected]
    assert SECRET.encode() not in log_bytes(log_dir)
    assert details == original  # the caller's mapping is not modified


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_record_redacts_prebuilt_events(
    recorder: Recorder, log_dir: Path, case: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    details, expected = case
    recorder.record(
        AuditEvent(
            timestamp="",
            event_type="topic.config_changed",
            event_id="",
            actor=Actor(type="user", id="User:admin"),
            resource=Resource(type="topic", id="orders"),
            action=Action(operation="alter_configs"),
            details=details,
        )
    )
    assert written_details(recorder, log_dir) == [expected]
    assert SECRET.encode() not in log_bytes(log_dir)


def test_details_without_secrets_are_written_as_given(recorder: Recorder, log_dir: Path) -> None:
    details = {
        "partitions": 6,
        "configs": {"retention.ms": "604800000", "cleanup.policy": "compact"},
        "changes": [{"field": "retention.ms", "new_value": "1000"}],
        "keyword": "password-less login",  # a value that merely mentions a secret word
    }
    recorder.emit("topic.created", actor="User:a", resource="topic:t", details=details)
    assert written_details(recorder, log_dir) == [details]


def test_a_sensitive_name_in_any_naming_key_redacts_its_value(
    recorder: Recorder, log_dir: Path
) -> None:
    details = {"changes": [{"name": "broker-0", "key": "ssl.keystore.password", "value": SECRET}]}
    recorder.emit("config.changed", actor="User:admin", resource="broker:0", details=details)
    recorder.flush(timeout=10)
    assert SECRET.encode() not in log_bytes(log_dir)
