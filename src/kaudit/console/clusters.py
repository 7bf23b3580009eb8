"""The Kafka clusters the console administers: one set of clients per cluster, made with
that cluster's own service credentials, and its cluster id for events and policies.

Clients are made on first use and kept; the id is the configured one, or the id Kafka
reports (asked once). A call that fails becomes `KafkaCallError` with the broker's words.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from kaudit.config.console import ConsoleCluster
from kaudit.errors import KauditError

__all__ = ["ClusterClients", "Clusters", "KafkaCallError", "UnknownClusterError", "kafka_call"]

T = TypeVar("T")


class KafkaCallError(KauditError):
    """Kafka refused or failed a console action; the message is the broker's error."""

    def __init__(self, message: str, *, code: str | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable


class UnknownClusterError(KauditError):
    """A cluster name that is not in `console.clusters`."""


def kafka_call(what: str, call: Callable[[], T]) -> T:
    """Run one Kafka call, turning librdkafka's errors into `KafkaCallError`."""
    try:
        return call()
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        if isinstance(error, KafkaError):
            raise KafkaCallError(
                f"{what}: {error.str()}", code=error.name(), retryable=error.retriable()
            ) from exc
        raise KafkaCallError(f"{what}: {exc}") from exc
    except TimeoutError as exc:
        raise KafkaCallError(
            f"{what}: no answer in time", code="TIMED_OUT", retryable=True
        ) from exc
    except (ValueError, TypeError) as exc:
        raise KafkaCallError(f"{what}: {exc}") from exc


class ClusterClients:
    """One cluster: its settings, id and clients."""

    def __init__(self, config: ConsoleCluster) -> None:
        self.config = config
        self.name = config.name
        self.timeout = config.timeout_seconds
        self._lock = threading.Lock()
        self._admin: AdminClient | None = None
        self._producer: Producer | None = None
        self._id: str | None = config.id

    @property
    def settings(self) -> dict[str, Any]:
        return self.config.client_settings()

    @property
    def admin(self) -> AdminClient:
        with self._lock:
            if self._admin is None:
                self._admin = AdminClient({**self.settings, "client.id": "kaudit-console"})
            return self._admin

    @property
    def producer(self) -> Producer:
        with self._lock:
            if self._producer is None:
                self._producer = Producer(
                    {**self.settings, "client.id": "kaudit-console", "acks": "all"}
                )
            return self._producer

    def consumer(self, **extra: Any) -> Consumer:
        """A consumer that commits nothing (inspection reads, never moves a group)."""
        return Consumer(
            {
                **self.settings,
                "client.id": "kaudit-console",
                "group.id": "kaudit-console-inspect",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                **extra,
            }
        )

    @property
    def id(self) -> str:
        """The cluster id: configured, or reported by Kafka (asked once)."""
        if self._id is None:
            future = self.admin.describe_cluster(request_timeout=self.timeout)
            description = kafka_call(
                f"describe cluster {self.name}", lambda: future.result(self.timeout)
            )
            self._id = description.cluster_id or self.name
        return self._id

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.flush(self.timeout)
            self._producer = None
            self._admin = None


class Clusters:
    """Every cluster of `console.clusters`, by name."""

    def __init__(self, configs: list[ConsoleCluster]) -> None:
        self._by_name = {c.name: ClusterClients(c) for c in configs}

    @property
    def names(self) -> list[str]:
        return list(self._by_name)

    def get(self, name: str) -> ClusterClients:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownClusterError(
                f"no cluster named {name!r}; configured: {', '.join(self._by_name)}"
            ) from None

    def close(self) -> None:
        for cluster in self._by_name.values():
            cluster.close()
