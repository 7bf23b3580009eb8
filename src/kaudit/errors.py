"""The one exception tree of kaudit.

Every error says whether retrying can help (`retryable`), so callers and exporters can
decide between backing off and giving up without parsing messages. Foreign exceptions are
wrapped at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations


class KauditError(Exception):
    """Base of every error kaudit raises on purpose."""

    retryable: bool = False


class UsageError(KauditError):
    """A command was asked for something in a way that cannot work (the command line
    exits with status 2, as for a bad option)."""


class ConfigError(KauditError):
    """The configuration is invalid; `issues` lists every problem found."""

    def __init__(self, issues: list[ConfigIssue], source: str = "<config>") -> None:
        self.issues = issues
        self.source = source
        lines = "\n".join(f"  {issue}" for issue in issues)
        super().__init__(f"{source}: {len(issues)} error(s) in configuration\n{lines}")


class ConfigIssue:
    """One problem in a configuration: where (dotted path) and what, with what is accepted."""

    __slots__ = ("message", "path")

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message

    def __repr__(self) -> str:
        return f"ConfigIssue({self.path!r}, {self.message!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConfigIssue) and (self.path, self.message) == (
            other.path,
            other.message,
        )

    def __hash__(self) -> int:
        return hash((self.path, self.message))


class UnknownEventTypeError(KauditError, ValueError):
    """An event type that is neither in the catalog nor declared in the configuration."""


class EventDecodeError(KauditError, ValueError):
    """Bytes that are not a valid audit event."""


class EventEncodeError(KauditError, ValueError):
    """An event that cannot be serialised (details that are not plain JSON types)."""


class AuditUnavailableError(KauditError):
    """The audit log cannot accept the event within the fail_closed bound.

    Retrying can help: the log may recover (disk space freed, broker back).
    """

    retryable = True


class LogError(KauditError):
    """The audit log cannot be opened, read or written."""


class LogWriteError(LogError):
    """Writing to the audit log failed (unwritable directory, disk full, broker down)."""

    retryable = True


class LogLockedError(LogError):
    """Another process already writes this log directory."""


class ExporterError(KauditError):
    """A destination failed; `retryable` says whether a retry can deliver the batch."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class DeliveryIncompleteError(ExporterError):
    """A batch run (`kaudit run --once`) gave up on destinations that still failed after
    their retries; their cursors stay where delivery stopped."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class PluginError(KauditError):
    """A plugin (auditor, exporter) named in the configuration cannot be loaded."""


class RecordsRejectedError(ExporterError):
    """A destination took a batch except some records it refused as invalid (too large,
    too old): those go to the dead-letter file, the rest count as delivered."""

    def __init__(self, message: str, rejected: list[int]) -> None:
        super().__init__(message, retryable=False)
        self.rejected = rejected


class DestinationHttpError(ExporterError):
    """An HTTP destination answered with an error status; `retry_after` is the delay in
    seconds its Retry-After header asked for, if any."""

    def __init__(
        self, message: str, *, status: int, retryable: bool, retry_after: float | None = None
    ) -> None:
        super().__init__(message, retryable=retryable)
        self.status = status
        self.retry_after = retry_after


class NotificationError(ExporterError):
    """An alert notification was not delivered; it stays pending and is tried again.
    `retry_after` is the delay in seconds the receiver asked for, if any."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message, retryable=retryable)
        self.retry_after = retry_after


class LocalKafkaError(KauditError):
    """The local Kafka of `kaudit.dev` could not be assembled, started, stopped or used.

    Its subclasses live in `kaudit.dev.errors`; the base is here so that the local Kafka's
    data types (users, connection details) can raise it from below that module, which
    names one of them (`KafkaAlreadyRunningError` carries a `KafkaInfo`).
    """


class GatewayError(KauditError):
    """The gateway cannot start: a port is taken, a TLS file cannot be read."""


class AuditRefused(AuditUnavailableError):
    """fail_closed: the audit log cannot take a request's record now, so the client gets
    an error instead of the broker's answer."""


class StoreError(KauditError):
    """The search index cannot be opened, read or written.

    Retrying can help when the index was busy (another process holding its write lock).
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class SearchError(KauditError, ValueError):
    """A search, report or retention request that cannot be answered as asked (a bad time,
    filter or period); the message says what is accepted. Retrying does not help."""


class TimeFormatError(SearchError):
    """A time, duration or month written in a form kaudit does not read
    (`kaudit.timeparse`); the message says what is accepted. A SearchError, because
    searches, reports and retention are where such values come from."""
