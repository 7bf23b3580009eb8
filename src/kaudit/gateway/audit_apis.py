"""One mapper per Kafka API with record types of its own (topics, ACLs, configs, records,
groups, credentials, tokens, partitions): its request and response → the `AuditCall`.

Each mapper reads the kio-decoded request and response of one API (fields differ across
versions, hence the `getattr` fallbacks) and returns the request event and, per resource,
the operation, resource pattern, authorization outcome and error code. `MAPPERS` is the
table audit_map looks them up in; `AuditCall`, `auth_info` and `topic_name` are shared
with it and with offsets (OffsetCommit, which needs what the gateway saw fetched).
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
from kaudit.gateway.codec import API_KEYS

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
    """The arguments of one audit call: the request event and the authorization checks."""

    event: RequestEvent | None
    auth: tuple[AuthInfo, ...]
    principal: str | None = None
    """Who the request acted as when the exchange itself says (a SASL exchange); None:
    the connection's principal."""


TopicNames = Callable[[Any], str]
"""Resolves a topic id (uuid) to its name, or the id as text when it is not known."""


def _code(value: Any) -> int:
    return int(value) if value is not None else 0


def auth_info(operation: str, rtype: str, name: str, error_code: Any) -> AuthInfo:
    """One authorization check: allowed unless its error code is an authorization error."""
    code = _code(error_code)
    return AuthInfo(
        operation, rtype, name, allowed=code not in AUTHORIZATION_ERRORS, error_code=code
    )


def _enum(table: Mapping[int, str], value: Any) -> str:
    return table.get(int(value), str(int(value)))


def topic_name(item: Any, names: TopicNames) -> str:
    """The name of a topic entry that carries its name or (newer versions) its id."""
    name = getattr(item, "name", None)
    if name:
        return str(name)
    return names(getattr(item, "topic_id", None))


def _per_partition(
    topics: Any, value: Callable[[Any], Any], name: Callable[[Any], str] = lambda t: str(t.name)
) -> dict[tuple[str, int], Any]:
    """(topic name, partition index) → `value` of each partition of `topics`."""
    return {(name(t), int(p.partition_index)): value(p) for t in topics for p in t.partitions}


def _first_error(partitions: list[dict[str, Any]], top: Any = 0) -> int:
    """The response's own error code `top`, else the first partition's that is not 0."""
    return _code(top) or next((p["error_code"] for p in partitions if p["error_code"]), 0)


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
        auth.append(auth_info("CREATE", "TOPIC", str(t.name), code))
    return AuditCall(TopicEvent("create", tuple(topics)), tuple(auth))


def _delete_topics(req: Any, resp: Any, names: TopicNames) -> AuditCall:
    topics, auth = [], []
    for r in resp.responses:
        name = topic_name(r, names)
        topics.append(TopicInAudit(name))
        auth.append(auth_info("DELETE", "TOPIC", name, r.error_code))
    return AuditCall(TopicEvent("delete", tuple(topics)), tuple(auth))


def _create_partitions(req: Any, resp: Any, names: TopicNames) -> AuditCall:
    counts = {str(t.name): int(t.count) for t in req.topics}
    topics, auth = [], []
    for r in resp.results:
        topics.append(TopicInAudit(str(r.name), counts.get(str(r.name))))
        auth.append(auth_info("ALTER", "TOPIC", str(r.name), r.error_code))
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
    auth = tuple(auth_info("ALTER", "CLUSTER", CLUSTER, r.error_code) for r in resp.results) or (
        auth_info("ALTER", "CLUSTER", CLUSTER, 0),
    )
    return AuditCall(AclEvent("create", bindings), auth)


def _delete_acls(req: Any, resp: Any, names: TopicNames) -> AuditCall:
    deleted: list[AclBindingInfo] = []
    codes: list[int] = []
    for filt, result in zip(req.filters, resp.filter_results, strict=False):
        codes.append(_code(result.error_code))
        matched = [_binding(m, "pattern_type") for m in result.matching_acls]
        deleted.extend(matched or ([_filter_binding(filt)] if result.error_code else []))
    auth = tuple(auth_info("ALTER", "CLUSTER", CLUSTER, c) for c in codes) or (
        auth_info("ALTER", "CLUSTER", CLUSTER, 0),
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
        (auth_info("DESCRIBE", "CLUSTER", CLUSTER, resp.error_code),),
    )


# -- configs --------------------------------------------------------------------------------


def _alter_configs(req: Any, resp: Any, names: TopicNames) -> AuditCall:
    return _config_changes(req, resp, incremental=False)


def _incremental_alter_configs(req: Any, resp: Any, names: TopicNames) -> AuditCall:
    return _config_changes(req, resp, incremental=True)


def _config_changes(req: Any, resp: Any, incremental: bool) -> AuditCall:
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
        auth.append(auth_info("ALTER_CONFIGS", rtype, name, code))
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


def _describe_configs(req: Any, resp: Any, names: TopicNames) -> AuditCall:
    """config.viewed per resource read: which keys were asked for (None: all of them)
    and how many came back; never the values, which may be secrets."""
    results = {(int(r.resource_type), str(r.resource_name)): r for r in resp.results}
    targets, auth = [], []
    for res in req.resources:
        rtype = _enum(CONFIG_RESOURCE_TYPES, res.resource_type)
        name = str(res.resource_name)
        result = results.get((int(res.resource_type), name))
        keys = res.configuration_keys
        details = {
            "config_type": rtype.lower(),
            "keys": None if not keys else [str(k) for k in keys],
            "returned": len(result.configs) if result is not None else 0,
        }
        targets.append(ActionTarget("config.viewed", rtype.lower(), name, details))
        code = result.error_code if result is not None else 0
        auth.append(auth_info("DESCRIBE_CONFIGS", rtype, name, code))
    return AuditCall(ActionEvent("describe_configs", tuple(targets)), tuple(auth))


# -- records, groups, credentials, partitions -----------------------------------------------


def _delete_records(req: Any, resp: Any, names: TopicNames) -> AuditCall:
    offsets = _per_partition(req.topics, lambda p: int(p.offset))
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
        auth.append(auth_info("DELETE", "TOPIC", name, code))
    return AuditCall(ActionEvent("delete_records", tuple(targets)), tuple(auth))


def _delete_groups(req: Any, resp: Any, names: TopicNames) -> AuditCall:
    targets = tuple(ActionTarget("group.deleted", "group", str(r.group_id)) for r in resp.results)
    auth = tuple(auth_info("DELETE", "GROUP", str(r.group_id), r.error_code) for r in resp.results)
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
    code = _first_error(partitions, resp.error_code)
    return AuditCall(
        ActionEvent(
            "delete_offsets",
            (ActionTarget("group.offsets_deleted", "group", group, {"partitions": partitions}),),
        ),
        (auth_info("DELETE", "GROUP", group, code),),
    )


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
    auth = tuple(auth_info("ALTER", "USER", user, codes.get(user)) for user in changes)
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
        (auth_info("CREATE_TOKENS", "USER", name, resp.error_code),),
    )


def _lifetime_ms(value: Any) -> int | None:
    seconds = getattr(value, "total_seconds", None)
    return (
        int(seconds() * 1000) if callable(seconds) else (int(value) if value is not None else None)
    )


def _reassign(req: Any, resp: Any, names: TopicNames) -> AuditCall:
    codes = _per_partition(resp.responses, lambda p: _code(p.error_code))
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
        code = _first_error(partitions, resp.error_code)
        targets.append(
            ActionTarget("admin.partitions_reassigned", "topic", name, {"partitions": partitions})
        )
        auth.append(auth_info("ALTER", "TOPIC", name, code))
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
        code = _first_error(partitions, getattr(resp, "error_code", 0))
        targets.append(
            ActionTarget(
                "admin.leaders_elected",
                "topic",
                name,
                {"election_type": election, "partitions": partitions},
            )
        )
        auth.append(auth_info("ALTER", "TOPIC", name, code))
    if not targets:
        code = getattr(resp, "error_code", 0)
        targets.append(
            ActionTarget("admin.leaders_elected", "cluster", CLUSTER, {"election_type": election})
        )
        auth.append(auth_info("ALTER", "CLUSTER", CLUSTER, code))
    return AuditCall(ActionEvent("elect_leaders", tuple(targets)), tuple(auth))


Mapper = Callable[[Any, Any, TopicNames], AuditCall]

MAPPERS: Mapping[int, Mapper] = {
    API_KEYS["CreateTopics"]: _create_topics,
    API_KEYS["DeleteTopics"]: _delete_topics,
    API_KEYS["CreatePartitions"]: _create_partitions,
    API_KEYS["CreateAcls"]: _create_acls,
    API_KEYS["DeleteAcls"]: _delete_acls,
    API_KEYS["DescribeAcls"]: _describe_acls,
    API_KEYS["AlterConfigs"]: _alter_configs,
    API_KEYS["IncrementalAlterConfigs"]: _incremental_alter_configs,
    API_KEYS["DescribeConfigs"]: _describe_configs,
    API_KEYS["DeleteRecords"]: _delete_records,
    API_KEYS["DeleteGroups"]: _delete_groups,
    API_KEYS["OffsetDelete"]: _offset_delete,
    API_KEYS["AlterUserScramCredentials"]: _alter_scram,
    API_KEYS["CreateDelegationToken"]: _create_token,
    API_KEYS["AlterPartitionReassignments"]: _reassign,
    API_KEYS["ElectLeaders"]: _elect_leaders,
}
"""API key → mapper for the APIs with their own record types."""
