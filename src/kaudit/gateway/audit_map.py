"""Request + response → the one KIP-567 audit call of a request: the request event and,
per resource, the operation, resource pattern, authorization outcome and error code.

`map_exchange` looks the API up in audit_apis' mappers (the APIs with record types of
their own); `generic_auth` names what any other request acted on, for its generic
`kafka.request` record; `denied_in_response` finds the authorization failures inside any
answer (a topic refused in a Metadata answer), which are recorded whatever the request
event settings; `refusal_call` is the record of a request the gateway refused
because it could not read it; `auth_call` is the login (or failed login) a SASL exchange the
broker answered makes. Produce and Fetch are not mapped here: their records are counted
into windows (aggregate).
"""

from __future__ import annotations

import typing
from dataclasses import fields, is_dataclass
from functools import cache
from typing import Any

from kaudit.auditor import ActionEvent, ActionTarget, AuthInfo
from kaudit.gateway.audit_apis import CLUSTER, MAPPERS, AuditCall, TopicNames, auth_info
from kaudit.gateway.sasl import SaslObserver

NETWORK_EXCEPTION = 13
"""The error a request gets when the broker's connection goes away before answering."""
UNANSWERED = (AuthInfo("REQUEST", "CLUSTER", CLUSTER, error_code=NETWORK_EXCEPTION),)
"""What a request the broker never answered is recorded as having acted on."""


def map_exchange(key: int, req: Any, resp: Any, names: TopicNames) -> AuditCall | None:
    """The audit call for a decoded request/response pair; None when the API has no
    mapper of its own (the caller records a generic `kafka.request`)."""
    mapper = MAPPERS.get(key)
    if mapper is None:
        return None
    return mapper(req, resp, names)


# -- generic requests: a resource when the API has an obvious one ---------------------------

_GROUP_APIS = {"JoinGroup", "SyncGroup", "Heartbeat", "LeaveGroup", "ConsumerGroupHeartbeat"}


def generic_auth(api: str, req: Any, resp: Any) -> tuple[AuthInfo, ...]:
    """The group or cluster a generic request acted on, with the response's error code."""
    code = getattr(resp, "error_code", 0) if resp is not None else 0
    group = getattr(req, "group_id", None) if req is not None else None
    if api in _GROUP_APIS and group:
        return (auth_info("READ", "GROUP", str(group), code),)
    if api == "OffsetFetch" and req is not None:
        groups = getattr(req, "groups", ())
        if groups:
            return tuple(
                auth_info("DESCRIBE", "GROUP", str(g.group_id), getattr(r, "error_code", 0))
                for g, r in zip(groups, getattr(resp, "groups", ()) or groups, strict=False)
            )
        if group:
            return (auth_info("DESCRIBE", "GROUP", str(group), code),)
    return (auth_info(api_operation(api), "CLUSTER", CLUSTER, code),)


def api_operation(api: str) -> str:
    for prefix, operation in (
        ("Describe", "DESCRIBE"), ("List", "DESCRIBE"), ("Alter", "ALTER"),
        ("Create", "CREATE"), ("Delete", "DELETE"),
    ):  # fmt: skip
        if api.startswith(prefix):
            return operation
    return "REQUEST"


# -- authorization failures inside an answer -----------------------------------------------

# What the broker checks for the APIs whose denials are not in a record of their own.
_CHECKED_OPERATION = {
    "Metadata": "DESCRIBE", "ListOffsets": "DESCRIBE", "OffsetFetch": "DESCRIBE",
    "OffsetForLeaderEpoch": "DESCRIBE", "DescribeGroups": "DESCRIBE",
    "FindCoordinator": "DESCRIBE", "DescribeProducers": "READ", "JoinGroup": "READ",
    "SyncGroup": "READ", "Heartbeat": "READ", "LeaveGroup": "READ", "OffsetCommit": "READ",
    "TxnOffsetCommit": "READ", "InitProducerId": "WRITE", "AddPartitionsToTxn": "WRITE",
    "AddOffsetsToTxn": "WRITE", "EndTxn": "WRITE",
}  # fmt: skip
_DENIED_TYPES = {29: "TOPIC", 30: "GROUP", 31: "CLUSTER", 53: "TRANSACTIONAL_ID",
                 65: "DELEGATION_TOKEN"}  # fmt: skip


# Entries that never carry an authorization error, left unread (a Metadata answer may hold
# tens of thousands of partitions; topics are authorized, not partitions).
_NOT_AUTHORIZED_BELOW = {"Metadata": "partitions", "DescribeTopicPartitions": "partitions"}


def denied_in_response(api: str, req: Any, resp: Any, names: TopicNames) -> tuple[AuthInfo, ...]:
    """Every resource an answer says the client may not use (an authorization error at
    any depth: a topic in a Metadata answer, a partition in a ListOffsets answer), once
    each, named from the entry that carries the error or the entries around it."""
    operation = _CHECKED_OPERATION.get(api) or api_operation(api)
    skipped = _NOT_AUTHORIZED_BELOW.get(api)
    found: dict[tuple[str, str], AuthInfo] = {}

    def visit(node: Any, topic: str | None, group: str | None) -> None:
        errors, children, named = _layout(node.__class__)
        if named:
            topic = _topic_of(node, names) or topic
            group = str(getattr(node, "group_id", None) or "") or group
        for name in errors:
            value = getattr(node, name)
            rtype = _DENIED_TYPES.get(int(value))
            if rtype is not None:
                resource = _denied_name(rtype, node, req, topic, group)
                found.setdefault((rtype, resource), auth_info(operation, rtype, resource, value))
        for name, many in children:
            if name == skipped:
                continue
            value = getattr(node, name)
            for item in value if many else (value,):
                if item is not None:
                    visit(item, topic, group)

    if is_dataclass(resp) and not isinstance(resp, type):
        visit(resp, None, str(getattr(req, "group_id", None) or "") or None)
    return tuple(found.values())


_NAMING_FIELDS = frozenset({"topic", "name", "topic_name", "topic_id", "group_id"})


@cache
def _layout(entity: type[Any]) -> tuple[tuple[str, ...], tuple[tuple[str, bool], ...], bool]:
    """(the error code fields, the fields holding entities: name, whether an array, and
    whether it names a topic or group) of a kio entity type."""
    hints = typing.get_type_hints(entity)
    errors, children = [], []
    named = False
    for f in fields(entity):
        named = named or f.name in _NAMING_FIELDS
        if f.metadata.get("kafka_type") == "error_code":
            errors.append(f.name)
            continue
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None) and a is not Ellipsis]
        if isinstance(hint, type) and is_dataclass(hint):
            children.append((f.name, False))
        elif typing.get_origin(hint) is tuple and args and is_dataclass(args[0]):
            children.append((f.name, True))
        elif any(isinstance(a, type) and is_dataclass(a) for a in args):  # optional entity
            children.append((f.name, False))
    return tuple(errors), tuple(children), named


def _topic_of(node: Any, names: TopicNames) -> str | None:
    for attr in ("topic", "name", "topic_name"):
        value = getattr(node, attr, None)
        if isinstance(value, str) and value:
            return value
    topic_id = getattr(node, "topic_id", None)
    return names(topic_id) if topic_id is not None and topic_id.int else None


def _denied_name(rtype: str, node: Any, req: Any, topic: str | None, group: str | None) -> str:
    if rtype == "TOPIC":
        return topic or "*"
    if rtype == "GROUP":
        return group or "*"
    if rtype == "TRANSACTIONAL_ID":
        return str(
            getattr(node, "transactional_id", None) or getattr(req, "transactional_id", None) or "*"
        )
    return CLUSTER if rtype == "CLUSTER" else "*"


def merge_denied(auth: tuple[AuthInfo, ...], denied: tuple[AuthInfo, ...]) -> tuple[AuthInfo, ...]:
    """`auth` plus the denials it does not already name."""
    named = {(i.resource_type, i.resource_name) for i in auth if not i.allowed}
    return auth + tuple(d for d in denied if (d.resource_type, d.resource_name) not in named)


# -- refused requests -----------------------------------------------------------------------

INVALID_REQUEST = 42
"""The error a request the gateway cannot read is refused with (the broker's own for a
malformed request)."""
UNSUPPORTED_VERSION = 35
"""The error a request is refused with at a version the gateway never advertised."""
SASL_AUTHENTICATION_FAILED = 58
"""The error a SASL token the gateway cannot read is refused with: the login fails."""


def refusal_call(api: str, error_code: int, reason: str) -> AuditCall:
    """The `kafka.request` record of a request refused, not forwarded, because the gateway
    could not read it: a failure with the error the client got, and why."""
    details = {"api": api, "decoded": False, "refused": True, "reason": reason}
    return AuditCall(
        ActionEvent(api, (ActionTarget("kafka.request", "cluster", CLUSTER, details),)),
        (auth_info(api_operation(api), "CLUSTER", CLUSTER, error_code),),
    )


# -- SASL: logins ---------------------------------------------------------------------------


def auth_call(
    sasl: SaslObserver,
    event_type: str,
    error_code: int,
    message: str | None,
    session_lifetime_ms: int = 0,
) -> AuditCall:
    """auth.login / auth.failed for a SASL exchange the broker answered, made as the
    principal the broker accepted (or, failed, the one the client claimed); a login says
    whether it renewed an earlier one on the same connection (KIP-368 re-authentication)
    and how long the broker lets the session last. A failed login was not allowed: its
    check says so, whoever the connection was logged in as before."""
    allowed = error_code == 0
    principal = sasl.principal if allowed else sasl.claimed_principal()
    details: dict[str, Any] = {"mechanism": sasl.mechanism, "rounds": sasl.rounds}
    if sasl.token_auth:
        details["delegation_token"] = True
        details["token_id"] = sasl.claimed
    # Re-authentication (KIP-368): the connection had logged in before; a refused one
    # is recorded for the principal attempted, not the one logged in.
    details["reauthentication"] = sasl.reauthenticated if allowed else sasl.logins > 0
    if allowed and session_lifetime_ms > 0:
        details["session_lifetime_ms"] = session_lifetime_ms
    if message:
        details["message"] = message
    return AuditCall(
        ActionEvent("authenticate", (ActionTarget(event_type, "user", principal, details),)),
        (AuthInfo("AUTHENTICATE", "USER", principal, allowed=allowed, error_code=error_code),),
        principal,
    )
