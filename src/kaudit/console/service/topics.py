"""Topic actions: list, describe, create, delete, edit configs, add partitions, truncate."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kaudit.console.actions import topics
from kaudit.console.clusters import ClusterClients
from kaudit.console.service.core import Call, ServiceCore, Spec

__all__ = ["TopicActions"]


class TopicActions(ServiceCore):
    def list_topics(self, call: Call) -> list[dict[str, Any]]:
        spec = Spec("topic.described", "list-topics", None, None, None, {})

        def act(cluster: ClusterClients) -> list[dict[str, Any]]:
            found = topics.list_topics(cluster)
            shown = self.visible(call, cluster, "topic", [t["name"] for t in found])
            return [t for t in found if t["name"] in shown]

        return self.run(call, spec, act, lambda r: {"topics": len(r)})

    def describe_topic(self, call: Call, topic: str) -> dict[str, Any]:
        spec = Spec(
            "topic.described",
            "describe-topic",
            "TOPIC_INSPECT",
            "topic",
            topic,
            {"topic-name": topic},
        )
        return self.run(
            call,
            spec,
            lambda c: topics.describe_topic(c, topic),
            lambda r: {"partitions": len(r["partitions"])},
        )

    def create_topic(
        self,
        call: Call,
        topic: str,
        partitions: int,
        replication_factor: int,
        configs: Mapping[str, str],
    ) -> dict[str, Any]:
        spec = Spec(
            "topic.created",
            "create-topic",
            "TOPIC_CREATE",
            "topic",
            topic,
            {
                "topic-name": topic,
                "partitions": partitions,
                "replication-factor": replication_factor,
                "config-items": dict(configs),
            },
        )
        return self.run(
            call,
            spec,
            lambda c: topics.create_topic(c, topic, partitions, replication_factor, configs),
        )

    def delete_topic(self, call: Call, topic: str) -> dict[str, Any]:
        spec = Spec(
            "topic.deleted", "delete-topic", "TOPIC_DELETE", "topic", topic, {"topic-name": topic}
        )
        return self.run(call, spec, lambda c: topics.delete_topic(c, topic))

    def edit_topic_configs(
        self, call: Call, topic: str, changes: Mapping[str, str | None]
    ) -> dict[str, Any]:
        spec = Spec(
            "topic.config_changed",
            "edit-topic-config",
            "TOPIC_EDIT",
            "topic",
            topic,
            {"topic-name": topic, "config-items": dict(changes)},
        )
        return self.run(call, spec, lambda c: topics.alter_topic_configs(c, topic, changes))

    def add_partitions(self, call: Call, topic: str, total: int) -> dict[str, Any]:
        spec = Spec(
            "topic.partitions_changed",
            "add-partitions",
            "TOPIC_EDIT",
            "topic",
            topic,
            {"topic-name": topic, "partitions": total},
        )
        return self.run(call, spec, lambda c: topics.add_partitions(c, topic, total))

    def truncate_topic(
        self, call: Call, topic: str, offsets: Mapping[int, int] | None
    ) -> dict[str, Any]:
        request = {
            "topic-name": topic,
            "offsets": {str(p): o for p, o in offsets.items()} if offsets else "all",
        }
        spec = Spec("records.deleted", "truncate-topic", "TOPIC_TRUNCATE", "topic", topic, request)
        return self.run(call, spec, lambda c: topics.truncate_topic(c, topic, offsets))
