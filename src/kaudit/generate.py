"""Synthetic but realistic audit traffic, for the demo, the tests and the benchmarks.

A seeded mix of what a Kafka estate produces: logins and failed logins, topic and ACL
administration, config changes (with secrets that the recorder must redact), consumer
group offset resets, denied access, aggregated produce/consume, generic requests, and
backup/restore jobs — from several principals, clients and addresses, with a realistic
share of failures and denials. Events are spread evenly over a time window ending now.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kaudit.events.model import Actor, AuthCheck, Authorization
from kaudit.session import AuditSession

_PRINCIPALS = [
    ("User:alice", ("ops",)),
    ("User:bob", ("developer",)),
    ("User:carol", ("developer",)),
    ("User:svc-billing", ("service",)),
    ("User:svc-orders", ("service",)),
    ("User:admin", ("admin",)),
]
_CLIENTS = [
    ("billing-svc", "rdkafka/2.6.1"),
    ("orders-api", "apache-kafka-java/4.1.0"),
    ("etl-job", "kafka-python/2.2.15"),
    ("notifier", "aiokafka/0.12.0"),
    ("adminclient-1", "apache-kafka-java/4.1.0"),
]
_TOPICS = ["orders", "payments", "users", "invoices", "clickstream", "audit-exports", "inventory"]
_GROUPS = ["billing", "orders-projector", "fraud-detector", "etl"]
_MECHANISMS = ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]


@dataclass(frozen=True)
class _Emit:
    event_type: str
    resource: str
    result: str = "success"
    error: str | None = None
    details: dict[str, Any] | None = None
    authorization: Authorization | None = None


def _denied(operation: str, pattern: str, code: int) -> Authorization:
    return Authorization(
        allowed=False, checks=(AuthCheck(operation, pattern, allowed=False, error_code=code),)
    )


def _allowed(operation: str, pattern: str) -> Authorization:
    return Authorization(allowed=True, checks=(AuthCheck(operation, pattern, allowed=True),))


class TrafficGenerator:
    """Makes a deterministic stream of realistic events from a seed."""

    def __init__(self, seed: int = 42) -> None:
        self.rng = random.Random(seed)
        r = self.rng
        self._kinds: list[tuple[Callable[[], _Emit], int]] = [
            (self._produced, 18),
            (self._consumed, 16),
            (self._login, 10),
            (self._login_failed, 2),
            (self._request, 10),
            (self._topic_created, 5),
            (self._topic_deleted, 2),
            (self._topic_config, 4),
            (self._partitions, 1),
            (self._acl_created, 2),
            (self._acl_deleted, 1),
            (self._acl_described, 3),
            (self._broker_config, 2),
            (self._offsets_reset, 2),
            (self._group_deleted, 1),
            (self._denied, 4),
            (self._records_deleted, 1),
            (self._backup, 3),
            (self._restore, 1),
        ]
        self._makers = [k for k, _ in self._kinds]
        self._weights = [w for _, w in self._kinds]
        self._r = r

    def next(self) -> tuple[_Emit, Actor]:
        r = self._r
        principal, roles = r.choice(_PRINCIPALS)
        client_id, agent = r.choice(_CLIENTS)
        actor = Actor(
            type="user",
            id=principal,
            roles=roles,
            ip_address=f"10.0.{r.randint(0, 3)}.{r.randint(10, 250)}",
            user_agent=agent,
            client_id=client_id,
            auth=r.choice(_MECHANISMS),
        )
        maker = r.choices(self._makers, self._weights)[0]
        return maker(), actor

    def emit_next(
        self, session: AuditSession, *, correlation_id: str, time_ns: int | None = None
    ) -> None:
        """Record the next event of the mix through `session`, at `time_ns` (default:
        now)."""
        e, actor = self.next()
        session.emit(
            e.event_type,
            actor=actor,
            resource=e.resource,
            result=e.result,
            error=e.error,
            details=e.details,
            authorization=e.authorization,
            correlation_id=correlation_id,
            time_ns=time_ns,
        )

    # -- kinds of traffic -----------------------------------------------------------------

    def _topic(self) -> str:
        return self._r.choice(_TOPICS)

    def _produced(self) -> _Emit:
        n = self._r.randint(1, 50_000)
        return _Emit(
            "records.produced",
            f"topic:{self._topic()}",
            details={"count": n, "bytes": n * self._r.randint(200, 2000), "window_secs": 60},
        )

    def _consumed(self) -> _Emit:
        n = self._r.randint(1, 80_000)
        return _Emit(
            "records.consumed",
            f"topic:{self._topic()}",
            details={
                "count": n,
                "bytes": n * self._r.randint(200, 2000),
                "group": self._r.choice(_GROUPS),
                "window_secs": 60,
            },
        )

    def _login(self) -> _Emit:
        return _Emit(
            "auth.login",
            "cluster:kafka-cluster",
            details={"mechanism": self._r.choice(_MECHANISMS), "listener": "SASL_SSL"},
        )

    def _login_failed(self) -> _Emit:
        return _Emit(
            "auth.failed",
            "cluster:kafka-cluster",
            result="failure",
            error="SASL_AUTHENTICATION_FAILED",
            details={"mechanism": self._r.choice(_MECHANISMS), "reason": "invalid credentials"},
        )

    def _request(self) -> _Emit:
        api = self._r.choice(
            [
                "DescribeConfigs",
                "ListGroups",
                "DescribeGroups",
                "ListOffsets",
                "DescribeCluster",
                "DescribeLogDirs",
            ]
        )
        return _Emit("kafka.request", "cluster:kafka-cluster", details={"api": api})

    def _topic_created(self) -> _Emit:
        topic = f"{self._topic()}-{self._r.randint(1, 999)}"
        if self._r.random() < 0.15:
            return _Emit(
                "topic.created",
                f"topic:{topic}",
                result="denied",
                error="TOPIC_AUTHORIZATION_FAILED",
                authorization=_denied("CREATE", f"Topic:LITERAL:{topic}", 29),
                details={"partitions": 6, "replication_factor": 3},
            )
        if self._r.random() < 0.08:
            return _Emit(
                "topic.created",
                f"topic:{topic}",
                result="failure",
                error="INVALID_REPLICATION_FACTOR",
                details={"partitions": 6, "replication_factor": 5},
            )
        return _Emit(
            "topic.created",
            f"topic:{topic}",
            authorization=_allowed("CREATE", f"Topic:LITERAL:{topic}"),
            details={
                "partitions": self._r.choice([1, 3, 6, 12]),
                "replication_factor": 3,
                "configs": {"retention.ms": "604800000", "cleanup.policy": "delete"},
            },
        )

    def _topic_deleted(self) -> _Emit:
        topic = self._topic()
        if self._r.random() < 0.3:
            return _Emit(
                "topic.deleted",
                f"topic:{topic}",
                result="denied",
                error="TOPIC_AUTHORIZATION_FAILED",
                authorization=_denied("DELETE", f"Topic:LITERAL:{topic}", 29),
            )
        return _Emit(
            "topic.deleted",
            f"topic:{topic}",
            authorization=_allowed("DELETE", f"Topic:LITERAL:{topic}"),
        )

    def _topic_config(self) -> _Emit:
        key, old, new = self._r.choice(
            [
                ("retention.ms", "604800000", "2592000000"),
                ("cleanup.policy", "delete", "compact"),
                ("max.message.bytes", "1048588", "5242880"),
                ("min.insync.replicas", "1", "2"),
            ]
        )
        return _Emit(
            "topic.config_changed",
            f"topic:{self._topic()}",
            details={
                "config_type": "topic",
                "changes": [{"field": key, "old_value": old, "new_value": new}],
            },
        )

    def _partitions(self) -> _Emit:
        return _Emit(
            "topic.partitions_changed",
            f"topic:{self._topic()}",
            details={"partitions": self._r.choice([12, 24, 48])},
        )

    def _binding(self) -> dict[str, str]:
        principal, _ = self._r.choice(_PRINCIPALS)
        return {
            "principal": principal,
            "host": "*",
            "operation": self._r.choice(["READ", "WRITE", "DESCRIBE", "ALL"]),
            "permission_type": "ALLOW",
            "resource_type": "TOPIC",
            "resource_name": self._topic(),
            "pattern_type": "LITERAL",
        }

    def _acl_created(self) -> _Emit:
        b = self._binding()
        return _Emit(
            "acl.created", f"acl:TOPIC:{b['resource_name']}", details={"bindings": [b], "count": 1}
        )

    def _acl_deleted(self) -> _Emit:
        b = self._binding()
        return _Emit(
            "acl.deleted", f"acl:TOPIC:{b['resource_name']}", details={"bindings": [b], "count": 1}
        )

    def _acl_described(self) -> _Emit:
        return _Emit(
            "acl.described", "acl:*", details={"filter": "ANY", "count": self._r.randint(0, 40)}
        )

    def _broker_config(self) -> _Emit:
        if self._r.random() < 0.5:
            change = {
                "field": "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config",
                "old_value": None,
                "new_value": "org.apache.kafka.common.security.scram.ScramLoginModule "
                'required username="broker" password="hunter2-not-logged";',
            }
        else:
            change = {"field": "log.retention.hours", "old_value": "168", "new_value": "336"}
        return _Emit(
            "config.changed", "broker:1", details={"config_type": "broker", "changes": [change]}
        )

    def _offsets_reset(self) -> _Emit:
        return _Emit(
            "group.offsets_reset",
            f"group:{self._r.choice(_GROUPS)}",
            details={
                "topic": self._topic(),
                "partitions": [0, 1, 2],
                "to": self._r.choice(["earliest", "latest", "timestamp"]),
            },
        )

    def _group_deleted(self) -> _Emit:
        return _Emit("group.deleted", f"group:{self._r.choice(_GROUPS)}")

    def _denied(self) -> _Emit:
        topic = self._topic()
        op = self._r.choice(["READ", "WRITE", "DESCRIBE", "ALTER_CONFIGS"])
        return _Emit(
            "access.denied",
            f"topic:{topic}",
            result="denied",
            error="TOPIC_AUTHORIZATION_FAILED",
            authorization=_denied(op, f"Topic:LITERAL:{topic}", 29),
            details={
                "operation": op.lower(),
                "resource": f"Topic:LITERAL:{topic}",
                "reason": "insufficient_permissions",
            },
        )

    def _records_deleted(self) -> _Emit:
        return _Emit(
            "records.deleted",
            f"topic:{self._topic()}",
            details={"partitions": {"0": self._r.randint(1, 10_000)}},
        )

    def _backup(self) -> _Emit:
        kind = self._r.choices(["started", "completed", "failed"], [4, 4, 1])[0]
        backup_id = f"production-backup-{self._r.randint(1, 500):04d}"
        details: dict[str, Any] = {"backup_id": backup_id, "topics": self._r.sample(_TOPICS, 3)}
        if kind == "completed":
            n = self._r.randint(10_000, 2_000_000)
            details.update(records_backed_up=n, bytes_backed_up=n * 350, duration_secs=120)
        return _Emit(
            f"backup.{kind}",
            f"backup:{backup_id}",
            result="failure" if kind == "failed" else "success",
            error="storage unreachable" if kind == "failed" else None,
            details=details,
        )

    def _restore(self) -> _Emit:
        kind = self._r.choice(["started", "completed"])
        backup_id = f"production-backup-{self._r.randint(1, 500):04d}"
        return _Emit(
            f"restore.{kind}",
            f"backup:{backup_id}",
            details={
                "backup_id": backup_id,
                "target_cluster": "dr-us-east-1",
                "topics_restored": ["orders", "payments"],
            },
        )


def generate(
    session: AuditSession,
    count: int,
    *,
    seed: int = 42,
    spread_seconds: float = 0.0,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Emit `count` events through `session`, spread over `spread_seconds` ending now."""
    gen = TrafficGenerator(seed)
    end = time.time_ns()
    start = end - int(spread_seconds * 1e9)
    step = (end - start) / count if count else 0
    report_every = max(1, count // 200)
    for i in range(count):
        gen.emit_next(
            session,
            correlation_id=f"req_{seed:x}{i:08x}",
            time_ns=int(start + i * step) if spread_seconds else None,
        )
        if progress is not None and (i + 1) % report_every == 0:
            progress(report_every)
    if progress is not None and count % report_every:
        progress(count % report_every)
