"""The KIP-567 auditor interface: one audit call → audit records, the recorder and logging
auditors, and loading auditors by entry-point name or `module:Class` path."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest

import kaudit
from kaudit.auditor import (
    AclBindingInfo,
    AclEvent,
    AuthInfo,
    ConfigChange,
    ConfigEvent,
    LoggingAuditor,
    RequestContext,
    TopicEvent,
    TopicInAudit,
    error_name,
    result_of,
    to_audit_events,
)
from kaudit.config import Config
from kaudit.errors import PluginError
from kaudit.events.model import ApiRef, AuthCheck
from kaudit.log.segments import LogReader, SegmentLog
from kaudit.plugins import available, load_class
from kaudit.recorder.auditor import RecorderAuditor
from kaudit_probe_auditors import CollectingAuditor

SECRET = "jaas-S3cret-pw"


def ctx(**overrides: Any) -> RequestContext:
    fields: dict[str, Any] = {
        "principal": "User:alice",
        "client_address": "10.0.0.50:51234",
        "client_id": "billing-svc",
        "client_software_name": "rdkafka",
        "client_software_version": "2.3.0",
        "sasl_mechanism": "SCRAM-SHA-256",
        "api_key": 19,
        "api_name": "CreateTopics",
        "api_version": 7,
        "correlation_id": 17,
        "duration_ms": 12.5,
    }
    fields.update(overrides)
    return RequestContext(**fields)


# -- to_audit_events ---------------------------------------------------------------------------


def test_a_topic_event_gives_one_record_per_topic_sharing_the_correlation_id() -> None:
    event = TopicEvent(
        "create",
        (
            TopicInAudit("orders", 6, 3, {"retention.ms": "604800000"}),
            TopicInAudit("payments", 3, 3),
            TopicInAudit("secret-topic", 1, 1),
        ),
    )
    auth = [
        AuthInfo("CREATE", "TOPIC", "orders"),
        AuthInfo("CREATE", "TOPIC", "payments"),
        AuthInfo("CREATE", "TOPIC", "secret-topic", allowed=False, error_code=29),
    ]
    records = to_audit_events(event, ctx(), auth)
    assert [(r.event_type, r.resource.id, r.action.result) for r in records] == [
        ("topic.created", "orders", "success"),
        ("topic.created", "payments", "success"),
        ("topic.created", "secret-topic", "denied"),
        ("access.denied", "secret-topic", "denied"),
    ]
    assert {r.context.correlation_id for r in records} == {"17"}
    orders = records[0]
    assert orders.actor.id == "User:alice"
    assert orders.actor.ip_address == "10.0.0.50:51234"
    assert orders.actor.client_id == "billing-svc"
    assert orders.actor.user_agent == "rdkafka/2.3.0"
    assert orders.actor.auth == "SCRAM-SHA-256"
    assert orders.context.api == ApiRef(19, "CreateTopics", 7)
    assert orders.context.source == "gateway"
    assert orders.action.operation == "create"
    assert orders.action.duration_ms == 12.5
    assert orders.action.error is None
    assert orders.details == {
        "topic": "orders",
        "partitions": 6,
        "replication_factor": 3,
        "configs": {"retention.ms": "604800000"},
    }
    # Each record carries only its own resource's checks.
    assert orders.authorization is not None
    assert orders.authorization.checks == (AuthCheck("CREATE", "Topic:LITERAL:orders", True, 0),)
    denied, access_denied = records[2], records[3]
    assert denied.action.error == "TOPIC_AUTHORIZATION_FAILED"
    assert denied.authorization is not None and denied.authorization.allowed is False
    assert access_denied.details == {
        "operation": "create",
        "resource": "Topic:LITERAL:secret-topic",
        "denied_event_type": "topic.created",
        "reason": "TOPIC_AUTHORIZATION_FAILED",
    }
    assert access_denied.actor == denied.actor


def test_a_failed_topic_request_is_a_failure_not_a_denial() -> None:
    records = to_audit_events(
        TopicEvent("create", (TopicInAudit("orders"),)),
        ctx(),
        [AuthInfo("CREATE", "TOPIC", "orders", error_code=36)],
    )
    [record] = records
    assert record.action.result == "failure"
    assert record.action.error == "TOPIC_ALREADY_EXISTS"
    assert record.details == {"topic": "orders"}


@pytest.mark.parametrize(
    ("kind", "event_type"),
    [("delete", "topic.deleted"), ("partition_change", "topic.partitions_changed")],
)
def test_topic_event_kinds(kind: Any, event_type: str) -> None:
    [record] = to_audit_events(TopicEvent(kind, (TopicInAudit("orders", 12),)), ctx(), [])
    assert record.event_type == event_type
    assert record.details["partitions"] == 12


def test_an_acl_event_is_one_record_for_all_its_bindings() -> None:
    bindings = (
        AclBindingInfo("User:bob", "*", "READ", "ALLOW", "Topic", "payments"),
        AclBindingInfo("User:bob", "*", "WRITE", "ALLOW", "Topic", "orders", "PREFIXED"),
    )
    auth = [AuthInfo("ALTER", "CLUSTER", "kafka-cluster")]
    [record] = to_audit_events(
        AclEvent("create", bindings), ctx(api_key=30, api_name="CreateAcls", api_version=3), auth
    )
    assert record.event_type == "acl.created"
    assert record.resource.type == "acl"
    assert record.resource.id == "Topic:orders,Topic:payments"
    assert record.details["count"] == 2
    assert record.details["bindings"][1] == {
        "principal": "User:bob",
        "host": "*",
        "operation": "WRITE",
        "permission_type": "ALLOW",
        "resource_type": "Topic",
        "resource_name": "orders",
        "pattern_type": "PREFIXED",
    }
    assert record.authorization is not None
    assert record.authorization.checks == (
        AuthCheck("ALTER", "Cluster:LITERAL:kafka-cluster", True, 0),
    )
    [described] = to_audit_events(AclEvent("describe", ()), ctx(), [])
    assert described.event_type == "acl.described"
    assert described.resource.id == "*"


def test_config_events_by_resource_type() -> None:
    changes = (
        ConfigChange("retention.ms", "SET", "1000"),
        ConfigChange("sasl.jaas.config", "SET", SECRET),
    )
    [topic] = to_audit_events(
        ConfigEvent("TOPIC", "orders", changes),
        ctx(api_key=44, api_name="IncrementalAlterConfigs"),
        [AuthInfo("ALTER_CONFIGS", "TOPIC", "orders")],
    )
    assert topic.event_type == "topic.config_changed"
    assert (topic.resource.type, topic.resource.id) == ("topic", "orders")
    assert topic.action.operation == "alter_configs"
    assert topic.details["config_type"] == "topic"
    assert topic.details["changes"][0] == {
        "field": "retention.ms",
        "operation": "SET",
        "new_value": "1000",
    }
    [broker] = to_audit_events(
        ConfigEvent("BROKER", "1", changes),
        ctx(),
        [AuthInfo("ALTER_CONFIGS", "CLUSTER", "kafka-cluster")],
    )
    assert broker.event_type == "config.changed"
    assert (broker.resource.type, broker.resource.id) == ("broker", "1")
    # No check for the broker itself: the request's checks are kept.
    assert broker.authorization is not None and len(broker.authorization.checks) == 1


def test_a_generic_request_is_one_kafka_request_per_resource() -> None:
    auth = [
        AuthInfo("READ", "GROUP", "billing"),
        AuthInfo("READ", "TOPIC", "orders"),
        AuthInfo("DESCRIBE", "TOPIC", "orders"),
    ]
    c = ctx(api_key=8, api_name="OffsetCommit", api_version=8)
    records = to_audit_events(None, c, auth)
    assert [(r.event_type, r.resource.type, r.resource.id) for r in records] == [
        ("kafka.request", "group", "billing"),
        ("kafka.request", "topic", "orders"),
    ]
    assert records[1].authorization is not None
    assert len(records[1].authorization.checks) == 2
    assert records[0].action.operation == "OffsetCommit"
    assert records[0].details == {"api": "OffsetCommit", "decoded": True}
    # No resources at all: the cluster.
    [bare] = to_audit_events(None, ctx(api_name="ApiVersions", decoded=False), [])
    assert (bare.resource.type, bare.resource.id) == ("cluster", "kafka-cluster")
    assert bare.details == {"api": "ApiVersions", "decoded": False}


def test_error_names_and_results() -> None:
    assert (result_of(0), result_of(29), result_of(36)) == ("success", "denied", "failure")
    assert error_name(31) == "CLUSTER_AUTHORIZATION_FAILED"
    # Kafka's own names for every code the protocol defines (kio's table).
    assert (error_name(79), error_name(15), error_name(-1)) == (
        "MEMBER_ID_REQUIRED",
        "COORDINATOR_NOT_AVAILABLE",
        "UNKNOWN_SERVER_ERROR",
    )
    assert error_name(9999) == "UNKNOWN_ERROR_9999"


@pytest.mark.parametrize(
    ("api", "code", "result", "error", "routine"),
    [
        ("JoinGroup", 79, "success", None, "MEMBER_ID_REQUIRED"),
        ("FindCoordinator", 15, "success", None, "COORDINATOR_NOT_AVAILABLE"),
        ("ApiVersions", 35, "success", None, "UNSUPPORTED_VERSION"),
        ("Heartbeat", 27, "success", None, "REBALANCE_IN_PROGRESS"),
        ("OffsetCommit", 16, "success", None, "NOT_COORDINATOR"),
        ("DeleteTopics", 35, "failure", "UNSUPPORTED_VERSION", None),
        # A commit refused during a rebalance did not store the offsets: a failure.
        ("OffsetCommit", 27, "failure", "REBALANCE_IN_PROGRESS", None),
        ("CreateTopics", 15, "failure", "COORDINATOR_NOT_AVAILABLE", None),
        ("JoinGroup", 30, "denied", "GROUP_AUTHORIZATION_FAILED", None),
    ],
)
def test_routine_protocol_steps_are_successes_that_name_the_step(
    api: str, code: int, result: str, error: str | None, routine: str | None
) -> None:
    check = AuthInfo("READ", "GROUP", "g", allowed=code != 30, error_code=code)
    [record, *_] = to_audit_events(None, ctx(api_name=api), [check])
    assert (record.action.result, record.action.error) == (result, error)
    assert record.details.get("routine") == routine
    assert record.authorization is not None
    assert record.authorization.checks[0].error_code == code  # the answer, as it was


# -- the recorder and logging auditors ---------------------------------------------------------


def _config(tmp_path: Path, auditors: list[Any]) -> Config:
    return Config.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "cluster": {"id": "prod"},
            "auditors": auditors,
            "audit": {"log": {"fsync": "never"}},
        }
    )


def _audit_a_day(session: kaudit.AuditSession) -> None:
    session.audit(
        TopicEvent("create", (TopicInAudit("orders", 6, 3),)),
        ctx(),
        [AuthInfo("CREATE", "TOPIC", "orders")],
    )
    session.audit(
        AclEvent("delete", (AclBindingInfo("User:bob", "*", "READ", "ALLOW", "Topic", "x"),)),
        ctx(api_name="DeleteAcls", correlation_id=18),
        [AuthInfo("ALTER", "CLUSTER", "kafka-cluster", allowed=False, error_code=31)],
    )
    session.audit(
        ConfigEvent(
            "BROKER",
            "1",
            (
                ConfigChange("sasl.jaas.config", "SET", SECRET),
                ConfigChange("ssl.key.password", "SET", SECRET),
                ConfigChange("log.retention.hours", "SET", "72"),
            ),
        ),
        ctx(api_name="IncrementalAlterConfigs", correlation_id=19),
        [AuthInfo("ALTER_CONFIGS", "BROKER", "1")],
    )
    session.audit(None, ctx(api_name="Metadata", correlation_id=20), [])


def test_the_recorder_auditor_writes_every_record_without_secrets(tmp_path: Path) -> None:
    config = _config(tmp_path, ["recorder"])
    with kaudit.open(config, source="gateway") as session:
        assert [type(a) for a in session.auditors] == [RecorderAuditor]
        _audit_a_day(session)
    raw = b"".join(p.read_bytes() for p in config.log_dir.glob("*.jsonl"))
    assert SECRET.encode() not in raw
    events = [orjson.loads(line) for _, line in LogReader(config.log_dir).iter_lines()]
    assert [e["event_type"] for e in events] == [
        "topic.created",
        "acl.deleted",
        "access.denied",
        "config.changed",
        "kafka.request",
    ]
    assert [e["integrity"]["sequence_number"] for e in events] == list(range(5))
    topic = events[0]
    assert topic["event_id"].startswith("evt_") and topic["timestamp"]
    assert topic["resource"]["path"] == "kafka://prod/topic/orders"
    assert topic["context"]["cluster_id"] == "prod"
    assert topic["context"]["source"] == "gateway"
    assert events[1]["context"]["correlation_id"] == events[2]["context"]["correlation_id"]
    changes = events[3]["details"]["changes"]
    assert [c["new_value"] for c in changes] == ["[REDACTED]", "[REDACTED]", "72"]


def test_the_logging_auditor_configured_by_name_logs_changes_only(tmp_path: Path) -> None:
    audit_log = tmp_path / "logs" / "kafka-audit.log"
    config = _config(
        tmp_path, ["recorder", {"name": "logging", "config": {"path": str(audit_log)}}]
    )
    with kaudit.open(config) as session:
        assert [type(a) for a in session.auditors] == [RecorderAuditor, LoggingAuditor]
        _audit_a_day(session)
    text = audit_log.read_text()
    assert SECRET not in text
    lines = text.splitlines()
    assert len(lines) == 3  # topic, ACL and config changes; not the generic request
    topic, acl, conf = lines
    assert " topic.created principal=User:alice client_id=billing-svc " in topic
    assert "address=10.0.0.50:51234 resource=topic:orders result=success error=NONE" in topic
    assert "checks=[CREATE Topic:LITERAL:orders allowed=True]" in topic
    assert " acl.deleted " in acl and "result=denied error=CLUSTER_AUTHORIZATION_FAILED" in acl
    assert " config.changed " in conf and "resource=broker:1" in conf
    assert conf.count("[REDACTED]") == 2 and "72" in conf
    # Lines start with a UTC timestamp.
    assert topic[:4].isdigit() and topic[10] == "T" and topic.split(" ")[0].endswith("Z")
    # And the recorder, listed first, wrote its records too.
    assert len(list(LogReader(config.log_dir).iter_lines())) == 5


def test_the_logging_auditor_by_import_path(tmp_path: Path) -> None:
    audit_log = tmp_path / "audit.log"
    config = _config(
        tmp_path,
        [{"name": "kaudit.auditor:LoggingAuditor", "config": {"path": str(audit_log)}}],
    )
    with kaudit.open(config) as session:
        _audit_a_day(session)
    assert len(audit_log.read_text().splitlines()) == 3
    # Only the auditors listed run: no recorder, so the log is empty.
    assert list(LogReader(config.log_dir).iter_lines()) == []


def test_a_third_party_auditor_by_import_path_gets_its_config_and_every_call(
    tmp_path: Path,
) -> None:
    CollectingAuditor.instances.clear()
    config = _config(
        tmp_path,
        [
            "recorder",
            {"name": "kaudit_probe_auditors:CollectingAuditor", "config": {"tag": "probe"}},
        ],
    )
    with kaudit.open(config) as session:
        [probe] = CollectingAuditor.instances
        assert probe.steps == ["configure", "start"]
        assert probe.configs == {"tag": "probe"}
        _audit_a_day(session)
        assert [call[1].correlation_id for call in probe.calls] == [17, 18, 19, 20]
    assert probe.steps == ["configure", "start", "close"]


def test_an_unknown_auditor_name_lists_the_available_ones(tmp_path: Path) -> None:
    config = _config(tmp_path, ["recorder", "logger"])
    with pytest.raises(PluginError) as info:
        kaudit.open(config)
    message = str(info.value)
    assert "unknown plugin 'logger' in kaudit.auditors" in message
    assert "available: logging, recorder" in message
    assert "module:Class" in message
    assert available("kaudit.auditors") == ["logging", "recorder"]
    # The failed open released the log directory and left no session behind.
    SegmentLog(config.log_dir).close()
    with pytest.raises(kaudit.AuditUnavailableError, match="no audit session is open"):
        kaudit.emit("auth.login", actor="User:a", resource="cluster:c")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("no_such_module_kaudit:Auditor", "cannot import plugin module 'no_such_module_kaudit'"),
        ("kaudit.auditor:NoSuchClass", "module 'kaudit.auditor' has no attribute 'NoSuchClass'"),
        ("kaudit.auditor:error_name", "plugin 'kaudit.auditor:error_name' is not a class"),
        ("kaudit_probe_auditors:NotAnAuditor", "is not an Auditor"),
    ],
)
def test_bad_import_paths_are_plugin_errors(tmp_path: Path, name: str, message: str) -> None:
    with pytest.raises(PluginError, match=re.escape(message)):
        kaudit.open(_config(tmp_path, [name]))


def test_an_auditor_that_fails_to_start_is_a_plugin_error(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match=r"auditor 'logging' could not start: .*needs `path`"):
        kaudit.open(_config(tmp_path, ["recorder", "logging"]))


def test_an_auditor_class_that_cannot_be_built_is_a_plugin_error(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match="NeedsArguments"):
        kaudit.open(_config(tmp_path, ["kaudit_probe_auditors:NeedsArguments"]))


def test_load_class_resolves_entry_points_to_the_builtin_classes() -> None:
    assert load_class("kaudit.auditors", "logging") is LoggingAuditor
    assert load_class("kaudit.auditors", "recorder") is RecorderAuditor
