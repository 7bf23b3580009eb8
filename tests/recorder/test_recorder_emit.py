"""What emit() and record() put in the log: fields, coercions, enrichment, selection.

Each test runs a real Recorder over a real SegmentLog in a temporary directory and reads
the lines back from the segment files.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from kaudit.errors import UnknownEventTypeError
from kaudit.events.codec import decode
from kaudit.events.model import (
    Action,
    Actor,
    ApiRef,
    AuditEvent,
    AuthCheck,
    Authorization,
    Context,
    Integrity,
    Resource,
)
from kaudit.log.segments import LogReader, SegmentLog
from kaudit.recorder.core import Recorder, RecorderSettings

TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
EVENT_ID = re.compile(r"evt_[0-9A-HJKMNP-TV-Z]{26}")

MakeRecorder = Callable[..., Recorder]


@pytest.fixture
def make_recorder(tmp_path: Path) -> Iterator[MakeRecorder]:
    made: list[Recorder] = []

    def make(**settings: Any) -> Recorder:
        log = SegmentLog(tmp_path / f"log{len(made)}", fsync="never")
        recorder = Recorder(log, RecorderSettings(**settings))
        made.append(recorder)
        return recorder

    yield make
    for recorder in made:
        recorder.close()


def lines_of(recorder: Recorder) -> list[bytes]:
    recorder.flush(timeout=10)
    sink = recorder.sink
    assert isinstance(sink, SegmentLog)
    return [line for _, line in LogReader(sink.dir).iter_lines()]


def dicts_of(recorder: Recorder) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in lines_of(recorder)]


def test_emit_writes_one_line_with_every_field(make_recorder: MakeRecorder) -> None:
    recorder = make_recorder(cluster_id="prod-us-west-2", environment="production", host="h1")
    before = time.time()
    recorder.emit(
        "topic.created",
        actor="User:alice",
        resource="topic:orders",
        details={"partitions": 6, "replication_factor": 3},
        correlation_id="req_1",
        duration_ms=12,
    )
    [event] = dicts_of(recorder)
    assert list(event) == [
        "timestamp",
        "event_type",
        "event_id",
        "version",
        "actor",
        "resource",
        "action",
        "authorization",
        "context",
        "details",
        "integrity",
    ]
    assert event["event_type"] == "topic.created"
    assert TIMESTAMP.fullmatch(event["timestamp"])
    stamped = time.mktime(time.strptime(event["timestamp"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert abs((stamped - time.timezone) - before) < 5
    assert EVENT_ID.fullmatch(event["event_id"])
    assert event["version"] == "1.0"
    assert event["actor"] == {
        "type": "user",
        "id": "User:alice",
        "roles": [],
        "ip_address": None,
        "user_agent": None,
        "client_id": None,
        "auth": None,
        "authorized_as": None,
    }
    assert event["resource"] == {
        "type": "topic",
        "id": "orders",
        "path": "kafka://prod-us-west-2/topic/orders",
    }
    assert event["action"] == {
        "operation": "create",
        "result": "success",
        "duration_ms": 12,
        "error": None,
    }
    assert event["authorization"] is None
    assert event["context"] == {
        "cluster_id": "prod-us-west-2",
        "environment": "production",
        "correlation_id": "req_1",
        "source": "sdk",
        "host": "h1",
        "api": None,
    }
    assert event["details"] == {"partitions": 6, "replication_factor": 3}
    assert event["integrity"] == {
        "sequence_number": 0,
        "signature": None,
        "previous_signature": None,
    }


def test_mappings_are_coerced_into_the_model(make_recorder: MakeRecorder) -> None:
    recorder = make_recorder(cluster_id="c1")
    recorder.emit(
        "acl.created",
        actor={"type": "service", "id": "User:svc", "client_id": "admin-cli", "auth": "PLAIN"},
        resource={"type": "acl", "id": "Topic:LITERAL:orders"},
        action={"operation": "create_acls", "result": "failure", "error": "POLICY_VIOLATION"},
        source="console",
    )
    [event] = dicts_of(recorder)
    assert event["actor"]["type"] == "service"
    assert event["actor"]["client_id"] == "admin-cli"
    assert event["actor"]["auth"] == "PLAIN"
    assert event["resource"] == {
        "type": "acl",
        "id": "Topic:LITERAL:orders",
        "path": "kafka://c1/acl/Topic:LITERAL:orders",
    }
    assert event["action"] == {
        "operation": "create_acls",
        "result": "failure",
        "duration_ms": None,
        "error": "POLICY_VIOLATION",
    }
    assert event["context"]["source"] == "console"


def test_an_actor_mapping_with_roles_is_recorded(make_recorder: MakeRecorder) -> None:
    recorder = make_recorder()
    recorder.emit(
        "topic.deleted",
        actor={"type": "user", "id": "alice@example.com", "roles": ["ops", "admin"]},
        resource="topic:orders",
    )
    recorder.emit("topic.deleted", actor="User:bob", resource="topic:payments")
    events = dicts_of(recorder)
    assert [e["actor"]["id"] for e in events] == ["alice@example.com", "User:bob"]
    assert events[0]["actor"]["roles"] == ["ops", "admin"]


def test_an_action_string_takes_result_duration_and_error(make_recorder: MakeRecorder) -> None:
    recorder = make_recorder()
    recorder.emit(
        "topic.created",
        actor=Actor(type="user", id="User:alice", ip_address="10.0.0.50"),
        resource=Resource(type="topic", id="orders"),
        action="create_topics",
        result="denied",
        duration_ms=1.5,
        error="TOPIC_AUTHORIZATION_FAILED",
        authorization=Authorization(
            allowed=False,
            checks=(AuthCheck("CREATE", "Topic:LITERAL:orders", False, 29),),
        ),
    )
    [event] = dicts_of(recorder)
    assert event["action"] == {
        "operation": "create_topics",
        "result": "denied",
        "duration_ms": 1.5,
        "error": "TOPIC_AUTHORIZATION_FAILED",
    }
    assert event["actor"]["ip_address"] == "10.0.0.50"
    assert event["authorization"] == {
        "allowed": False,
        "action": None,
        "checks": [
            {
                "operation": "CREATE",
                "resource": "Topic:LITERAL:orders",
                "allowed": False,
                "error_code": 29,
            }
        ],
        "policies": [],
    }


@pytest.mark.parametrize(
    ("event_type", "operation"),
    [
        ("topic.created", "create"),
        ("topic.config_changed", "alter_configs"),
        ("topic.partitions_changed", "create_partitions"),
        ("group.offsets_reset", "reset_offsets"),
        ("auth.login", "login"),
        ("auth.failed", "authenticate"),
        ("backup.completed", "backup"),
        ("kafka.request", "request"),
    ],
)
def test_the_default_operation_comes_from_the_catalog(
    make_recorder: MakeRecorder, event_type: str, operation: str
) -> None:
    recorder = make_recorder()
    recorder.emit(event_type, actor="User:a", resource="cluster:kafka-cluster")
    [event] = dicts_of(recorder)
    assert event["action"]["operation"] == operation


def test_resource_paths(make_recorder: MakeRecorder) -> None:
    recorder = make_recorder(cluster_id="prod")
    recorder.emit("topic.created", actor="User:a", resource="Topic:orders")
    recorder.emit("group.deleted", actor="User:a", resource={"type": "group", "id": "billing"})
    recorder.emit(
        "topic.deleted",
        actor="User:a",
        resource=Resource(type="topic", id="x", path="kafka://elsewhere/topic/x"),
    )
    recorder.emit("backup.completed", actor="User:a", resource="backup:nightly")
    # The id keeps everything after the first colon.
    recorder.emit("acl.deleted", actor="User:a", resource="acl:Topic:LITERAL:orders")
    paths = [
        (e["resource"]["type"], e["resource"]["id"], e["resource"]["path"])
        for e in dicts_of(recorder)
    ]
    assert paths == [
        ("topic", "orders", "kafka://prod/topic/orders"),
        ("group", "billing", "kafka://prod/group/billing"),
        ("topic", "x", "kafka://elsewhere/topic/x"),
        ("backup", "nightly", None),  # not a Kafka resource
        ("acl", "Topic:LITERAL:orders", "kafka://prod/acl/Topic:LITERAL:orders"),
    ]

    no_cluster = make_recorder()
    no_cluster.emit("topic.created", actor="User:a", resource="topic:orders")
    [event] = dicts_of(no_cluster)
    assert event["resource"]["path"] is None


def test_the_host_defaults_to_this_machine(make_recorder: MakeRecorder) -> None:
    recorder = make_recorder()
    recorder.emit("auth.login", actor="User:a", resource="cluster:c")
    [event] = dicts_of(recorder)
    assert event["context"]["host"] == socket.gethostname()
    assert event["context"]["cluster_id"] is None
    assert event["context"]["environment"] is None


def test_emit_with_time_ns_stamps_the_past(make_recorder: MakeRecorder) -> None:
    recorder = make_recorder()
    recorder.emit(
        "auth.login", actor="User:a", resource="cluster:c", time_ns=1_700_000_000_123 * 10**6
    )
    [event] = dicts_of(recorder)
    assert event["timestamp"] == "2023-11-14T22:13:20.123Z"


def test_each_event_gets_the_next_sequence_and_a_unique_increasing_id(
    make_recorder: MakeRecorder,
) -> None:
    recorder = make_recorder()
    for i in range(500):
        recorder.emit("records.produced", actor="User:a", resource="topic:t", details={"i": i})
    events = dicts_of(recorder)
    assert [e["details"]["i"] for e in events] == list(range(500))
    assert [e["integrity"]["sequence_number"] for e in events] == list(range(500))
    ids = [e["event_id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == 500


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"resource": "orders"}, ValueError, "resource must be 'type:id'"),
        ({"result": "ok"}, ValueError, "result must be one of success, failure, denied"),
        ({"actor": 42}, TypeError, "actor must be a Actor, a string or a mapping, got int"),
        ({"actor": {"name": "alice"}}, ValueError, "accepted keys: type, id, roles"),
        ({"action": {"op": "x"}}, ValueError, "invalid action"),
    ],
)
def test_invalid_arguments_are_refused_on_the_caller_path(
    make_recorder: MakeRecorder, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    recorder = make_recorder()
    args: dict[str, Any] = {"actor": "User:a", "resource": "topic:t", **kwargs}
    with pytest.raises(error, match=re.escape(message)):
        recorder.emit("topic.created", **args)
    assert lines_of(recorder) == []


def test_unknown_event_type_is_refused_with_close_matches(make_recorder: MakeRecorder) -> None:
    recorder = make_recorder(events=("topic.*",))
    with pytest.raises(UnknownEventTypeError) as info:
        recorder.emit("topic.create", actor="User:a", resource="topic:t")
    message = str(info.value)
    assert "unknown event type 'topic.create'" in message
    assert "topic.created" in message
    assert "custom_event_types" in message
    # Refused even when the filter would not select it, and through record() too.
    with pytest.raises(UnknownEventTypeError, match="did you mean"):
        recorder.emit("auth.logn", actor="User:a", resource="cluster:c")
    with pytest.raises(UnknownEventTypeError):
        recorder.record(_prebuilt(event_type="billing.invoice_sent"))
    assert lines_of(recorder) == []


def test_custom_event_types_are_allowed_when_declared(make_recorder: MakeRecorder) -> None:
    recorder = make_recorder(custom_event_types=("billing.invoice_sent",))
    recorder.emit("billing.invoice_sent", actor="svc:billing", resource="invoice:42")
    [event] = dicts_of(recorder)
    assert event["event_type"] == "billing.invoice_sent"
    assert event["action"]["operation"] == "invoice_sent"
    assert event["resource"] == {"type": "invoice", "id": "42", "path": None}


def test_events_and_exclude_events_globs_select_what_is_written(
    make_recorder: MakeRecorder,
) -> None:
    recorder = make_recorder(events=("topic.*", "auth.failed"), exclude_events=("topic.deleted",))
    emitted = [
        "topic.created",
        "topic.deleted",
        "auth.failed",
        "auth.login",
        "topic.config_changed",
        "acl.created",
    ]
    for event_type in emitted:
        recorder.emit(event_type, actor="User:a", resource="topic:t")
    recorder.record(_prebuilt(event_type="topic.deleted"))
    recorder.record(_prebuilt(event_type="topic.created"))
    written = [e["event_type"] for e in dicts_of(recorder)]
    assert written == ["topic.created", "auth.failed", "topic.config_changed", "topic.created"]
    assert recorder.metrics()["kaudit_events_filtered_total"] == 4
    assert recorder.metrics()["kaudit_events_written_total"] == 4


def _prebuilt(**overrides: Any) -> AuditEvent:
    fields: dict[str, Any] = {
        "timestamp": "",
        "event_type": "topic.created",
        "event_id": "",
        "actor": Actor(type="user", id="User:carol"),
        "resource": Resource(type="topic", id="orders"),
        "action": Action(operation="create"),
    }
    fields.update(overrides)
    return AuditEvent(**fields)


def test_record_fills_id_and_timestamp_and_enriches(make_recorder: MakeRecorder) -> None:
    recorder = make_recorder(cluster_id="prod", environment="production", host="h1")
    recorder.record(
        _prebuilt(context=Context(correlation_id="42", api=ApiRef(19, "CreateTopics", 7)))
    )
    recorder.record(
        _prebuilt(
            timestamp="2026-01-02T03:04:05.678Z",
            event_id="evt_given",
            context=Context(cluster_id="other", source="gateway"),
            integrity=Integrity(sequence_number=999, signature="sha256:stale"),
        )
    )
    first, second = (decode(line) for line in lines_of(recorder))
    assert TIMESTAMP.fullmatch(first.timestamp)
    assert EVENT_ID.fullmatch(first.event_id)
    assert first.context == Context(
        cluster_id="prod",
        environment="production",
        correlation_id="42",
        source="sdk",
        host="h1",
        api=ApiRef(19, "CreateTopics", 7),
    )
    assert first.resource.path == "kafka://prod/topic/orders"
    assert first.integrity == Integrity(sequence_number=0)
    # Given ids and timestamps are kept, as is context the source set; the sequence is
    # always the writer's.
    assert second.timestamp == "2026-01-02T03:04:05.678Z"
    assert second.event_id == "evt_given"
    assert second.context.cluster_id == "other"
    assert second.context.source == "gateway"
    assert second.integrity == Integrity(sequence_number=1)


def test_record_many_and_durable_writes_before_returning(make_recorder: MakeRecorder) -> None:
    recorder = make_recorder()
    recorder.record_many([_prebuilt(), _prebuilt(event_type="topic.deleted")], durable=True)
    sink = recorder.sink
    assert isinstance(sink, SegmentLog)
    # No flush: durable=True already waited for the writer.
    lines = [line for _, line in LogReader(sink.dir).iter_lines()]
    assert [decode(line).event_type for line in lines] == ["topic.created", "topic.deleted"]
    recorder.emit("auth.login", actor="User:a", resource="cluster:c", durable=True)
    assert len(list(LogReader(sink.dir).iter_lines())) == 3


def test_secrets_in_details_that_cannot_be_serialised_are_still_redacted(
    make_recorder: MakeRecorder,
) -> None:
    recorder = make_recorder()
    details = {"sasl.jaas.config": 'required username="a" password="hunter2";',
               "password": "hunter3", "nested": {"token": "hunter4"}, "when": {1, 2}}  # fmt: skip
    recorder.emit("config.changed", actor="User:a", resource="broker:1", details=details)
    (event,) = dicts_of(recorder)
    kept = event["details"]["unserialisable_details"]
    assert kept["when"] == "<unserialisable set>"
    assert not [s for s in ("hunter2", "hunter3", "hunter4") if s in orjson.dumps(event).decode()]


def test_details_that_cannot_be_serialised_are_replaced_not_lost(
    make_recorder: MakeRecorder,
) -> None:
    recorder = make_recorder()
    recorder.emit("config.changed", actor="User:a", resource="broker:1", details={"x": object()})
    recorder.emit("config.changed", actor="User:a", resource="broker:1", details={"ok": 1})
    first, second = dicts_of(recorder)
    assert first["details"]["unserialisable_details"] == {"x": "<unserialisable object>"}
    assert second["details"] == {"ok": 1}
    assert [first["integrity"]["sequence_number"], second["integrity"]["sequence_number"]] == [
        0,
        1,
    ]


def test_every_line_decodes_even_with_an_int_correlation_id(make_recorder: MakeRecorder) -> None:
    recorder = make_recorder()
    try:
        recorder.emit("auth.login", actor="User:a", resource="cluster:c", correlation_id=42)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return  # refusing it on the caller's path is fine too
    [line] = lines_of(recorder)
    assert decode(line).context.correlation_id == "42"
