"""Consumer group actions: list and describe (what the user may see), reset offsets
(GROUP_EDIT; a dry run previews and is recorded as such), delete (GROUP_DELETE)."""

from __future__ import annotations

from typing import Any

from kaudit.console.actions import groups
from kaudit.console.clusters import ClusterClients
from kaudit.console.service.core import Call, ServiceCore, Spec

__all__ = ["GroupActions"]


class GroupActions(ServiceCore):
    def list_groups(self, call: Call) -> list[dict[str, Any]]:
        spec = Spec("group.described", "list-groups", None, None, None, {})

        def act(cluster: ClusterClients) -> list[dict[str, Any]]:
            found = groups.list_groups(cluster)
            shown = self.visible(call, cluster, "group", [g["group"] for g in found])
            return [g for g in found if g["group"] in shown]

        return self.run(call, spec, act, lambda r: {"groups": len(r)})

    def describe_group(self, call: Call, group: str) -> dict[str, Any]:
        """Members and lag; a group the user may take no action on stays hidden."""
        spec = Spec("group.described", "describe-group", None, "group", group, {"group": group})
        cluster = self.clusters.get(call.cluster)
        if not self.rbac.may_see(call.user, self.target(cluster, "group", group)):
            self.refuse(call, spec, self.decide(call, "GROUP_EDIT", "group", group))
        return self.run(
            call,
            spec,
            lambda c: groups.describe_group(c, group),
            lambda r: {"members": len(r["members"]), "partitions": len(r["offsets"])},
        )

    def reset_offsets(
        self, call: Call, group: str, topic: str, to: str, value: int | None, dry_run: bool
    ) -> dict[str, Any]:
        request = {"group": group, "topic-name": topic, "to": to, "value": value,
                   "dry-run": dry_run}  # fmt: skip
        spec = Spec("group.offsets_reset", "reset-offsets", "GROUP_EDIT", "group", group, request)
        return self.run(
            call, spec, lambda c: groups.reset_offsets(c, group, topic, to, value, dry_run)
        )

    def delete_group(self, call: Call, group: str) -> dict[str, Any]:
        spec = Spec("group.deleted", "delete-group", "GROUP_DELETE", "group", group,
                    {"group": group})  # fmt: skip
        return self.run(call, spec, lambda c: groups.delete_group(c, group))
