"""Request + response → one KIP-567 audit call: the request event and, per resource, the
operation, resource pattern, authorization outcome and error code.

Each mapper reads the kio-decoded request and response of one API (fields differ across
versions, hence the `getattr` fallbacks) and returns an `AuditCall`. Produce, Fetch and
the SASL APIs are not mapped here: the connection aggregates records and watches SASL.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kaudit.auditor import (
    AUTHORIZATION_ERRORS,
    AclBindingInfo,
    AclEvent,
    ActionEvent,
    ActionTarget,
    AuthInfo,
    ConfigChange,
    ConfigEvent,
    RequestEvent,
    TopicEvent,
    TopicInAudit,
)

# Kafka's enums as they travel on the wire.
RESOURCE_TYPES = {
    0: "UNKNOWN", 1: "ANY", 2: "TOPIC", 3: "GROUP", 4: "CLUSTER",
    5: "TRANSACTIONAL_ID", 6: "DELEGATION_TOKEN", 7: "USER",
}  # fmt: skip
CONFIG_RESOURCE_TYPES = {
    2: "TOPIC", 4: "BROKER", 8: "BROKER_LOGGER", 16: "CLIENT_METRICS", 32: "GROUP",
}  # fmt: skip
ACL_OPERATIONS = {
    0: "UNKNOWN", 1: "ANY", 2: "ALL", 3: "READ", 4: "WRITE", 5: "CREATE", 6: "DELETE",
    7: "ALTER", 8: "DESCRIBE", 9: "CLUSTER_ACTION", 10: "DESCRIBE_CONFIGS",
    11: "ALTER_CONFIGS", 12: "IDEMPOTENT_WRITE", 13: "CREATE_TOKENS", 14: "DESCRIBE_TOKENS",
    15: "TWO_PHASE_COMMIT",
}  # fmt: skip
PERMISSION_TYPES = {0: "UNKNOWN", 1: "ANY", 2: "DENY", 3: "ALLOW"}
PATTERN_TYPES = {0: "UNKNOWN", 1: "ANY", 2: "MATCH", 3: "LITERAL", 4: "PREFIXED"}
CONFIG_OPERATIONS = {0: "SET", 1: "DELETE", 2: "APPEND", 3: "SUBTRACT"}
SCRAM_MECHANISMS = {0: "UNKNOWN", 1: "SCRAM-SHA-256", 2: "SCRAM-SHA-512"}
ELECTION_TYPES = {0: "PREFERRED", 1: "UNCLEAN"}
CLUSTER = "kafka-cluster"


@dataclass(frozen=True, slots=True)
class AuditCall:
    event: RequestEvent | None
    auth: tuple[AuthInfo, ...]


TopicNames = Callable[[Any], str]
"""Resolves a topic id (uuid) to its name, or the id as text when it is not known."""


def _code(value: Any) -> int:
    return int(value) if value is not None else 0


def _info(operation: str, rtype: str, name: str, error_code: Any) -> AuthInfo:
    code = _code(error_code)
    return AuthInfo(
        operation, rtype, name, allowed=code not in AUTHORIZATION_ERRORS, error_code=code
    )


def _enum(table: Mapping[int, str], value: Any) -> str:
    return table.get(int(value), str(int(value)))


def _topic_name(item: Any, names: TopicNames) -> str:
    name = getattr(item, "name", None)
    if name:
        return str(name)
    return names(getattr(item, "topic_id", None))


# -- topics ---------------------------------------------------------------------------------


def _create_topics(req: Any, resp: Any, names: TopicNames) -> AuditCall:
    results = {str(t.name): t for t in resp.topics}
    topics, auth = [], []
    for t in req.topics:
        result = results.get(str(t.name))
        configs = {str(c.name): c.value for c in t.configs}
        partitions = int(t.num_partitions)
        replication = int(t.replication_factor)
        if result is not None and partitions == -1:
            partitions = int(getattr(result, "num_partitions", -1))
        if result is not None and replication == -1:
            replication = int(getattr(result, "replication_factor", -1))
        topics.append(
            TopicInAudit(
                str(t.name),
                partitions if partitions >= 0 else None,
                replication if replication >= 0 else None,
                configs,
            )
        )
        code = result.error_code if result is not None else 0
        auth.append(_info("CREATE", "TOPIC", str(t.name), code))
    return AuditCall(TopicEvent("create", tuple(topics)), tuple(auth))


def _delete_topics(req: Any, resp: Any, names: TopicNames) -> AuditCall:
    topics, auth = [], []
    for r in resp.responses:
        name = _topic_name(r, names)
        topics.append(TopicInAudit(name))
        auth.append(_info("DELETE", "TOPIC", name, r.error_code))
    return AuditCall(TopicEvent("delete", tuple(topics)), tuple(auth))


def _create_partitions(req: Any, resp: Any, names: TopicNames) -> AuditCall:
    counts = {str(t.name): int(t.count) for t in req.topics}
    topics, auth = [], []
    for r in resp.results:
        topics.append(TopicInAudit(str(r.name), counts.get(str(r.name))))
        auth.append(_info("ALTER", "TOPIC", str(r.name), r.error_code))
    return AuditCall(TopicEvent("partition_change", tuple(topics)), tuple(auth))


# -- ACLs -----------------------------------------------------------------------------------


def _binding(item: Any, pattern_field: str) -> AclBindingInfo:
    return AclBindingInfo(
        principal=str(item.principal),
        host=str(item.host),
        operation=_enum(ACL_OPERATIONS, item.operation),
        permission_type=_enum(PERMISSION_TYPES, item.permission_type),
        resource_type=_enum(RESOURCE_TYPES, item.resource_type),
        resource_name=str(item.resource_name),
        pattern_type=_enum(PATTERN_TYPES, getattr(item, pattern_field, 3)),
    )


def _filter_binding(item: Any) -> AclBindingInfo:
    def text(value: Any) -> str:
        return "*any*" if value is None else str(value)

    return AclBindingInfo(
        principal=text(item.principal_filter),
        host=text(item.host_filter),
        operation=_enum(ACL_OPERATIONS, item.operation),
        permission_type=_enum(PERMISSION_TYPES, item.permission_type),
        resource_type=_enum(RESOURCE_TYPES, item.resource_type_filter),
        resource_name=text(item.resource_name_filter),
        pattern_type=_enum(PATTERN_TYPES, getattr(item, "pattern_type_filter", 3)),
    )


def _create_acls(req: Any, resp: Any, names: TopicNames) -> AuditCall:
    bindings = tuple(_binding(c, "resource_pattern_type") for c in req.creations)
    auth = tuple(_info("ALTER", "CLUSTER", CLUSTER, r.error_code) for r in resp.results) or (
        _info("ALTER", "CLUSTER", CLUSTER, 0),
    )
    return AuditCall(AclEvent("create", bindings), auth)


def _delete_acls(req: Any, resp: Any, names: TopicNames) -> AuditCall:
    deleted: list[AclBindingInfo] = []
    codes: list[int] = []
    for filt, result in zip(req.filters, resp.filter_results, strict=False):
        codes.append(_code(result.error_code))
        matched = [_binding(m, "pattern_type") for m in result.matching_acls]
        deleted.extend(matched or ([_filter_binding(filt)] if result.error_code else []))
    auth = tuple(_info("ALTER", "CLUSTER", CLUSTER, c) for c in codes) or (
        _info("ALTER", "CLUSTER", CLUSTER, 0),
    )
    return AuditCall(AclEvent("delete", tuple(deleted)), auth)


def _describe_acls(req: Any, resp: Any, names: TopicNames) -> AuditCall:
    bindings = [
        AclBindingInfo(
            principal=str(acl.principal),
            host=str(acl.host),
            operation=_enum(ACL_OPERATIONS, acl.operation),
            permission_type=_enum(PERMISSION_TYPES, acl.permission_type),
            resource_type=_enum(RESOURCE_TYPES, res.resource_type),
            resource_name=str(res.resource_name),
            pattern_type=_enum(PATTERN_TYPES, getattr(res, "pattern_type", 3)),
        )
        for res in resp.resources
        for acl in res.acls
    ]
    return AuditCall(
        AclEvent("describe", tuple(bindings)),
        (_info("DESCRIBE", "CLUSTER", CLUSTER, resp.error_code),),
    )


# -- configs --------------------------------------------------------------------------------


def _alter_configs(req: Any, resp: Any, names: TopicNames, incremental: bool) -> AuditCall:
    results = {(int(r.resource_type), str(r.resource_name)): r.error_code for r in resp.responses}
    events: list[ConfigEvent] = []
    auth: list[AuthInfo] = []
    for res in req.resources:
        rtype = _enum(CONFIG_RESOURCE_TYPES, res.resource_type)
        name = str(res.resource_name)
        changes = tuple(
            ConfigChange(
                str(c.name),
                _enum(CONFIG_OPERATIONS, c.config_operation) if incremental else "SET",
                c.value,
            )
            for c in res.configs
        )
        events.append(ConfigEvent(rtype, name, changes))
        code = results.get((int(res.resource_type), name), 0)
        # Brokers, loggers and client metrics are checked as the cluster; the check
        # still names the resource so each record finds its own outcome.
        auth.append(_info("ALTER_CONFIGS", rtype, name, code))
    if len(events) == 1:
        return AuditCall(events[0], tuple(auth))
    targets = tuple(
        ActionTarget(
            "topic.config_changed" if e.resource_type == "TOPIC" else "config.changed",
            e.resource_type,
            e.resource_name,
            {
                "config_type": e.resource_type.lower(),
                "changes": [
                    {"field": c.name, "operation": c.operation, "new_value": c.value}
                    for c in e.changes
                ],
            },
        )
        for e in events
    )
    return AuditCall(ActionEvent("alter_configs", targets), tuple(auth))


# -- records, groups, credentials, partitions -----------------------------------------------


def _delete_records(req: Any, resp: Any, names: TopicNames) -> AuditCall:
    offsets = {
        (str(t.name), int(p.partition_index)): int(p.offset)
        for t in req.topics
        for p in t.partitions
    }
    targets, auth = [], []
    for t in resp.topics:
        name = str(t.name)
        partitions = [
            {
                "partition": int(p.partition_index),
                "before_offset": offsets.get((name, int(p.partition_index))),
                "low_watermark": int(p.low_watermark),
                "error_code": _code(p.error_code),
            }
            for p in t.partitions
        ]
        code = next((p.error_code for p in t.partitions if _code(p.error_code)), 0)
        targets.append(ActionTarget("records.deleted", "topic", name, {"partitions": partitions}))
        auth.append(_info("DELETE", "TOPIC", name, code))
    return AuditCall(ActionEvent("delete_records", tuple(targets)), tuple(auth))


def _delete_groups(req: Any, resp: Any, names: TopicNames) -> AuditCall:
    targets = tuple(ActionTarget("group.deleted", "group", str(r.group_id)) for r in resp.results)
    auth = tuple(_info("DELETE", "GROUP", str(r.group_id), r.error_code) for r in resp.results)
    return AuditCall(ActionEvent("delete", targets), auth)


def _offset_delete(req: Any, resp: Any, names: TopicNames) -> AuditCall:
    group = str(req.group_id)
    partitions = [
        {
            "topic": str(t.name),
            "partition": int(p.partition_index),
            "error_code": _code(p.error_code),
        }
        for t in resp.topics
        for p in t.partitions
    ]
    code = _code(resp.error_code) or next(
        (p["error_code"] for p in partitions if p["error_code"]), 0
    )
    return AuditCall(
        ActionEvent(
            "delete_offsets",
            (ActionTarget("group.offsets_deleted", "group", group, {"partitions": partitions}),),
        ),
        (_info("DELETE", "GROUP", group, code),),
    )


def is_offset_reset(req: Any) -> bool:
    """An OffsetCommit from outside the group's membership (an admin resetting offsets)."""
    generation = getattr(req, "generation_id_or_member_epoch", getattr(req, "generation_id", -1))
    return not req.member_id and int(generation) == -1


def _offset_commit(req: Any, resp: Any, names: TopicNames) -> AuditCall:
    group = str(req.group_id)
    offsets = {
        (_topic_name(t, names), int(p.partition_index)): int(p.committed_offset)
        for t in req.topics
        for p in t.partitions
    }
    partitions = [
        {
            "topic": _topic_name(t, names),
            "partition": int(p.partition_index),
            "offset": offsets.get((_topic_name(t, names), int(p.partition_index))),
            "error_code": _code(p.error_code),
        }
        for t in resp.topics
        for p in t.partitions
    ]
    code = next((p["error_code"] for p in partitions if p["error_code"]), 0)
    if is_offset_reset(req):
        return AuditCall(
            ActionEvent(
                "reset_offsets",
                (ActionTarget("group.offsets_reset", "group", group, {"partitions": partitions}),),
            ),
            (_info("READ", "GROUP", group, code),),
        )
    return AuditCall(None, (_info("READ", "GROUP", group, code),))


def _alter_scram(req: Any, resp: Any, names: TopicNames) -> AuditCall:
    # Only names and mechanisms: salts and salted passwords never leave this function.
    changes: dict[str, list[dict[str, Any]]] = {}
    for d in req.deletions:
        changes.setdefault(str(d.name), []).append(
            {"operation": "delete", "mechanism": _enum(SCRAM_MECHANISMS, d.mechanism)}
        )
    for u in req.upsertions:
        changes.setdefault(str(u.name), []).append(
            {
                "operation": "upsert",
                "mechanism": _enum(SCRAM_MECHANISMS, u.mechanism),
                "iterations": int(u.iterations),
            }
        )
    codes = {str(r.user): r.error_code for r in resp.results}
    targets = tuple(
        ActionTarget("auth.credentials_changed", "user", user, {"changes": user_changes})
        for user, user_changes in changes.items()
    )
    # Each check names the user whose credentials changed, so every per-user record
    # carries its own outcome (the broker checks ALTER on the cluster).
    auth = tuple(_info("ALTER", "USER", user, codes.get(user)) for user in changes)
    return AuditCall(ActionEvent("alter_credentials", targets), auth)


def _create_token(req: Any, resp: Any, names: TopicNames) -> AuditCall:
    owner_name = getattr(req, "owner_principal_name", None)
    owner = f"{getattr(req, 'owner_principal_type', 'User')}:{owner_name}" if owner_name else None
    principal = f"{resp.principal_type}:{resp.principal_name}" if resp.principal_name else owner
    details = {
        "owner": principal,
        "renewers": [f"{r.principal_type}:{r.principal_name}" for r in req.renewers],
        "token_id": resp.token_id or None,
        "max_lifetime_ms": _lifetime_ms(req.max_lifetime),
    }
    name = principal or "self"
    return AuditCall(
        ActionEvent("create_token", (ActionTarget("auth.token_created", "user", name, details),)),
        (_info("CREATE_TOKENS", "USER", name, resp.error_code),),
    )


def _lifetime_ms(value: Any) -> int | None:
    seconds = getattr(value, "total_seconds", None)
    return (
        int(seconds() * 1000) if callable(seconds) else (int(value) if value is not None else None)
    )


def _reassign(req: Any, resp: Any, names: TopicNames) -> AuditCall:
    codes = {
        (str(t.name), int(p.partition_index)): _code(p.error_code)
        for t in resp.responses
        for p in t.partitions
    }
    targets, auth = [], []
    for t in req.topics:
        name = str(t.name)
        partitions = [
            {
                "partition": int(p.partition_index),
                "replicas": None if p.replicas is None else [int(r) for r in p.replicas],
                "error_code": codes.get((name, int(p.partition_index)), 0),
            }
            for p in t.partitions
        ]
        code = _code(resp.error_code) or next(
            (p["error_code"] for p in partitions if p["error_code"]), 0
        )
        targets.append(
            ActionTarget("admin.partitions_reassigned", "topic", name, {"partitions": partitions})
        )
        auth.append(_info("ALTER", "TOPIC", name, code))
    return AuditCall(ActionEvent("reassign_partitions", tuple(targets)), tuple(auth))


def _elect_leaders(req: Any, resp: Any, names: TopicNames) -> AuditCall:
    election = _enum(ELECTION_TYPES, getattr(req, "election_type", 0))
    targets, auth = [], []
    for t in resp.replica_election_results:
        name = str(t.topic)
        partitions = [
            {"partition": int(p.partition_id), "error_code": _code(p.error_code)}
            for p in t.partition_result
        ]
        code = _code(getattr(resp, "error_code", 0)) or next(
            (p["error_code"] for p in partitions if p["error_code"]), 0
        )
        targets.append(
            ActionTarget(
                "admin.leaders_elected",
                "topic",
                name,
                {"election_type": election, "partitions": partitions},
            )
        )
        auth.append(_info("ALTER", "TOPIC", name, code))
    if not targets:
        code = getattr(resp, "error_code", 0)
        targets.append(
            ActionTarget("admin.leaders_elected", "cluster", CLUSTER, {"election_type": election})
        )
        auth.append(_info("ALTER", "CLUSTER", CLUSTER, code))
    return AuditCall(ActionEvent("elect_leaders", tuple(targets)), tuple(auth))


# -- generic requests: a resource when the API has an obvious one ---------------------------

_GROUP_APIS = {"JoinGroup", "SyncGroup", "Heartbeat", "LeaveGroup", "ConsumerGroupHeartbeat"}


def generic_auth(api: str, req: Any, resp: Any) -> tuple[AuthInfo, ...]:
    """The group or cluster a generic request acted on, with the response's error code."""
    code = getattr(resp, "error_code", 0) if resp is not None else 0
    group = getattr(req, "group_id", None) if req is not None else None
    if api in _GROUP_APIS and group:
        return (_info("READ", "GROUP", str(group), code),)
    if api == "OffsetFetch" and req is not None:
        groups = getattr(req, "groups", ())
        if groups:
            return tuple(
                _info("DESCRIBE", "GROUP", str(g.group_id), getattr(r, "error_code", 0))
                for g, r in zip(groups, getattr(resp, "groups", ()) or groups, strict=False)
            )
        if group:
            return (_info("DESCRIBE", "GROUP", str(group), code),)
    return (_info(api_operation(api), "CLUSTER", CLUSTER, code),)


def api_operation(api: str) -> str:
    for prefix, operation in (
        ("Describe", "DESCRIBE"), ("List", "DESCRIBE"), ("Alter", "ALTER"),
        ("Create", "CREATE"), ("Delete", "DELETE"),
    ):  # fmt: skip
        if api.startswith(prefix):
            return operation
    return "REQUEST"


Mapper = Callable[[Any, Any, TopicNames], AuditCall]

MAPPERS: Mapping[int, Mapper] = {
    19: _create_topics,
    20: _delete_topics,
    37: _create_partitions,
    30: _create_acls,
    31: _delete_acls,
    29: _describe_acls,
    33: lambda req, resp, names: _alter_configs(req, resp, names, incremental=False),
    44: lambda req, resp, names: _alter_configs(req, resp, names, incremental=True),
    21: _delete_records,
    42: _delete_groups,
    47: _offset_delete,
    8: _offset_commit,
    51: _alter_scram,
    38: _create_token,
    45: _reassign,
    43: _elect_leaders,
}
"""API key → mapper for the APIs with their own record types."""


def map_exchange(key: int, req: Any, resp: Any, names: TopicNames) -> AuditCall | None:
    """The audit call for a decoded request/response pair; None when the API has no
    mapper of its own (the caller records a generic `kafka.request`)."""
    mapper = MAPPERS.get(key)
    if mapper is None:
        return None
    return mapper(req, resp, names)
