"""The native audit event model: immutable dataclasses, one per part of an event.

The shape is the OSO seed's standard fields (timestamp, event_type, event_id, version,
actor, resource, action, context, details) plus `authorization` (KIP-567's per-resource
operation / resource pattern / allowed / error code and Kpow's RBAC action and matching
policies) and `integrity` (sequence number and HMAC chain fields).

The classes are frozen but deliberately not `slots=True`: orjson serialises dataclasses
that have a `__dict__` about four times faster, and serialisation is the writer's main cost.

Field order here is the order of keys in the canonical bytes (see codec.py); free-form
mappings (`details`, policies) are written with sorted keys. Every key is always present,
null when unknown, so downstream field mappings never have to guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

SCHEMA_VERSION = "1.0"

Result = Literal["success", "failure", "denied", "unknown"]
RESULTS: tuple[Result, ...] = ("success", "failure", "denied", "unknown")
"""`unknown`: the source saw the request allowed but not how it ended (the broker
auditor, whose authorizer decides before the operation runs)."""


@dataclass(frozen=True)
class Actor:
    """Who acted: a principal (``User:alice``), a console user or a service."""

    type: str
    id: str
    roles: tuple[str, ...] = ()
    ip_address: str | None = None
    user_agent: str | None = None
    client_id: str | None = None
    auth: str | None = None
    authorized_as: str | None = None
    """The principal the broker authorized, when it is not `id`: a gateway that
    terminates a client's TLS is authorized as itself, while `id` names the client's
    certificate. Null when `id` is the principal authorized (or the source cannot say)."""


@dataclass(frozen=True)
class Resource:
    """What was acted on: a topic, group, ACL binding, cluster, backup…"""

    type: str
    id: str
    path: str | None = None


@dataclass(frozen=True)
class Action:
    """What was done and how it ended: `result` is success, failure, denied or unknown."""

    operation: str
    result: Result = "success"
    duration_ms: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class AuthCheck:
    """One KIP-567 authorization check: operation on a resource pattern, and its outcome."""

    operation: str
    resource: str
    allowed: bool
    error_code: int = 0


@dataclass(frozen=True)
class Authorization:
    """The authorization outcome: KIP-567 checks and/or an RBAC action with its policies."""

    allowed: bool
    action: str | None = None
    checks: tuple[AuthCheck, ...] = ()
    policies: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class ApiRef:
    """The Kafka API a gateway event came from."""

    key: int
    name: str
    version: int


@dataclass(frozen=True)
class Context:
    """Where it happened: cluster, environment, host, correlation id and source."""

    cluster_id: str | None = None
    environment: str | None = None
    correlation_id: str | None = None
    source: str | None = None
    host: str | None = None
    api: ApiRef | None = None


@dataclass(frozen=True)
class Integrity:
    """Position in the log stream and, when signing is on, the HMAC chain fields."""

    sequence_number: int
    signature: str | None = None
    previous_signature: str | None = None


@dataclass(frozen=True, kw_only=True)
class AuditEvent:
    """One audited fact: who did what to which resource, allowed or not, and how it ended."""

    timestamp: str
    event_type: str
    event_id: str
    version: str = SCHEMA_VERSION
    actor: Actor
    resource: Resource
    action: Action
    authorization: Authorization | None = None
    context: Context = field(default_factory=Context)
    details: Mapping[str, Any] = field(default_factory=dict)
    integrity: Integrity | None = None

    @property
    def category(self) -> str:
        return self.event_type.partition(".")[0]
