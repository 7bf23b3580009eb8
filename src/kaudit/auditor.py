"""The auditor interface of KIP-567, in Python, and its logging reference implementation.

A source (the gateway, the console) makes exactly one `audit()` call per request, once
the outcome is known, with:
- `event`: the request-specific data, KIP-567's "AuditEvent" (a `TopicEvent`, `AclEvent`
  or `ConfigEvent` here; named `RequestEvent` so it does not clash with the record type
  `kaudit.events.AuditEvent`), or None for a generic request;
- `ctx`: who sent it, from where, over which API (`RequestContext`);
- `auth`: per resource, the operation, resource pattern, authorization outcome and error
  code (`AuthInfo`).

`to_audit_events()` turns one call into audit records, one per resource, sharing the
request's correlation id; the recorder (the default auditor) writes them.
Auditors must be thread-safe and must not block: `audit()` is on the request path.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import queue
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

# AUTHORIZATION_ERRORS is re-exported: the sources read it here.
from kaudit.events.kafka_errors import AUTHORIZATION_ERRORS as AUTHORIZATION_ERRORS
from kaudit.events.kafka_errors import error_name, routine_error
from kaudit.events.model import (
    Action,
    Actor,
    ApiRef,
    AuditEvent,
    AuthCheck,
    Authorization,
    Context,
    Resource,
    Result,
)
from kaudit.files import open_private_fd
from kaudit.recorder.redact import Redactor


def result_of(error_code: int) -> Result:
    if error_code == 0:
        return "success"
    return "denied" if error_code in AUTHORIZATION_ERRORS else "failure"


@dataclass(frozen=True)
class RequestContext:
    """KIP-567's AuthorizableRequestContext: who sent the request, how and from where."""

    principal: str = "User:ANONYMOUS"
    client_address: str | None = None
    client_id: str | None = None
    client_software_name: str | None = None
    client_software_version: str | None = None
    listener_name: str | None = None
    security_protocol: str | None = None
    sasl_mechanism: str | None = None
    api_key: int = -1
    api_name: str = "Unknown"
    api_version: int = 0
    correlation_id: int | str | None = None
    duration_ms: float | None = None
    source: str = "gateway"
    decoded: bool = True
    unknown_tagged_fields: tuple[int, ...] = ()
    """Tag numbers of the tagged fields in the request or response that the schema does
    not know: skipped, as the broker skips them, and noted in each record's details."""
    authorized_principal: str | None = None
    """The principal the broker authorized the request as, when it is not `principal`
    (a gateway that terminates client TLS acts towards the broker as itself)."""

    @property
    def user_agent(self) -> str | None:
        if self.client_software_name is None:
            return None
        return f"{self.client_software_name}/{self.client_software_version or 'unknown'}"


@dataclass(frozen=True)
class AuthInfo:
    """One resource of a request: operation, resource pattern, allowed, error code."""

    operation: str
    resource_type: str
    resource_name: str
    pattern_type: str = "LITERAL"
    allowed: bool = True
    error_code: int = 0

    @property
    def resource_pattern(self) -> str:
        return f"{self.resource_type.title()}:{self.pattern_type}:{self.resource_name}"

    def check(self) -> AuthCheck:
        return AuthCheck(self.operation, self.resource_pattern, self.allowed, self.error_code)


@dataclass(frozen=True)
class TopicInAudit:
    name: str
    num_partitions: int | None = None
    replication_factor: int | None = None
    configs: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class TopicEvent:
    """Topics created, deleted or given more partitions (KIP-567 TopicEvent)."""

    kind: Literal["create", "delete", "partition_change"]
    topics: tuple[TopicInAudit, ...]


@dataclass(frozen=True)
class AclBindingInfo:
    principal: str
    host: str
    operation: str
    permission_type: str
    resource_type: str
    resource_name: str
    pattern_type: str = "LITERAL"

    def as_dict(self) -> dict[str, str]:
        return {
            "principal": self.principal,
            "host": self.host,
            "operation": self.operation,
            "permission_type": self.permission_type,
            "resource_type": self.resource_type,
            "resource_name": self.resource_name,
            "pattern_type": self.pattern_type,
        }


@dataclass(frozen=True)
class AclEvent:
    """ACL bindings created, deleted or described (KIP-567 AclEvent)."""

    kind: Literal["create", "delete", "describe"]
    bindings: tuple[AclBindingInfo, ...]


@dataclass(frozen=True)
class ConfigChange:
    name: str
    operation: str  # SET, DELETE, APPEND, SUBTRACT
    value: str | None = None


@dataclass(frozen=True)
class ConfigEvent:
    """Configuration changed on a topic, broker, user or client (AlterConfigs)."""

    resource_type: str
    resource_name: str
    changes: tuple[ConfigChange, ...]


@dataclass(frozen=True)
class ActionTarget:
    """One resource a request acted on, with the record type it yields and its details."""

    event_type: str
    resource_type: str
    resource_name: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ActionEvent:
    """Any other audited request (group deletions, offset resets, DeleteRecords, SCRAM
    credentials, several configs at once...): the source names each record's type."""

    operation: str
    targets: tuple[ActionTarget, ...]


RequestEvent = TopicEvent | AclEvent | ConfigEvent | ActionEvent


@runtime_checkable
class Auditor(Protocol):
    """KIP-567's Auditor: thread-safe, non-blocking, one call per request."""

    def configure(self, configs: Mapping[str, Any]) -> None: ...

    def start(self) -> None: ...

    def audit(
        self, event: RequestEvent | None, ctx: RequestContext, auth: Sequence[AuthInfo]
    ) -> None: ...

    def close(self) -> None: ...


# -- turning one audit call into audit records ---------------------------------------------

_TOPIC_TYPES = {
    "create": "topic.created",
    "delete": "topic.deleted",
    "partition_change": "topic.partitions_changed",
}
_ACL_TYPES = {"create": "acl.created", "delete": "acl.deleted", "describe": "acl.described"}


def _actor(ctx: RequestContext) -> Actor:
    return Actor(
        type="user",
        id=ctx.principal,
        ip_address=ctx.client_address,
        user_agent=ctx.user_agent,
        client_id=ctx.client_id,
        auth=ctx.sasl_mechanism,
        authorized_as=ctx.authorized_principal,
    )


def _context(ctx: RequestContext) -> Context:
    corr = None if ctx.correlation_id is None else str(ctx.correlation_id)
    return Context(
        correlation_id=corr,
        source=ctx.source,
        api=ApiRef(ctx.api_key, ctx.api_name, ctx.api_version),
    )


def _event(
    event_type: str,
    ctx: RequestContext,
    resource: Resource,
    operation: str,
    infos: Sequence[AuthInfo],
    details: Mapping[str, Any],
) -> AuditEvent:
    # A routine protocol step (kafka_errors) is no failure: named in the details instead.
    routine = next((i.error_code for i in infos if routine_error(ctx.api_name, i.error_code)), 0)
    error_code = next((i.error_code for i in infos if i.error_code and i.error_code != routine), 0)
    if routine:
        details = {**details, "routine": error_name(routine)}
    allowed = all(i.allowed for i in infos)
    if ctx.unknown_tagged_fields:
        details = {**details, "unknown_tagged_fields": list(ctx.unknown_tagged_fields)}
    # A refused login was not allowed, yet it is the failure it was, not a denial.
    denied = not allowed and event_type != "auth.failed"
    result: Result = "denied" if denied else result_of(error_code)
    return AuditEvent(
        timestamp="",  # assigned by the recorder's writer
        event_type=event_type,
        event_id="",
        actor=_actor(ctx),
        resource=resource,
        action=Action(
            operation=operation,
            result=result,
            duration_ms=ctx.duration_ms,
            error=None if error_code == 0 else error_name(error_code),
        ),
        authorization=Authorization(allowed=allowed, checks=tuple(i.check() for i in infos)),
        context=_context(ctx),
        details=details,
    )


def _infos_for(auth: Sequence[AuthInfo], resource_type: str, name: str) -> list[AuthInfo]:
    return [i for i in auth if i.resource_type.upper() == resource_type and i.resource_name == name]


def to_audit_events(
    event: RequestEvent | None, ctx: RequestContext, auth: Sequence[AuthInfo]
) -> list[AuditEvent]:
    """One audit call → one record per resource, plus `access.denied` for each denial."""
    out: list[AuditEvent] = []
    if isinstance(event, TopicEvent):
        for topic in event.topics:
            infos = _infos_for(auth, "TOPIC", topic.name)
            details: dict[str, Any] = {"topic": topic.name}
            if topic.num_partitions is not None:
                details["partitions"] = topic.num_partitions
            if topic.replication_factor is not None:
                details["replication_factor"] = topic.replication_factor
            if topic.configs:
                details["configs"] = dict(topic.configs)
            out.append(
                _event(
                    _TOPIC_TYPES[event.kind],
                    ctx,
                    Resource("topic", topic.name),
                    event.kind,
                    infos,
                    details,
                )
            )
    elif isinstance(event, AclEvent):
        bindings = [b.as_dict() for b in event.bindings]
        infos = list(auth)
        resource_id = (
            ",".join(sorted({f"{b.resource_type}:{b.resource_name}" for b in event.bindings}))
            or "*"
        )
        out.append(
            _event(
                _ACL_TYPES[event.kind],
                ctx,
                Resource("acl", resource_id),
                event.kind,
                infos,
                {"bindings": bindings, "count": len(bindings)},
            )
        )
    elif isinstance(event, ConfigEvent):
        rtype = event.resource_type.lower()
        event_type = "topic.config_changed" if rtype == "topic" else "config.changed"
        infos = _infos_for(auth, event.resource_type.upper(), event.resource_name) or list(auth)
        changes = [
            {"field": c.name, "operation": c.operation, "new_value": c.value} for c in event.changes
        ]
        out.append(
            _event(
                event_type,
                ctx,
                Resource(rtype, event.resource_name),
                "alter_configs",
                infos,
                {"config_type": rtype, "changes": changes},
            )
        )
    elif isinstance(event, ActionEvent):
        for target in event.targets:
            infos = _infos_for(auth, target.resource_type.upper(), target.resource_name)
            out.append(
                _event(
                    target.event_type,
                    ctx,
                    Resource(target.resource_type.lower(), target.resource_name),
                    event.operation,
                    infos,
                    target.details,
                )
            )
    else:
        groups: dict[tuple[str, str], list[AuthInfo]] = {}
        for info in auth:
            groups.setdefault((info.resource_type.lower(), info.resource_name), []).append(info)
        if not groups:
            groups[("cluster", "kafka-cluster")] = []
        for (rtype, name), infos in groups.items():
            out.append(
                _event(
                    "kafka.request",
                    ctx,
                    Resource(rtype, name),
                    ctx.api_name,
                    infos,
                    {"api": ctx.api_name, "decoded": ctx.decoded},
                )
            )
    for record in list(out):
        if record.action.result == "denied":
            out.append(_denied(record))
    return out


def record_types(event: RequestEvent | None, auth: Sequence[AuthInfo]) -> set[str]:
    """The record types `to_audit_events` makes of one audit call (without building them)."""
    if isinstance(event, TopicEvent):
        types = {_TOPIC_TYPES[event.kind]}
    elif isinstance(event, AclEvent):
        types = {_ACL_TYPES[event.kind]}
    elif isinstance(event, ConfigEvent):
        types = {
            "topic.config_changed" if event.resource_type.lower() == "topic" else "config.changed"
        }
    elif isinstance(event, ActionEvent):
        types = {target.event_type for target in event.targets}
    else:
        types = {"kafka.request"}
    if any(not info.allowed for info in auth):
        types.add("access.denied")
    return types


def _denied(record: AuditEvent) -> AuditEvent:
    checks = record.authorization.checks if record.authorization else ()
    denied = [c for c in checks if not c.allowed]
    return AuditEvent(
        timestamp="",
        event_type="access.denied",
        event_id="",
        actor=record.actor,
        resource=record.resource,
        action=record.action,
        authorization=record.authorization,
        context=record.context,
        details={
            "operation": record.action.operation,
            "resource": denied[0].resource if denied else record.resource.id,
            "denied_event_type": record.event_type,
            "reason": record.action.error or "not authorized",
        },
    )


# -- the reference implementation -----------------------------------------------------------


class LoggingAuditor:
    """Writes topic, config and ACL changes to a log file, as KIP-567's default auditor.

    configs: `path` (required) — the log file. Lines are written by a background thread
    (a QueueListener), so `audit()` only enqueues.
    """

    def __init__(self) -> None:
        self._logger = logging.getLogger(f"kaudit.auditor.{id(self)}")
        self._logger.propagate = False
        self._queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self._listener: logging.handlers.QueueListener | None = None
        self._path: Path | None = None
        self._redactor = Redactor()

    def configure(self, configs: Mapping[str, Any]) -> None:
        path = configs.get("path")
        if not isinstance(path, str) or not path:
            raise ValueError("LoggingAuditor needs `path`: the file to write audit lines to")
        self._path = Path(path)

    def start(self) -> None:
        if self._path is None:
            raise ValueError("LoggingAuditor.configure() must be called before start()")
        self._path.parent.mkdir(parents=True, exist_ok=True)
        os.close(open_private_fd(self._path, os.O_WRONLY | os.O_APPEND))  # created 0640
        handler = logging.FileHandler(self._path, encoding="utf-8")
        formatter = logging.Formatter("%(asctime)s.%(msecs)03dZ %(message)s", "%Y-%m-%dT%H:%M:%S")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
        self._listener = logging.handlers.QueueListener(self._queue, handler)
        self._logger.addHandler(logging.handlers.QueueHandler(self._queue))
        self._logger.setLevel(logging.INFO)
        self._listener.start()

    def audit(
        self, event: RequestEvent | None, ctx: RequestContext, auth: Sequence[AuthInfo]
    ) -> None:
        if event is None:
            return  # the reference implementation logs changes, not generic requests
        for record in to_audit_events(event, ctx, auth):
            if record.event_type == "access.denied":
                continue
            checks = record.authorization.checks if record.authorization else ()
            self._logger.info(
                "%s principal=%s client_id=%s address=%s resource=%s result=%s error=%s "
                "checks=[%s] details=%s",
                record.event_type,
                ctx.principal,
                ctx.client_id,
                ctx.client_address,
                f"{record.resource.type}:{record.resource.id}",
                record.action.result,
                record.action.error or "NONE",
                "; ".join(f"{c.operation} {c.resource} allowed={c.allowed}" for c in checks),
                dict(self._redactor.details(record.details)),
            )

    def close(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            for handler in self._listener.handlers:
                handler.close()
            self._listener = None
