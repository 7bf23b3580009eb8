"""ACL actions: list (the bindings the user may edit), create and delete (ACL_EDIT on the
binding's topic or group, or on the cluster for other resource types)."""

from __future__ import annotations

from typing import Any

from kaudit.console.actions import acls
from kaudit.console.actions.acls import AclFields
from kaudit.console.clusters import ClusterClients
from kaudit.console.service.core import Call, ServiceCore, Spec

__all__ = ["AclActions"]


def _object(fields: AclFields) -> tuple[str | None, str | None]:
    """What an ACL binding is about, as RBAC resources name it. A prefixed pattern or the
    name `*` covers many topics or groups, some of which the policy may deny, so it is
    decided at cluster level."""
    kind = fields.get("resource_type", "").lower()
    pattern = fields.get("pattern_type", "literal").lower()
    if kind in ("topic", "group") and pattern == "literal" and fields.get("resource_name") != "*":
        return kind, fields.get("resource_name")
    return None, None


class AclActions(ServiceCore):
    def list_acls(self, call: Call) -> list[AclFields]:
        spec = Spec("acl.described", "list-acls", None, None, None, {})

        def act(cluster: ClusterClients) -> list[AclFields]:
            return [
                b
                for b in acls.list_acls(cluster)
                if self.rbac.decide(
                    call.user, "ACL_EDIT", self.target(cluster, *_object(b))
                ).allowed
            ]

        return self.run(call, spec, act, lambda r: {"bindings": len(r)})

    def create_acl(self, call: Call, fields: AclFields) -> dict[str, Any]:
        object_type, object_id = _object(fields)
        spec = Spec("acl.created", "create-acl", "ACL_EDIT", object_type, object_id, dict(fields))
        return self.run(call, spec, lambda c: acls.create_acl(c, fields))

    def delete_acl(self, call: Call, fields: AclFields) -> dict[str, Any]:
        object_type, object_id = _object(fields)
        spec = Spec("acl.deleted", "delete-acl", "ACL_EDIT", object_type, object_id, dict(fields))
        return self.run(call, spec, lambda c: acls.delete_acl(c, fields))
