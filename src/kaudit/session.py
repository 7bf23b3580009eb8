"""An open audit session: the configured log, the recorder in front of it, the auditors.

`kaudit.open(config)` returns one, as a context manager; `kaudit.emit(...)` records
through the session opened most recently in this process.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kaudit.auditor import Auditor, AuthInfo, RequestContext, RequestEvent
from kaudit.config import Config, load_config
from kaudit.config.model import KafkaLog
from kaudit.errors import AuditUnavailableError
from kaudit.events.model import Action, Actor, AuditEvent, Authorization, Resource
from kaudit.integrity.sealer import build_sealer
from kaudit.log.segments import SegmentLog
from kaudit.ops import reload
from kaudit.plugins import load_auditor
from kaudit.recorder.core import LogSink, Recorder, RecorderSettings

_log = logging.getLogger("kaudit.session")


class _DisabledSink:
    """The log of a session with `audit.enabled: false`: takes nothing, since the
    recorder selects no event type."""

    next_sequence = 0
    keyed = False

    def append(self, lines: Sequence[bytes], keys: Sequence[bytes] | None = None) -> None:
        raise AssertionError("audit is disabled: nothing should be written")

    def close(self) -> None:
        pass


def recorder_settings(config: Config, source: str = "sdk") -> RecorderSettings:
    audit = config.audit
    return RecorderSettings(
        failure_policy=audit.failure_policy,
        queue_max_events=audit.queue_max_events,
        block_timeout_ms=audit.block_timeout_ms,
        batch_max_events=audit.batch_max_events,
        events=tuple(audit.events) if audit.enabled else (),
        exclude_events=tuple(audit.exclude_events),
        custom_event_types=tuple(audit.custom_event_types),
        redact_keys=tuple(audit.redact_keys),
        cluster_id=config.cluster.id,
        environment=config.cluster.environment,
        source=source,
    )


def open_sink(config: Config) -> LogSink:
    """The audit log the configuration names, opened for writing."""
    log = config.audit.log
    if isinstance(log, KafkaLog):
        from kaudit.log.kafka import KafkaLogSink

        return KafkaLogSink(log, config.data_path / "kafka-log")
    return SegmentLog(config.log_dir, segment_max_bytes=log.segment_max_mb << 20, fsync=log.fsync)


def describe_log(config: Config) -> str:
    """Where the configured audit log is, in words for messages."""
    log = config.audit.log
    if isinstance(log, KafkaLog):
        return f"kafka topic {log.topic} on {','.join(log.bootstrap_servers)}"
    return str(config.log_dir)


class AuditSession:
    """The recorder and auditors of one configuration, open for recording."""

    def __init__(self, config: Config, *, source: str = "sdk") -> None:
        self.config = config
        sink: LogSink = open_sink(config) if config.audit.enabled else _DisabledSink()
        try:
            sealer = build_sealer(config.audit.integrity, sink, config.cluster.id)
        except BaseException:
            sink.close()
            raise
        self.recorder = Recorder(sink, recorder_settings(config, source), sealer=sealer)
        recovery = getattr(sink, "recovery", None)
        if recovery is not None and recovery.torn_lines:
            self.recorder.note_recovery(
                recovery.torn_lines, recovery.bytes_cut, str(config.log_dir)
            )
        self.auditors: list[Auditor] = []
        self.auditor_failures = 0
        self._unregister_reload = reload.register("recorder", self._prepare_reload)
        try:
            for spec in config.auditor_specs:
                self.auditors.append(load_auditor(spec.name, spec.config, self.recorder))
        except BaseException:
            self.close()
            raise

    def _prepare_reload(self, old: Config, new: Config) -> reload.Change | None:
        """A reload's new event selection and redaction (the rest of `audit` applies at
        start: reload.restart_needed names it)."""
        settings = recorder_settings(new, self.recorder.settings.source)
        current = self.recorder.settings
        parts = ("events", "exclude_events", "custom_event_types", "redact_keys")
        if all(getattr(settings, p) == getattr(current, p) for p in parts):
            return None
        return reload.Committed(
            lambda: self.recorder.reconfigure(
                events=settings.events,
                exclude_events=settings.exclude_events,
                custom_event_types=settings.custom_event_types,
                redact_keys=settings.redact_keys,
            )
        )

    @property
    def log_dir(self) -> Path:
        return self.config.log_dir

    def emit(
        self,
        event_type: str,
        *,
        actor: Actor | str | Mapping[str, Any],
        resource: Resource | str | Mapping[str, Any],
        action: Action | str | Mapping[str, Any] | None = None,
        result: str = "success",
        details: Mapping[str, Any] | None = None,
        authorization: Authorization | None = None,
        correlation_id: str | None = None,
        duration_ms: float | None = None,
        error: str | None = None,
        time_ns: int | None = None,
        durable: bool = False,
    ) -> None:
        """Record one event (see `Recorder.emit`)."""
        self.recorder.emit(
            event_type,
            actor=actor,
            resource=resource,
            action=action,
            result=result,
            details=details,
            authorization=authorization,
            correlation_id=correlation_id,
            duration_ms=duration_ms,
            error=error,
            time_ns=time_ns,
            durable=durable,
        )

    def record(self, event: AuditEvent, *, durable: bool = False) -> None:
        self.recorder.record(event, durable=durable)

    def audit(
        self, event: RequestEvent | None, ctx: RequestContext, auth: Sequence[AuthInfo]
    ) -> None:
        """One KIP-567 audit call, handed to every configured auditor. An auditor that
        fails is logged and counted (`auditor_failures`) and the others still get the
        call; the recorder's AuditUnavailableError (the failure policy's) is raised once
        they all have."""
        unavailable: AuditUnavailableError | None = None
        for auditor in self.auditors:
            try:
                auditor.audit(event, ctx, auth)
            except AuditUnavailableError as exc:
                unavailable = exc
            except Exception:
                self.auditor_failures += 1
                if self.auditor_failures & (self.auditor_failures - 1) == 0:  # 1, 2, 4, 8...
                    _log.exception(
                        "auditor %s failed on a %s call (%d failures so far)",
                        type(auditor).__name__, ctx.api_name, self.auditor_failures,
                    )  # fmt: skip
        if unavailable is not None:
            raise unavailable

    def flush(self, timeout: float | None = None) -> None:
        self.recorder.flush(timeout)

    def close(self) -> None:
        self._unregister_reload()
        errors: list[BaseException] = []
        for auditor in self.auditors:
            try:
                auditor.close()
            except Exception as exc:  # close every auditor, then report
                errors.append(exc)
        self.auditors = []
        try:
            self.recorder.close()
        finally:
            _forget(self)
        if errors:
            raise AuditUnavailableError(f"auditors failed to close: {errors}")

    def __enter__(self) -> AuditSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_current: AuditSession | None = None
_current_lock = threading.Lock()


def _forget(session: AuditSession) -> None:
    global _current
    with _current_lock:
        if _current is session:
            _current = None


def open(
    config: Config | str | os.PathLike[str] | None = None, *, source: str = "sdk"
) -> AuditSession:
    """Open an audit session from a Config, a YAML file path, or defaults (None)."""
    global _current
    if config is None:
        cfg = Config()
    elif isinstance(config, Config):
        cfg = config
    else:
        cfg = load_config(config)
    session = AuditSession(cfg, source=source)
    with _current_lock:
        _current = session
    return session


def current() -> AuditSession:
    session = _current
    if session is None:
        raise AuditUnavailableError(
            "no audit session is open: call kaudit.open(config) first (use it as a context manager)"
        )
    return session


def emit(event_type: str, **kwargs: Any) -> None:
    """Record one event through the session opened last (see `AuditSession.emit`)."""
    current().emit(event_type, **kwargs)
