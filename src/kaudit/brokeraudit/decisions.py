"""The broker auditor's decision records, and the audit events they become.

The plugin (``broker-auditor/``, `kaudit.broker.AuditingAuthorizer` inside the broker)
sends one JSON object per record to its decision topic:

- ``decision``: one authorization decision of one request: principal, client address,
  listener, security protocol, client id, API key and version, correlation id,
  operation, resource pattern, allowed; a denial may add ``also_denied``, the operation
  the same request was refused on the same resource first (Kafka's DESCRIBE check, made
  to decide whether to reveal that it exists), kept as a second check of one denial;
- ``aggregate``: a window's count of one client's allowed READ/WRITE decisions on one
  resource (produce, fetch, group traffic): ``count``, ``first_ms``, ``last_ms``;
- ``dropped``: how many decisions the plugin's full queue dropped since its last report.

`parse` checks a record and `to_events` makes the audit events of one: the type the
gateway would give the same request (``topic.created``, ``acl.deleted``...; the generic
``kafka.request`` otherwise), ``context.source: broker``, the authorization block with
the decision as its check, and — the authorizer runs before the operation — an
``action.result`` of ``unknown`` for what it allowed, ``denied`` (plus an
``access.denied`` event) for what it refused. Each event's id is derived from the
record's, so a record read twice makes the same event id and readers drop the copy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import orjson
from kio.schema.index import api_key_map

from kaudit.auditor import ActionEvent, ActionTarget, AuthInfo, RequestContext, to_audit_events
from kaudit.errors import EventDecodeError
from kaudit.events.model import Action, Actor, AuditEvent, Context, Resource

KINDS = ("decision", "aggregate", "dropped")
SOURCE = "broker"

# The event type of an allowed (or denied) request, by API, as the gateway names it.
_BY_API: Mapping[str, str] = {
    "Produce": "records.produced",
    "Fetch": "records.consumed",
    "CreateTopics": "topic.created",
    "DeleteTopics": "topic.deleted",
    "CreatePartitions": "topic.partitions_changed",
    "DeleteRecords": "records.deleted",
    "CreateAcls": "acl.created",
    "DeleteAcls": "acl.deleted",
    "DescribeAcls": "acl.described",
    "DescribeConfigs": "config.viewed",
    "DeleteGroups": "group.deleted",
    "OffsetDelete": "group.offsets_deleted",
    "AlterUserScramCredentials": "auth.credentials_changed",
    "CreateDelegationToken": "auth.token_created",
    "AlterPartitionReassignments": "admin.partitions_reassigned",
    "ElectLeaders": "admin.leaders_elected",
    "UpdateFeatures": "admin.feature_enabled",
}
_CONFIG_APIS = frozenset({"AlterConfigs", "IncrementalAlterConfigs"})
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def api_name(key: int) -> str:
    """Kafka's name of API `key` (``CreateTopics``), from kio's table."""
    snake = api_key_map.get(key)
    if snake is None:
        return f"Api{key}"
    return "".join(part[:1].upper() + part[1:] for part in snake.split("_"))


@dataclass(frozen=True)
class BrokerRecord:
    """One record of the decision topic (see the module's docstring for the kinds)."""

    kind: str
    id: str
    node: int
    role: str
    time_ms: int
    fields: Mapping[str, Any]

    @property
    def principal(self) -> str:
        return str(self.fields.get("principal") or "User:ANONYMOUS")

    @property
    def client_address(self) -> str | None:
        value = self.fields.get("client_address")
        return None if value is None else str(value)

    @property
    def api_key(self) -> int:
        return int(self.fields.get("api_key", -1))

    @property
    def correlation_id(self) -> int | None:
        value = self.fields.get("correlation_id")
        return None if value is None else int(value)

    @property
    def client_id(self) -> str | None:
        value = self.fields.get("client_id")
        return None if value is None else str(value)


_REQUIRED = {
    "decision": ("principal", "api_key", "correlation_id", "operation", "resource_type",
                 "resource_name", "allowed"),
    "aggregate": ("principal", "api_key", "operation", "resource_type", "resource_name",
                  "count", "first_ms", "last_ms"),
    "dropped": ("dropped", "dropped_total"),
}  # fmt: skip


def parse(raw: bytes) -> BrokerRecord:
    """The record in `raw`, or EventDecodeError saying what is wrong with it."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise EventDecodeError(f"broker decision record is not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise EventDecodeError("broker decision record is not a JSON object")
    kind = obj.get("kind")
    if kind not in _REQUIRED:
        raise EventDecodeError(
            f"broker decision record has kind {kind!r}; accepted: {', '.join(KINDS)}"
        )
    missing = [name for name in ("id", "node", "time_ms", *_REQUIRED[kind]) if name not in obj]
    if missing:
        raise EventDecodeError(f"broker {kind} record lacks {', '.join(missing)}")
    return BrokerRecord(
        kind=kind,
        id=str(obj["id"]),
        node=int(obj["node"]),
        role=str(obj.get("role") or "broker"),
        time_ms=int(obj["time_ms"]),
        fields=obj,
    )


def event_type_of(api: str, resource_type: str) -> str:
    """The event type of a request to `api` on a `resource_type` resource."""
    if api in _CONFIG_APIS:
        return "topic.config_changed" if resource_type.upper() == "TOPIC" else "config.changed"
    return _BY_API.get(api, "kafka.request")


def iso(ms: int) -> str:
    """RFC 3339 UTC with milliseconds, as the recorder writes timestamps."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{ms % 1000:03d}Z"
    )


def event_id(record_id: str, ms: int, index: int) -> str:
    """An event id of the recorder's shape (`evt_` + ULID) that is the same whenever the
    same record is read: the time of the decision, then a hash of the record id."""
    number = ms & ((1 << 48) - 1)
    head = "".join(_CROCKFORD[(number >> shift) & 31] for shift in range(45, -1, -5))
    digest = int.from_bytes(hashlib.sha256(f"{record_id}/{index}".encode()).digest()[:10])
    tail = "".join(_CROCKFORD[(digest >> shift) & 31] for shift in range(75, -1, -5))
    return f"evt_{head}{tail}"


def request_context(record: BrokerRecord) -> RequestContext:
    f = record.fields
    api = api_name(record.api_key)
    return RequestContext(
        principal=record.principal,
        client_address=record.client_address,
        client_id=record.client_id,
        listener_name=f.get("listener"),
        security_protocol=f.get("security_protocol"),
        api_key=record.api_key,
        api_name=api,
        api_version=int(f.get("api_version", 0)),
        correlation_id=record.correlation_id,
        source=SOURCE,
    )


def to_events(record: BrokerRecord) -> list[AuditEvent]:
    """The audit events of one decision topic record (see the module's docstring)."""
    if record.kind == "dropped":
        return [_dropped(record)]
    f = record.fields
    ctx = request_context(record)
    resource_type = str(f["resource_type"])
    name = str(f["resource_name"])
    operation = str(f["operation"])
    allowed = bool(f.get("allowed", True))
    details: dict[str, Any] = {
        "broker": {"node": record.node, "role": record.role, "listener": f.get("listener")},
        "pattern_type": f.get("pattern_type", "LITERAL"),
    }
    if record.kind == "aggregate":
        details |= {
            "topic" if resource_type == "TOPIC" else "resource": name,
            "requests": int(f["count"]),
            "first_seen": iso(int(f["first_ms"])),
            "last_seen": iso(int(f["last_ms"])),
        }
    info = AuthInfo(
        operation=operation,
        resource_type=resource_type,
        resource_name=name,
        pattern_type=str(f.get("pattern_type", "LITERAL")),
        allowed=allowed,
        # The authorizer's refusal is what the client is answered with.
        error_code=0 if allowed else _denied_code(resource_type),
    )
    checks = [info]
    also = f.get("also_denied")
    if also is not None:
        # The same request's DESCRIBE check on the resource, refused too: one denial.
        checks.insert(0, replace(info, operation=str(also)))
    event_type = event_type_of(ctx.api_name, resource_type)
    target = ActionTarget(event_type, resource_type.lower(), name, details)
    events = to_audit_events(ActionEvent(operation.lower(), (target,)), ctx, checks)
    stamped = []
    for index, event in enumerate(events):
        action = event.action
        if action.result != "denied":
            # The authorizer decides before the operation runs: whether it then worked,
            # the broker auditor cannot know.
            action = replace(action, result="unknown")
        stamped.append(
            replace(
                event,
                timestamp=iso(record.time_ms),
                event_id=event_id(record.id, record.time_ms, index),
                action=action,
            )
        )
    return stamped


# Kafka's *_AUTHORIZATION_FAILED codes by resource type.
_DENIED_CODES = {"TOPIC": 29, "GROUP": 30, "CLUSTER": 31, "TRANSACTIONAL_ID": 53}


def _denied_code(resource_type: str) -> int:
    return _DENIED_CODES.get(resource_type.upper(), 31)


def _dropped(record: BrokerRecord) -> AuditEvent:
    f = record.fields
    return AuditEvent(
        timestamp=iso(record.time_ms),
        event_type="audit.degraded",
        event_id=event_id(record.id, record.time_ms, 0),
        actor=Actor(type="system", id=f"kaudit-broker-auditor:{record.node}"),
        resource=Resource(type="audit_log", id=f"broker:{record.node}:{record.role}"),
        action=Action(
            operation="record",
            result="failure",
            error="broker auditor queue full: decisions dropped",
        ),
        context=Context(source=SOURCE),
        details={
            "dropped": int(f["dropped"]),
            "dropped_total": int(f["dropped_total"]),
            "queue_capacity": f.get("queue_capacity"),
            "send_failed_total": f.get("send_failed_total"),
            "node": record.node,
            "role": record.role,
        },
    )


def refused_note(topic: str, partition: int, offset: int, reason: str, ms: int) -> AuditEvent:
    """The `audit.degraded` note kaudit records (once per reason and reader) when it
    refuses a record of the decision topic that does not carry the plugin's valid HMAC:
    someone other than the auditor wrote it, or it was altered."""
    return AuditEvent(
        timestamp=iso(ms),
        event_type="audit.degraded",
        event_id=event_id(f"{topic}/{partition}/{offset}/{reason}", ms, 0),
        actor=Actor(type="system", id="kaudit-broker-decision-reader"),
        resource=Resource(type="audit_log", id=f"broker-decisions:{topic}"),
        action=Action(
            operation="verify",
            result="failure",
            error=f"broker decision record refused: {reason}",
        ),
        context=Context(source=SOURCE),
        details={"reason": reason, "topic": topic, "partition": partition, "offset": offset},
    )
