"""The catalog of event types: names (`category.verb`), categories and what each means.

Globs (`topic.*`, `*.denied`) select types in `events` / `exclude_events`. A name outside
the catalog is refused with the closest known names, unless the configuration declares
it as a custom type.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from kaudit.errors import UnknownEventTypeError


@dataclass(frozen=True, slots=True)
class EventType:
    """One kind of event; `mutation` marks those that change something (Slack MUTATIONS)."""

    name: str
    description: str
    mutation: bool

    @property
    def category(self) -> str:
        return self.name.partition(".")[0]

    @property
    def operation(self) -> str:
        """The default `action.operation` for this type (`topic.created` → `create`)."""
        category, _, verb = self.name.partition(".")
        return _OPERATIONS.get(self.name) or _OPERATIONS.get(verb) or verb or category


_OPERATIONS = {
    "created": "create",
    "deleted": "delete",
    "partitions_changed": "create_partitions",
    "config_changed": "alter_configs",
    "changed": "alter",
    "viewed": "describe",
    "described": "describe",
    "offsets_reset": "reset_offsets",
    "offsets_deleted": "delete_offsets",
    "produced": "produce",
    "consumed": "consume",
    "inspected": "inspect",
    "credentials_changed": "alter_credentials",
    "token_created": "create_token",
    "partitions_reassigned": "reassign_partitions",
    "leaders_elected": "elect_leaders",
    "license_applied": "apply_license",
    "brokers_described": "describe",
    "feature_enabled": "enable_feature",
    "auth.login": "login",
    "auth.logout": "logout",
    "auth.failed": "authenticate",
    "auth.token_refresh": "refresh_token",
    "access.granted": "access",
    "access.denied": "access",
    "access.bypassed_gateway": "access",
    "kafka.request": "request",
    "audit.degraded": "record",
    "alert.fired": "fire",
    "alert.resolved": "resolve",
    **{
        f"{c}.{v}": c
        for c in ("backup", "restore", "validate")
        for v in ("started", "completed", "failed", "cancelled", "checkpoint")
    },
}


def _types(mutations: Mapping[str, str], queries: Mapping[str, str]) -> list[EventType]:
    return [EventType(n, d, True) for n, d in mutations.items()] + [
        EventType(n, d, False) for n, d in queries.items()
    ]


_BUILTIN: list[EventType] = _types(
    mutations={
        "topic.created": "A topic was created (or creation was attempted)",
        "topic.deleted": "A topic was deleted",
        "topic.partitions_changed": "Partitions were added to a topic",
        "topic.config_changed": "A topic's configuration was changed",
        "acl.created": "ACL bindings were created",
        "acl.deleted": "ACL bindings were deleted",
        "config.changed": "A broker, client, user or kaudit configuration was changed",
        "group.offsets_reset": (
            "A consumer group's offsets were moved away from where its consumption had reached"
        ),
        "group.offsets_deleted": "Committed offsets of a consumer group were deleted",
        "group.deleted": "A consumer group was deleted",
        "records.produced": "Records were produced to a topic (aggregated over a window)",
        "records.deleted": "Records were deleted from a partition (DeleteRecords)",
        "auth.credentials_changed": "SCRAM credentials were created, changed or deleted",
        "auth.token_created": "A delegation token was created",
        "admin.partitions_reassigned": "Partition replicas were reassigned",
        "admin.leaders_elected": "Partition leaders were elected",
        "admin.license_applied": "A license was applied",
        "admin.feature_enabled": "A feature was enabled",
        "backup.started": "A backup started",
        "backup.completed": "A backup completed",
        "backup.failed": "A backup failed",
        "backup.cancelled": "A backup was cancelled",
        "backup.checkpoint": "A backup wrote a progress checkpoint",
        "restore.started": "A restore started",
        "restore.completed": "A restore completed",
        "restore.failed": "A restore failed",
        "restore.cancelled": "A restore was cancelled",
    },
    queries={
        "acl.described": "ACL bindings were listed",
        "topic.described": "Topics were listed or described in a console",
        "group.described": "Consumer groups were listed or described in a console",
        "admin.brokers_described": "The brokers of a cluster were listed in a console",
        "config.viewed": "A configuration was read",
        "records.consumed": "Records were fetched from a topic (aggregated over a window)",
        "records.inspected": "Records were inspected in a console",
        "audit.exported": "Audit events were exported from the console's audit log",
        "auth.login": "A principal authenticated",
        "auth.logout": "A session ended",
        "auth.failed": "Authentication failed",
        "auth.token_refresh": "A session token was refreshed",
        "access.granted": "Access to a resource was granted",
        "access.denied": "Access to a resource was denied",
        "access.bypassed_gateway": (
            "A broker authorized a client request that no kaudit gateway recorded: the client "
            "reached the broker directly"
        ),
        "validate.started": "A backup validation started",
        "validate.completed": "A backup validation completed",
        "validate.failed": "A backup validation failed",
        "kafka.request": "Any other Kafka API request (generic event)",
        "audit.degraded": "kaudit dropped events under fail_open and has recovered",
        "alert.fired": "An alert rule fired (rule, group, count and the events behind it)",
        "alert.resolved": "A firing alert's count fell back below its threshold",
    },
)

CATEGORIES: tuple[str, ...] = tuple(dict.fromkeys(t.category for t in _BUILTIN))

_GLOB_CHARS = frozenset("*?[")


def is_glob(pattern: str) -> bool:
    return any(c in _GLOB_CHARS for c in pattern)


class EventCatalog:
    """The built-in event types plus custom ones declared in the configuration."""

    def __init__(self, custom: Iterable[str] = ()) -> None:
        self._types: dict[str, EventType] = {t.name: t for t in _BUILTIN}
        for name in custom:
            if name not in self._types:
                self._types[name] = EventType(name, "Custom event type", True)

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[EventType]:
        return iter(self._types.values())

    @property
    def names(self) -> list[str]:
        return list(self._types)

    def get(self, name: str) -> EventType:
        """The type called `name`, or an error naming the closest known types."""
        try:
            return self._types[name]
        except KeyError:
            raise UnknownEventTypeError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, self._types, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return (
            f"unknown event type {name!r}{hint} "
            f"(known categories: {', '.join(sorted({t.category for t in self._types.values()}))}; "
            "declare custom types under audit.custom_event_types)"
        )

    def matching(self, pattern: str) -> list[str]:
        """Names selected by a glob (or the name itself)."""
        return [n for n in self._types if fnmatch.fnmatchcase(n, pattern)]


CATALOG = EventCatalog()
"""The built-in catalog, for code that has no configuration."""
