"""OCSF 1.3.0 rendering of an audit event, for SIEMs and security data lakes.

Two classes: Authentication (3002) for sign-in style `auth.*` events and API Activity
(6003) for everything else, including `auth.credentials_changed` and `auth.token_created`,
which are administrative Kafka API calls rather than anyone authenticating. Attributes are
omitted rather than null, as OCSF producers do. Whatever has no exact OCSF home (event
type, schema version, result, details, the full authorization, signatures, …) is kept in
`unmapped`, so the native event can be told from the rendering alone.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from kaudit.events.formats.cloudevents import parse_rfc3339
from kaudit.events.model import Actor, AuditEvent

OCSF_VERSION = "1.3.0"
PRODUCT = {"name": "kaudit", "vendor_name": "kaudit"}

AUTHENTICATION = 3002
API_ACTIVITY = 6003
CLASSES: dict[int, tuple[str, int, str]] = {
    AUTHENTICATION: ("Authentication", 3, "Identity & Access Management"),
    API_ACTIVITY: ("API Activity", 6, "Application Activity"),
}
"""class_uid → (class_name, category_uid, category_name)."""

OTHER = 99
ACTIVITIES: dict[int, dict[int, str]] = {
    AUTHENTICATION: {
        0: "Unknown",
        1: "Logon",
        2: "Logoff",
        3: "Authentication Ticket",
        4: "Service Ticket Request",
        5: "Service Ticket Renew",
        6: "Preauth",
        OTHER: "Other",
    },
    API_ACTIVITY: {0: "Unknown", 1: "Create", 2: "Read", 3: "Update", 4: "Delete", OTHER: "Other"},
}
"""The activity_id enumeration of each class in OCSF 1.3.0."""

# Catalog `auth.*` types that are admin API calls (AlterUserScramCredentials,
# CreateDelegationToken), not a principal signing in; every other `auth.*` type is.
_AUTH_ADMIN_TYPES = frozenset({"auth.credentials_changed", "auth.token_created"})

_AUTH_ACTIVITIES = {"login": 1, "failed": 1, "logout": 2}

# The event type's verb (whole, then its last word: `offsets_reset` → `reset`) decides the
# CRUD activity; for `kafka.request` and custom types the operation or the Kafka API name
# may still tell.
_VERB_ACTIVITIES = {
    **dict.fromkeys(("created", "produced", "create", "produce", "write"), 1),
    **dict.fromkeys(
        ("described", "viewed", "consumed", "inspected", "listed", "fetched",
         "describe", "read", "consume", "fetch", "list", "view", "inspect"),
        2,
    ),
    **dict.fromkeys(
        ("changed", "reset", "reassigned", "elected", "applied", "enabled", "disabled",
         "updated", "altered", "alter", "update", "alter_configs", "reset_offsets"),
        3,
    ),
    **dict.fromkeys(("deleted", "removed", "delete", "remove"), 4),
}  # fmt: skip
_API_NAME_ACTIVITIES = (
    ("Create", 1),
    ("Produce", 1),
    ("Describe", 2),
    ("List", 2),
    ("Fetch", 2),
    ("OffsetFetch", 2),
    ("Metadata", 2),
    ("OffsetCommit", 3),
    ("OffsetDelete", 4),
    ("Alter", 3),
    ("IncrementalAlter", 3),
    ("Elect", 3),
    ("Update", 3),
    ("Delete", 4),
)

SEVERITIES = {1: "Informational", 2: "Low", 3: "Medium", 4: "High"}
_RESULT_SEVERITY = {"success": 1, "failure": 2, "denied": 3, "unknown": 1}
# OCSF status_id: 0 Unknown, 1 Success, 2 Failure.
_STATUS = {"success": (1, "Success"), "unknown": (0, "Unknown")}
# Failed sign-ins and denials are what a SOC hunts for, and dropped audit events weaken
# the trail itself, so these outrank their plain result.
_TYPE_SEVERITY = {"audit.degraded": 4, "auth.failed": 3, "access.denied": 3}

# SASL mechanisms and console login methods → OCSF auth_protocol_id (1.3.0 enum).
_AUTH_PROTOCOLS = {
    "NTLM": (1, "NTLM"),
    "GSSAPI": (2, "Kerberos"),
    "KERBEROS": (2, "Kerberos"),
    "DIGEST": (3, "Digest"),
    "OIDC": (4, "OpenID"),
    "OPENID": (4, "OpenID"),
    "SAML": (5, "SAML"),
    "OAUTHBEARER": (6, "OAUTH 2.0"),
    "OAUTH": (6, "OAUTH 2.0"),
    "OAUTH2": (6, "OAUTH 2.0"),
}

_USER_TYPES = {"user": (1, "User"), "admin": (2, "Admin"), "system": (3, "System")}


def class_uid(event: AuditEvent) -> int:
    """3002 Authentication for sign-in `auth.*` events, 6003 API Activity otherwise."""
    if event.category == "auth" and event.event_type not in _AUTH_ADMIN_TYPES:
        return AUTHENTICATION
    return API_ACTIVITY


def activity_id(event: AuditEvent, cls: int) -> int:
    """The class's activity for this event; 99 Other when nothing says which."""
    verb = event.event_type.partition(".")[2]
    if cls == AUTHENTICATION:
        return _AUTH_ACTIVITIES.get(verb, OTHER)
    for word in (verb, verb.rpartition("_")[2], event.action.operation.lower()):
        if word in _VERB_ACTIVITIES:
            return _VERB_ACTIVITIES[word]
    api = event.context.api
    if api is not None:
        for prefix, activity in _API_NAME_ACTIVITIES:
            if api.name.startswith(prefix):
                return activity
    return OTHER


def to_ocsf(event: AuditEvent) -> dict[str, Any]:
    """The event as an OCSF 1.3.0 Authentication or API Activity event.

    Raises ValueError when the timestamp is not RFC 3339: OCSF requires `time`, and a
    made-up one would mislead.
    """
    when = parse_rfc3339(event.timestamp)
    if when is None:
        raise ValueError(
            f"event {event.event_id!r}: timestamp {event.timestamp!r} is not RFC 3339, "
            "and OCSF requires a time"
        )
    cls = class_uid(event)
    class_name, category_uid, category_name = CLASSES[cls]
    activity = activity_id(event, cls)
    activity_name = ACTIVITIES[cls].get(activity, "Other")
    if activity == OTHER:
        # OCSF's convention: with an `_id` of Other the sibling name carries the source's
        # own label.
        activity_name = event.event_type
    result = event.action.result
    severity = _TYPE_SEVERITY.get(event.event_type, _RESULT_SEVERITY[result])

    out: dict[str, Any] = {
        "activity_id": activity,
        "activity_name": activity_name,
        "category_uid": category_uid,
        "category_name": category_name,
        "class_uid": cls,
        "class_name": class_name,
        "type_uid": cls * 100 + activity,
        "type_name": f"{class_name}: {activity_name}",
        "severity_id": severity,
        "severity": SEVERITIES[severity],
        "time": _epoch_ms(when),
        "timezone_offset": _offset_minutes(when),
        "message": _message(event),
        "metadata": _metadata(event),
        "status_id": _STATUS.get(result, (2, "Failure"))[0],
        "status": _STATUS.get(result, (2, "Failure"))[1],
        "actor": _actor(event),
    }
    error = event.action.error
    # An empty error is still what was recorded: kept, so nothing of the event is lost.
    detail = error if error is not None else ("Access denied" if result == "denied" else None)
    if detail is not None:
        out["status_detail"] = detail
    duration = event.action.duration_ms
    # OCSF's duration is a 64-bit count of milliseconds; anything else stays in unmapped.
    if duration is not None and 0 <= duration < 2**63:
        out["duration"] = round(duration)
    out.update(_aggregation(event.details))

    endpoint = _src_endpoint(event.actor)
    if cls == AUTHENTICATION:
        out["user"] = _user(event.actor)
        out["service"] = _service(event)
        protocol_id, protocol = _auth_protocol(event.actor.auth)
        out["auth_protocol_id"] = protocol_id
        if protocol:
            out["auth_protocol"] = protocol
        if endpoint is not None:
            out["src_endpoint"] = endpoint
    else:
        out["api"] = _api(event)
        # src_endpoint is required for API Activity; with no address or client known
        # (an SDK event, say) it still names the source it came through.
        out["src_endpoint"] = endpoint or {"name": event.context.source or "unknown"}
        out["resources"] = [_resource(event)]
    out["unmapped"] = _unmapped(event, cls)
    return out


def _epoch_ms(when: datetime) -> int:
    return (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def _offset_minutes(when: datetime) -> int:
    offset = when.utcoffset() or timedelta(0)
    return int(offset.total_seconds() // 60)


def _message(event: AuditEvent) -> str:
    r = event.resource
    return f"{event.actor.id} {event.event_type} {r.type} {r.id}: {event.action.result}"


def _metadata(event: AuditEvent) -> dict[str, Any]:
    product: dict[str, Any] = dict(PRODUCT)
    if event.context.source:
        product["feature"] = {"name": event.context.source}
    meta: dict[str, Any] = {
        "version": OCSF_VERSION,
        "product": product,
        "uid": event.event_id,
        "original_time": event.timestamp,
    }
    if event.context.correlation_id is not None:
        meta["correlation_uid"] = event.context.correlation_id
    if event.integrity is not None:
        meta["sequence"] = event.integrity.sequence_number
    return meta


def _principal_name(principal: str) -> str:
    # Kafka principals are `Type:name` (User:alice); the bare name is what people search.
    kind, sep, name = principal.partition(":")
    return name if sep and kind and name else principal


def _user(actor: Actor) -> dict[str, Any]:
    user: dict[str, Any] = {"uid": actor.id, "name": _principal_name(actor.id)}
    type_id, type_name = _USER_TYPES.get(actor.type.lower(), (OTHER, actor.type))
    user["type_id"] = type_id if actor.type else 0
    if actor.type:
        user["type"] = type_name
    if actor.roles:
        user["groups"] = [{"name": role, "type": "role"} for role in actor.roles]
    return user


def _actor(event: AuditEvent) -> dict[str, Any]:
    actor: dict[str, Any] = {"user": _user(event.actor)}
    if event.actor.client_id is not None:
        actor["app_name"] = event.actor.client_id
    authorizations = _authorizations(event)
    if authorizations:
        actor["authorizations"] = authorizations
    return actor


def _authorizations(event: AuditEvent) -> list[dict[str, Any]]:
    authz = event.authorization
    if authz is None:
        return []
    out: list[dict[str, Any]] = []
    for check in authz.checks:
        # A KIP-567 check names the operation and resource pattern the authorizer was
        # asked about; that is the closest thing to a policy the broker reveals.
        out.append(
            {
                "decision": _decision(check.allowed),
                "policy": {
                    "name": f"{check.operation} {check.resource}",
                    "desc": f"Kafka authorizer check, error code {check.error_code}",
                    "is_applied": True,
                },
            }
        )
    for policy in authz.policies:
        out.append({"decision": _decision(authz.allowed), "policy": _policy(policy, authz.action)})
    if not out:
        entry: dict[str, Any] = {"decision": _decision(authz.allowed)}
        if authz.action:
            entry["policy"] = {"name": authz.action, "is_applied": True}
        out.append(entry)
    return out


def _decision(allowed: bool) -> str:
    return "Approved" if allowed else "Denied"


def _policy(policy: Mapping[str, Any], action: str | None) -> dict[str, Any]:
    # RBAC policies are free-form; their own name or id wins, the RBAC action is the
    # fallback label, and the whole policy goes into desc so nothing is hidden.
    out: dict[str, Any] = {
        "desc": orjson.dumps(dict(policy), option=orjson.OPT_SORT_KEYS).decode(),
        "is_applied": True,
    }
    name = policy.get("name") or policy.get("role") or action or "rbac policy"
    uid = policy.get("id") or policy.get("uid")
    out["name"] = str(name)
    if uid is not None and uid != "":
        out["uid"] = str(uid)
    return out


def _src_endpoint(actor: Actor) -> dict[str, Any] | None:
    endpoint: dict[str, Any] = {}
    if actor.ip_address:
        endpoint.update(_address(actor.ip_address))
    if actor.client_id:
        endpoint["svc_name"] = actor.client_id
    return endpoint or None


def _address(text: str) -> dict[str, Any]:
    """`ip` (and `port`) from an address as sources write it: bare, `ip:port`, `[v6]:port`."""
    try:
        return {"ip": str(ipaddress.ip_address(text))}
    except ValueError:
        pass
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and int(port) <= 65535:
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        try:
            return {"ip": str(ipaddress.ip_address(host)), "port": int(port)}
        except ValueError:
            pass
    # Not an IP address: keep it as the endpoint's name rather than an invalid `ip`.
    return {"name": text}


def _service(event: AuditEvent) -> dict[str, Any]:
    service: dict[str, Any] = {"name": "kafka"}
    if event.context.cluster_id is not None:
        service["uid"] = event.context.cluster_id
    return service


def _api(event: AuditEvent) -> dict[str, Any]:
    api: dict[str, Any] = {"operation": event.action.operation, "service": _service(event)}
    if event.context.api is not None:
        api["version"] = str(event.context.api.version)
    if event.context.correlation_id is not None:
        api["request"] = {"uid": event.context.correlation_id}
    if event.action.error is not None:
        api["response"] = {"error": event.action.error}
    return api


def _resource(event: AuditEvent) -> dict[str, Any]:
    r = event.resource
    return {"type": r.type, "name": r.id, "uid": r.path or r.id}


def _aggregation(details: Mapping[str, Any]) -> dict[str, Any]:
    """OCSF count/start_time/end_time from an aggregated produce/fetch event's details."""
    out: dict[str, Any] = {}
    count = details.get("count")
    if isinstance(count, int) and not isinstance(count, bool):
        out["count"] = count
    for key, name in (("first_seen", "start_time"), ("last_seen", "end_time")):
        value = details.get(key)
        when = parse_rfc3339(value) if isinstance(value, str) else None
        if when is not None:
            out[name] = _epoch_ms(when)
    return out


def _unmapped(event: AuditEvent, cls: int) -> dict[str, Any]:
    ctx = event.context
    actor = {
        "type": event.actor.type,
        "ip_address": event.actor.ip_address,
        "user_agent": event.actor.user_agent,
        "auth": event.actor.auth,
        "authorized_as": event.actor.authorized_as,
    }
    # API Activity carries the resource in `resources` and the operation in `api`;
    # Authentication has no home for either.
    resource: dict[str, Any] = {"path": event.resource.path}
    action: dict[str, Any] = {
        "result": event.action.result,
        "duration_ms": event.action.duration_ms,
    }
    if cls == AUTHENTICATION:
        resource.update(type=event.resource.type, id=event.resource.id)
        action["operation"] = event.action.operation
    context = {
        "cluster_id": ctx.cluster_id,
        "environment": ctx.environment,
        "source": ctx.source,
        "host": ctx.host,
        "api": None
        if ctx.api is None
        else {"key": ctx.api.key, "name": ctx.api.name, "version": ctx.api.version},
    }
    unmapped: dict[str, Any] = {
        "event_type": event.event_type,
        "version": event.version,
        "details": dict(event.details),
    }
    parts: dict[str, dict[str, Any]] = {
        "actor": _present(actor),
        "action": _present(action),
        "resource": _present(resource),
        "context": _present(context),
    }
    authz = event.authorization
    if authz is not None:
        parts["authorization"] = {
            "allowed": authz.allowed,
            "action": authz.action,
            "checks": [
                {
                    "operation": c.operation,
                    "resource": c.resource,
                    "allowed": c.allowed,
                    "error_code": c.error_code,
                }
                for c in authz.checks
            ],
            "policies": [dict(p) for p in authz.policies],
        }
    if event.integrity is not None:
        parts["integrity"] = _present(
            {
                "signature": event.integrity.signature,
                "previous_signature": event.integrity.previous_signature,
            }
        )
    unmapped.update((name, part) for name, part in parts.items() if part)
    return unmapped


def _present(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def _auth_protocol(mechanism: str | None) -> tuple[int, str | None]:
    if not mechanism:
        return 0, None
    known = _AUTH_PROTOCOLS.get(mechanism.upper())
    # SCRAM and PLAIN have no OCSF protocol of their own: Other, with the mechanism name.
    return known if known is not None else (OTHER, mechanism)
