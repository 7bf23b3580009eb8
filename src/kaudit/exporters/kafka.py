"""The seed's `kafka` destination: audit events copied to a Kafka topic.

This module owns turning native log lines into Kafka records (value, key, headers per
`format` and `cloudevents_mode`), creating the topic when asked to, producing with
durable settings, and turning every way delivery can fail into one `ExporterError` that
names the destination, the brokers and the cause, and says whether a retry can help.

Delivery is at-least-once. `send` returns only after the broker has acknowledged every
record with acks=all; when any record fails, the whole call fails and the runner sends
the same records again later, so records the broker had already acknowledged in the
failed call are written again. Every record carries the `kaudit_event_id` header (and
the id is in the value in every format), so receivers drop duplicates by event id.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException, Producer, TopicCollection
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from kaudit.config.model import KafkaDestination
from kaudit.errors import EventDecodeError, ExporterError
from kaudit.events.codec import decode
from kaudit.events.formats import render_bytes, to_cloudevent_binary
from kaudit.events.formats.cloudevents import CONTENT_TYPE_HEADER, STRUCTURED_CONTENT_TYPE
from kaudit.events.model import AuditEvent

__all__ = ["EVENT_ID_HEADER", "KafkaExporter", "record_key"]

EVENT_ID_HEADER = "kaudit_event_id"
"""The header carrying the event id on every record, for deduplication by receivers."""

DEFAULT_MESSAGE_TIMEOUT_MS = 30_000

# librdkafka's logs go to Python logging rather than straight to stderr, so they land
# where the application's other logs go.
_RDKAFKA_LOG = logging.getLogger("kaudit.exporters.kafka.rdkafka")

# Errors a retry cannot fix without someone changing ACLs, the topic or the event: the
# runner writes the batch to the dead-letter file instead of retrying forever.
_NOT_RETRYABLE = frozenset(
    {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TOPIC_EXCEPTION,  # invalid topic name
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_REQUIRED_ACKS,
        KafkaError.INVALID_CONFIG,
        KafkaError.POLICY_VIOLATION,
        KafkaError.UNSUPPORTED_FOR_MESSAGE_FORMAT,
        KafkaError._INVALID_ARG,
    }
)
_AUTHORIZATION = frozenset(
    {KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED}
)
# Brokers older than Kafka 2.4 refuse "broker default" (-1) partitions and replication.
_NO_BROKER_DEFAULTS = frozenset(
    {
        KafkaError.UNSUPPORTED_VERSION,
        KafkaError._UNSUPPORTED_FEATURE,
        KafkaError.INVALID_PARTITIONS,
        KafkaError.INVALID_REPLICATION_FACTOR,
        KafkaError.INVALID_REQUEST,
    }
)


_Client = TypeVar("_Client", Producer, AdminClient)
_Headers = list[tuple[str, str | bytes | None]]


def record_key(event: AuditEvent) -> bytes:
    """`resource.type:resource.id`: one resource's events share a partition, in order."""
    return f"{event.resource.type}:{event.resource.id}".encode()


@dataclass
class _Record:
    value: bytes
    key: bytes
    headers: _Headers


@dataclass
class _Reports:
    """The delivery reports of one `send` call.

    Each call gets its own, so reports arriving late for an earlier, failed call (whose
    records were still queued when it gave up) are not counted for this one.
    """

    acked: int = 0
    failed: Counter[int] = field(default_factory=Counter)
    errors: dict[int, KafkaError] = field(default_factory=dict)

    def __call__(self, err: KafkaError | None, _msg: Any) -> None:
        if err is None:
            self.acked += 1
        else:
            self.failed[err.code()] += 1
            self.errors.setdefault(err.code(), err)


class _ConnectionErrors:
    """The error_cb: remembers the last client-level error, the usual cause of a timeout.

    confluent-kafka calls it from within poll()/flush(), in the caller's thread.
    """

    def __init__(self) -> None:
        self.last: KafkaError | None = None

    def __call__(self, err: KafkaError) -> None:
        self.last = err

    def clear(self) -> None:
        self.last = None


class KafkaExporter:
    """Produces each event to `destination.topic`, keyed by resource, and waits for acks.

    The producer is idempotent with acks=all, so the broker's retries neither duplicate
    nor reorder records within a call. `client_config` is applied last and can change
    any of these settings.
    """

    native_input = True

    def __init__(self, destination: KafkaDestination) -> None:
        self.destination = destination
        self.name = destination.display_name
        self.topic = destination.topic
        self.brokers = ",".join(destination.bootstrap_servers)
        self._errors = _ConnectionErrors()
        connection = destination.client_settings()
        self._timeout_s = _message_timeout_ms(connection) / 1000
        callbacks = {"error_cb": self._errors, "logger": _RDKAFKA_LOG}
        self._admin_settings: dict[str, Any] = {
            # Without this a metadata request for a missing topic creates it on brokers
            # with auto.create.topics.enable, whatever `create_topic` says.
            "allow.auto.create.topics": False,
            **connection,
            **callbacks,
        }
        self._producer_settings: dict[str, Any] = {
            "client.id": "kaudit-exporter",
            "enable.idempotence": True,
            "acks": "all",
            # A short linger fills batches when the runner hands over many records,
            # and costs little next to waiting for acks=all.
            "linger.ms": 20,
            "compression.type": "lz4",
            # Hash keys the way Java clients do, so a resource's events land in the same
            # partition whichever client wrote them.
            "partitioner": "murmur2_random",
            # Producing to a missing topic must not create it behind `create_topic`.
            "allow.auto.create.topics": False,
            "message.timeout.ms": int(self._timeout_s * 1000),
            **connection,
            **callbacks,
        }
        self._render = _renderer(destination)
        self._producer: Producer | None = None
        self._topic_ready = False

    # ------------------------------------------------------------------ sending

    def send(self, records: list[bytes]) -> None:
        """Produce every record and return once all are acknowledged, else raise.

        At-least-once: when this raises, records acknowledged before the failure are
        sent again by the runner's retry; receivers deduplicate by event id.
        """
        if not records:
            return
        batch = self._prepare(records)
        if not self._topic_ready:
            self._ensure_topic()
        producer = self._get_producer()
        reports = _Reports()
        refused: KafkaError | None = None
        for record in batch:
            refused = self._produce(producer, record, reports)
            if refused is not None:
                break
        # Flush even after a refusal, so what was produced is settled before raising.
        try:
            remaining = producer.flush(self._timeout_s + 5)
        except (KafkaException, SystemError) as exc:
            self._after_fatal()
            fatal = _fatal_error(exc)
            if fatal is not None:
                detail = f"fatal producer error: {fatal.str()}"
                raise self._kafka_error(fatal, "write", detail) from exc
            raise self._error(f"_FATAL: the producer failed: {exc!r}", retryable=True) from exc
        if KafkaError._FATAL in reports.failed:
            self._after_fatal()
        self._check(len(batch), reports, remaining, refused)
        self._errors.clear()

    def _after_fatal(self) -> None:
        """Forget a producer that hit a fatal error, and what was checked about the topic.

        A fatal error (e.g. no right to get an idempotent producer id) leaves the producer
        refusing everything, so the next call starts a new one; it checks the topic and
        the right to write it again first, which names a lasting cause.
        """
        self._discard_producer()
        self._topic_ready = False

    def _prepare(self, records: list[bytes]) -> list[_Record]:
        batch = []
        for index, line in enumerate(records):
            try:
                event = decode(line)
            except EventDecodeError as exc:
                raise self._error(
                    f"record {index + 1} of {len(records)} is not an audit event: {exc}",
                    retryable=False,
                ) from exc
            value, headers = self._render(line, event)
            headers.append((EVENT_ID_HEADER, event.event_id.encode()))
            batch.append(_Record(value, record_key(event), headers))
        return batch

    def _produce(self, producer: Producer, record: _Record, reports: _Reports) -> KafkaError | None:
        """Queue one record; the error if the client refused it outright."""
        while True:
            try:
                producer.produce(
                    self.topic,
                    value=record.value,
                    key=record.key,
                    headers=record.headers,
                    on_delivery=reports,
                )
            except BufferError:
                # The local queue is full: serve delivery reports to make room. Records
                # that never get through time out and are reported as such.
                producer.poll(0.1)
                continue
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                return error
            return None

    def _check(
        self, total: int, reports: _Reports, remaining: int, refused: KafkaError | None
    ) -> None:
        if refused is not None:
            reports.failed[refused.code()] += 1
            reports.errors.setdefault(refused.code(), refused)
        if reports.failed:
            # A refusal a retry cannot fix decides the outcome over transient ones, so
            # the batch goes to the dead-letter file instead of being retried forever.
            code = max(reports.failed, key=lambda c: (c in _NOT_RETRYABLE, reports.failed[c]))
            err = reports.errors[code]
            failed = sum(reports.failed.values())
            detail = f"{failed} of {total} records failed"
            if len(reports.failed) > 1:
                others = ", ".join(
                    f"{reports.errors[c].name()} x{n}"
                    for c, n in reports.failed.items()
                    if c != code
                )
                detail += f"; also {others}"
            raise self._kafka_error(err, "write", detail)
        if remaining or reports.acked < total:
            unacked = max(remaining, total - reports.acked)
            raise self._error(
                f"_TIMED_OUT: {unacked} of {total} records not acknowledged within "
                f"{self._timeout_s + 5:g} s{self._connection_hint()}",
                retryable=True,
            )

    # ------------------------------------------------------------------ topic

    def _ensure_topic(self) -> None:
        """Check the topic is there and ours to write, creating it if configured to.

        Checking WRITE up front matters beyond a clearer message: an idempotent producer
        whose user may write no topic at all fails fatally when it asks for a producer id.
        """
        admin = self._client(AdminClient, self._admin_settings)
        err, operations = self._describe(admin)
        if err is not None and err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            if not self.destination.create_topic:
                raise self._error(
                    f"UNKNOWN_TOPIC_OR_PART: topic {self.topic} does not exist and "
                    "create_topic is false; create it, or set create_topic: true",
                    retryable=True,
                )
            self._create_topic(admin)
            # The producer waits for the new topic's metadata by itself; a user allowed
            # to create but not to write is caught by the fatal-error path.
            self._topic_ready = True
            return
        if err is not None:
            raise self._kafka_error(err, "describe")
        # None: a broker too old to report authorized operations; the produce will tell.
        if operations is not None and "WRITE" not in operations:
            raise self._kafka_error(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED), "write")
        self._topic_ready = True

    def _describe(self, admin: AdminClient) -> tuple[KafkaError | None, set[str] | None]:
        """(the error describing the topic, or None; the operations we may do on it,
        by ACL operation name, or None when the broker does not say)."""
        timeout = self._timeout_s
        futures = admin.describe_topics(
            TopicCollection([self.topic]),
            include_authorized_operations=True,
            request_timeout=timeout,
        )
        try:
            description = futures[self.topic].result(timeout=timeout + 5)
        except KafkaException as exc:
            admin.poll(0)  # serve error_cb, which knows why the brokers did not answer
            error: KafkaError = exc.args[0]
            return error, None
        except concurrent.futures.TimeoutError as exc:
            raise self._error(
                f"_TIMED_OUT: describing topic {self.topic} took over {timeout + 5:g} s"
                f"{self._connection_hint()}",
                retryable=True,
            ) from exc
        authorized = description.authorized_operations
        if authorized is None:
            return None, None
        return None, {operation.name for operation in authorized}

    def _create_topic(self, admin: AdminClient) -> None:
        err = self._create(admin, NewTopic(self.topic, num_partitions=-1, replication_factor=-1))
        if err is not None and err.code() in _NO_BROKER_DEFAULTS:
            try:
                brokers = len(admin.list_topics(timeout=self._timeout_s).brokers)
            except KafkaException as exc:
                raise self._kafka_error(exc.args[0], "create") from exc
            err = self._create(admin, NewTopic(self.topic, 1, min(3, max(brokers, 1))))
        if err is None or err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return
        raise self._kafka_error(err, "create")

    def _create(self, admin: AdminClient, new_topic: NewTopic) -> KafkaError | None:
        timeout = self._timeout_s
        futures = admin.create_topics(
            [new_topic], request_timeout=timeout, operation_timeout=timeout
        )
        try:
            futures[self.topic].result(timeout=timeout + 5)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            return error
        except concurrent.futures.TimeoutError as exc:
            raise self._error(
                f"_TIMED_OUT: creating topic {self.topic} took over {timeout + 5:g} s"
                f"{self._connection_hint()}",
                retryable=True,
            ) from exc
        return None

    # ------------------------------------------------------------------ producer

    def _get_producer(self) -> Producer:
        if self._producer is None:
            self._producer = self._client(Producer, self._producer_settings)
        return self._producer

    def _client(
        self, kind: Callable[[dict[str, Any]], _Client], settings: dict[str, Any]
    ) -> _Client:
        try:
            return kind(settings)
        except KafkaException as exc:
            # librdkafka checks every setting when the client is made: a bad
            # `client_config` stays bad until someone edits it.
            err: KafkaError = exc.args[0]
            raise self._error(
                f"{err.name()}: invalid client settings: {err.str().strip()}", retryable=False
            ) from exc

    def _discard_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            # What is still queued belongs to calls that already failed and will be
            # retried; waiting for it would only delay the close. Dropping the last
            # reference destroys the client.
            producer.purge()

    def close(self) -> None:
        self._discard_producer()

    # ------------------------------------------------------------------ errors

    def _error(self, message: str, *, retryable: bool) -> ExporterError:
        return ExporterError(
            f"kafka destination {self.name} ({self.brokers}): {message}", retryable=retryable
        )

    def _connection_hint(self) -> str:
        last = self._errors.last
        return f"; last connection error: {last.name()}: {last.str()}" if last else ""

    def _kafka_error(self, err: KafkaError, verb: str, detail: str = "") -> ExporterError:
        code = err.code()
        retryable = code not in _NOT_RETRYABLE
        if code in _AUTHORIZATION:
            user = self.destination.security.sasl_username
            who = f" as {user}" if user else ""
            text = f"not authorized to {verb} topic {self.topic}{who}"
            if verb == "create":
                text += "; grant CREATE on it, or create it and set create_topic: false"
            elif verb == "describe":
                text += " (writing needs WRITE on it, creating it needs CREATE)"
            elif not detail:
                text += " (writing needs WRITE on it)"
        elif verb == "write":
            text = err.str()
        elif code == KafkaError._TIMED_OUT:
            # librdkafka's own text here ("waiting for controller") hides the plain fact.
            within = f"{self._timeout_s:g} s"
            text = f"cannot {verb} topic {self.topic}: no answer from the brokers within {within}"
        else:
            text = f"cannot {verb} topic {self.topic}: {err.str()}"
        if detail:
            text += f" ({detail})"
        if retryable:
            text += self._connection_hint()
        return self._error(f"{err.name()}: {text}", retryable=retryable)


def _fatal_error(exc: BaseException) -> KafkaError | None:
    """The fatal KafkaError `flush` raised, directly or under a SystemError.

    confluent-kafka raises a producer's fatal error from flush() instead of passing it
    to error_cb, and delivery callbacks that run after it, with that exception still
    pending, fail as SystemError whose context is the KafkaException.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, KafkaException) and seen.args:
            err = seen.args[0]
            if isinstance(err, KafkaError) and err.fatal():
                return err
        seen = seen.__cause__ or seen.__context__
    return None


def _message_timeout_ms(settings: dict[str, Any]) -> float:
    """How long librdkafka tries to deliver one record, as `client_config` may set it."""
    # delivery.timeout.ms is librdkafka's alias; when both are given the later one wins.
    given = [key for key in settings if key in ("message.timeout.ms", "delivery.timeout.ms")]
    return float(settings[given[-1]]) if given else float(DEFAULT_MESSAGE_TIMEOUT_MS)


_Renderer = Callable[[bytes, AuditEvent], tuple[bytes, _Headers]]


def _renderer(destination: KafkaDestination) -> _Renderer:
    """How one native line becomes a record value and headers in this destination's format."""
    fmt = destination.format
    if fmt == "cloudevents" and destination.cloudevents_mode == "binary":
        # CloudEvents Kafka protocol binding, binary mode: attributes as ce_ headers,
        # the native event as the value.
        return lambda _line, event: _binary(event)
    if fmt == "cloudevents":
        content_type = STRUCTURED_CONTENT_TYPE.encode()
        return lambda _line, event: (
            render_bytes(event, "cloudevents"),
            [(CONTENT_TYPE_HEADER, content_type)],
        )
    if fmt == "ocsf":
        return lambda _line, event: (render_bytes(event, "ocsf"), [])
    # native: the log's canonical bytes, as signed, untouched.
    return lambda line, _event: (line, [])


def _binary(event: AuditEvent) -> tuple[bytes, _Headers]:
    headers, value = to_cloudevent_binary(event)
    return value, [*headers]
