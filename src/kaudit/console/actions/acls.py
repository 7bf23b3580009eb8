"""ACLs: list, create and delete bindings, each given as plain fields (resource type and
name, pattern type, principal, host, operation, permission)."""

from __future__ import annotations

from typing import Any

from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported at run time
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from kaudit.console.clusters import ClusterClients, KafkaCallError, kafka_call

__all__ = ["AclFields", "create_acl", "delete_acl", "list_acls"]

AclFields = dict[str, str]
"""resource_type, resource_name, pattern_type, principal, host, operation, permission."""


_WILDCARDS = ("UNKNOWN", "ANY", "MATCH")
"""Filter-only values: in a delete they would match many bindings, beyond the one the
user was allowed to edit, so a binding must name each field exactly."""


def _enum(kind: type[Any], name: str, field: str) -> Any:
    accepted = [m for m in kind if m.name not in _WILDCARDS]
    for member in accepted:
        if member.name == name.upper():
            return member
    names = ", ".join(m.name.lower() for m in accepted)
    raise KafkaCallError(f"{field} {name!r} is not accepted; accepted: {names}")


def _binding(fields: AclFields, cls: type[Any] = AclBinding) -> Any:
    return cls(
        _enum(ResourceType, fields["resource_type"], "resource_type"),
        fields["resource_name"],
        _enum(ResourcePatternType, fields.get("pattern_type", "literal"), "pattern_type"),
        fields["principal"],
        fields.get("host", "*"),
        _enum(AclOperation, fields["operation"], "operation"),
        _enum(AclPermissionType, fields["permission"], "permission"),
    )


def _fields(binding: Any) -> AclFields:
    return {
        "resource_type": binding.restype.name.lower(),
        "resource_name": binding.name,
        "pattern_type": binding.resource_pattern_type.name.lower(),
        "principal": binding.principal,
        "host": binding.host,
        "operation": binding.operation.name.lower(),
        "permission": binding.permission_type.name.lower(),
    }


def list_acls(cluster: ClusterClients) -> list[AclFields]:
    everything = AclBindingFilter(  # None: any name, principal, host
        ResourceType.ANY, None, ResourcePatternType.ANY, None, None,  # type: ignore[arg-type]
        AclOperation.ANY, AclPermissionType.ANY,
    )  # fmt: skip
    future = cluster.admin.describe_acls(everything, request_timeout=cluster.timeout)
    found = kafka_call("list ACLs", lambda: future.result(cluster.timeout))
    return sorted((_fields(b) for b in found), key=lambda f: tuple(f.values()))


def create_acl(cluster: ClusterClients, fields: AclFields) -> dict[str, Any]:
    binding = _binding(fields)
    futures = cluster.admin.create_acls([binding], request_timeout=cluster.timeout)
    kafka_call("create ACL", lambda: futures[binding].result(cluster.timeout))
    return {"created": _fields(binding)}


def delete_acl(cluster: ClusterClients, fields: AclFields) -> dict[str, Any]:
    """Delete the binding that has exactly these fields; the bindings Kafka deleted."""
    exact = _binding(fields, AclBindingFilter)
    futures = cluster.admin.delete_acls([exact], request_timeout=cluster.timeout)
    deleted = kafka_call("delete ACL", lambda: futures[exact].result(cluster.timeout))
    return {"deleted": [_fields(b) for b in deleted]}
