"""What every Kafka client of the audit log shares: its settings and how it explains
failures.

It owns building a confluent-kafka client's settings from a `KafkaConnection`
(`client_base`: the connection's settings, an error callback, librdkafka's logging kept
quiet unless ``KAUDIT_KAFKA_CLIENT_LOG`` is set), remembering the client's last
connection-level error (`ErrorTracker`) so a timeout can say why, asking for the
cluster's metadata so that a failed login ends the wait (`cluster_metadata`), and the
text of a Kafka error (`error_text`). The checkpoints on the companion topic use them
too (`kaudit.integrity.kafka_checkpoints`).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from kaudit.config.model import KafkaConnection
from kaudit.errors import LogError
from kaudit.files import UnprotectedKeyError, check_private_key


def describe(connection: KafkaConnection) -> str:
    """The connection's bootstrap servers, as errors name the cluster."""
    return ",".join(connection.bootstrap_servers)


def error_text(err: KafkaError | Any) -> str:
    """``NAME: description`` of a Kafka error (anything else as its text)."""
    if isinstance(err, KafkaError):
        return f"{err.name()}: {err.str()}"
    return str(err)


class ErrorTracker:
    """Remembers the client's last connection-level error, to explain a timeout."""

    def __init__(self) -> None:
        self.last: str | None = None
        self.fatal = False
        self.producer_fatal = False
        self.all_down_since: float | None = None

    def __call__(self, err: KafkaError) -> None:
        self.last = error_text(err)
        code = err.code()
        if err.fatal():
            self.producer_fatal = True
        # Wrong credentials will not get better by waiting: fail at once.
        if code in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED):
            self.fatal = True
        if code == KafkaError._ALL_BROKERS_DOWN and self.all_down_since is None:
            self.all_down_since = time.monotonic()


# librdkafka logs through Python's logging instead of printing to stderr; its connection
# errors are repeated every retry and our own errors already carry the cause, so they are
# shown only when KAUDIT_KAFKA_CLIENT_LOG is set.
_CLIENT_LOGGER = logging.getLogger("kaudit.kafka.client")
if not os.environ.get("KAUDIT_KAFKA_CLIENT_LOG"):
    _CLIENT_LOGGER.addHandler(logging.NullHandler())
    _CLIENT_LOGGER.propagate = False
_ALL_DOWN_GRACE_S = 3.0


def client_base(connection: KafkaConnection, tracker: ErrorTracker) -> dict[str, Any]:
    """confluent-kafka settings for `connection`, reporting errors to `tracker`;
    LogError when its TLS key file is readable by group or others."""
    key = connection.security.ssl_key_location
    if key:
        try:
            check_private_key(key, "TLS key (security.ssl_key_location)")
        except UnprotectedKeyError as exc:
            raise LogError(str(exc)) from exc
    return {**connection.client_settings(), "error_cb": tracker, "logger": _CLIENT_LOGGER}


def cluster_metadata(client: Any, tracker: ErrorTracker, what: str, timeout: float = 15.0) -> Any:
    """The cluster's metadata, asked in short rounds so a login failure ends the wait."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.list_topics(timeout=min(2.0, max(0.1, deadline - time.monotonic())))
        except KafkaException as exc:
            if hasattr(client, "poll"):
                client.poll(0)  # run error callbacks: they say why
            all_down = tracker.all_down_since is not None and (
                time.monotonic() - tracker.all_down_since > _ALL_DOWN_GRACE_S
            )
            if tracker.fatal or all_down or time.monotonic() >= deadline:
                cause = tracker.last or error_text(exc.args[0])
                raise LogError(f"{what}: cannot reach the cluster: {cause}") from exc
