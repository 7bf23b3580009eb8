"""`kaudit verify` and `kaudit prove` as library calls: a SOURCE and options in, a report
or a proof out, so the command line only parses options and prints.

`verify_source` tells the sources apart and hands each to its verifier: a local log (or
data) directory and a JSON Lines export to kaudit.integrity.verify, a `kafka://` log to
its per-stream verifier, an `s3://` copy or a folder of Parquet files to
exporters/export_verify.py (which is why this lives above the exporters). `prove_source`
makes an inclusion or a consistency proof from a local or a Kafka log. Usage errors are
`UsageError`s naming the option at fault, as the command line spells it.

The verifiers of Kafka and S3 are imported when asked for: they load the Kafka and AWS
clients, which verifying a local log does not need.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from kaudit.config import Config, load_config
from kaudit.config.model import KafkaConnection, KafkaLog
from kaudit.errors import KauditError, UsageError
from kaudit.integrity.keys import KeyRing, load_verifiers
from kaudit.integrity.proof import prove_consistency, prove_inclusion
from kaudit.integrity.verify import VerifyReport, VerifyUsageError, verify_jsonl, verify_log
from kaudit.reading import kafka_source, open_source, resolve_log_dir

__all__ = [
    "StreamReports",
    "prove_source",
    "report_json",
    "report_text",
    "verification_keys",
    "verify_source",
]


@dataclass(frozen=True, slots=True)
class StreamReports:
    """The reports of a Kafka log, one per writer stream; `ok` when all are."""

    source: str
    reports: tuple[VerifyReport, ...]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.reports)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "ok": self.ok,
            "streams": [r.to_dict() for r in self.reports],
        }


def verification_keys(
    public_keys: Sequence[str | Path], hmac_key_env: str | None
) -> tuple[KeyRing | None, bytes | None]:
    """The keys to verify with: the public keys of the checkpoint signer (.pub files)
    and the HMAC key from the environment variable `hmac_key_env`. At least one is
    needed; a named variable must be set."""
    if not public_keys and not hmac_key_env:
        raise VerifyUsageError("give --public-key (checkpoints) and/or --hmac-key-env (chain)")
    ring = load_verifiers([Path(k) for k in public_keys]) if public_keys else None
    hmac_key = None
    if hmac_key_env:
        value = os.environ.get(hmac_key_env)
        if not value:
            raise VerifyUsageError(f"the environment variable {hmac_key_env} is not set")
        hmac_key = value.encode()
    return ring, hmac_key


def verify_source(
    source: str,
    *,
    verifiers: KeyRing | None,
    hmac_key: bytes | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    anchors: Sequence[str | Path] = (),
    config_path: str | os.PathLike[str] | None = None,
    endpoint_url: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport | StreamReports:
    """Verify SOURCE: a local log (or data) directory, a JSON Lines file (an export), a
    kafka://[user[:password]@]host:port/topic Kafka log (each writer stream against its
    checkpoints on the companion topic: a `StreamReports`), an s3://bucket/prefix S3
    destination's copy (against the checkpoints uploaded beside it; endpoint and
    credentials from the s3 destination in `config_path`, else `endpoint_url` and the
    environment) or a `file` destination's folder of Parquet files (against the
    checkpoints copied beside them).

    `anchors` (checkpoint files kept apart from the log) apply to a log directory,
    `config_path` and `endpoint_url` to S3. `progress` is called with the number of
    events read so far. Raises VerifyUsageError for a SOURCE or an option that does not
    fit.
    """
    if source.startswith("s3://"):
        if anchors:
            raise VerifyUsageError("--anchor applies to a log directory, not an S3 prefix")
        from kaudit.exporters.export_verify import verify_s3_source

        return verify_s3_source(
            source,
            verifiers=verifiers,
            hmac_key=hmac_key,
            since=since,
            until=until,
            progress=progress,
            config_path=config_path,
            endpoint_url=endpoint_url,
        )
    if endpoint_url:
        raise VerifyUsageError("--endpoint-url applies to an s3:// SOURCE")
    folder = Path(source).expanduser()
    if "://" not in source and folder.is_dir() and resolve_log_dir(folder) is None:
        from kaudit.exporters.export_verify import is_parquet_folder, verify_folder_source

        if is_parquet_folder(folder):
            if anchors:
                raise VerifyUsageError("--anchor applies to a log directory, not a Parquet export")
            return verify_folder_source(
                folder,
                verifiers=verifiers,
                hmac_key=hmac_key,
                since=since,
                until=until,
                progress=progress,
                config_path=config_path,
            )
    try:
        kind, path = open_source(source)
    except KauditError as exc:
        raise VerifyUsageError(str(exc)) from None
    if kind not in ("dir", "file", "kafka") or (path is None and kind != "kafka"):
        raise VerifyUsageError(
            f"cannot verify {source!r}: give a local log directory, a JSON Lines file, "
            "a kafka:// topic or an s3:// prefix"
        )
    if kind == "kafka":
        return _verify_kafka(source, verifiers, hmac_key, since, until, progress, anchors)
    assert path is not None
    if kind == "dir":
        return verify_log(
            path,
            verifiers=verifiers,
            hmac_key=hmac_key,
            since=since,
            until=until,
            progress=progress,
            anchors=[Path(a) for a in anchors],
        )
    if anchors:
        raise VerifyUsageError("--anchor applies to a log directory, not a JSONL file")
    return verify_jsonl(
        path, verifiers=verifiers, hmac_key=hmac_key, since=since, until=until, progress=progress
    )


def _verify_kafka(
    source: str,
    verifiers: KeyRing | None,
    hmac_key: bytes | None,
    since: datetime | None,
    until: datetime | None,
    progress: Callable[[int], None] | None,
    anchors: Sequence[str | Path],
) -> StreamReports:
    from kaudit.integrity.verify.kafka import verify_kafka

    if anchors:
        raise VerifyUsageError("--anchor applies to a log directory, not a Kafka topic")
    try:
        connection, topic = kafka_source(source)
    except KauditError as exc:
        raise VerifyUsageError(str(exc)) from None
    label = f"kafka://{source.split('://', 1)[1].rpartition('@')[2]}"  # no credentials
    reports = verify_kafka(
        connection,
        topic,
        verifiers=verifiers,
        hmac_key=hmac_key,
        since=since,
        until=until,
        progress=progress,
        label=label,
    )
    return StreamReports(label, tuple(reports))


def report_json(result: VerifyReport | StreamReports) -> str:
    """The result as indented JSON (`kaudit verify --json`)."""
    return orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2).decode()


def report_text(result: VerifyReport | StreamReports) -> str:
    """The result for people: per report a status line, the time range asked for and
    the one covered, each finding and each note (one report per Kafka stream)."""
    reports = result.reports if isinstance(result, StreamReports) else (result,)
    return "\n".join(line for report in reports for line in _report_lines(report))


def _report_lines(report: VerifyReport) -> list[str]:
    status = "INTACT" if report.ok else "TAMPERED"
    covered = report.covered.to_dict()
    requested = report.requested.to_dict()
    lines = [
        f"{report.source}: {status} — {report.events:,} "
        f"{'event' if report.events == 1 else 'events'} "
        f"(sequence {report.first_sequence}–{report.last_sequence}), "
        f"{report.checkpoints_checked} "
        f"{'checkpoint' if report.checkpoints_checked == 1 else 'checkpoints'} checked, "
        f"checks: {', '.join(report.checks)}",
        f"  requested: {requested['start'] or '(start)'} to {requested['end'] or '(now)'}",
        f"  covered:   events {covered['first_event']} to {covered['last_event']}, "
        f"checkpoints {covered['first_checkpoint']} to {covered['last_checkpoint']}",
    ]
    for finding in report.findings:
        where = ""
        if finding.sequence_from is not None:
            where = f" [seq {finding.sequence_from}"
            if finding.sequence_to not in (None, finding.sequence_from):
                where += f"–{finding.sequence_to}"
            where += "]"
        lines.append(f"  {finding.kind}{where}: {finding.message}")
    lines.extend(f"  note: {note}" for note in report.notes)
    return lines


def prove_source(
    log: str | None = None,
    *,
    event_id: str | None = None,
    consistency_from: int | None = None,
    stream: str | None = None,
    config_path: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """An inclusion proof of `event_id` against the latest signed checkpoint, or (with
    `consistency_from`, one of the two) a consistency proof from the checkpoint of that
    size to the latest one: a JSON document `kaudit verify-proof` checks with the public
    key alone.

    `log` is a local log (or data) directory or a kafka://[user[:password]@]host:port/topic
    Kafka log; without it, the log configured in `config_path` (the default data
    directory's log without either). A Kafka log's proof is made in the tree of the
    event's writer stream against its checkpoints on `<topic>.checkpoints`; `stream`
    names the stream for a consistency proof when the topic has several.
    """
    if (event_id is None) == (consistency_from is None):
        raise UsageError("give an EVENT_ID or --consistency-from SIZE (one of them)")
    configured = load_config(config_path).audit.log if log is None and config_path else None
    kafka_log = configured if isinstance(configured, KafkaLog) else None
    if (log is not None and log.startswith("kafka://")) or kafka_log is not None:
        from kaudit.integrity.kafka_proof import prove_kafka_consistency, prove_kafka_inclusion

        connection: KafkaConnection
        if kafka_log is not None:
            connection, topic = kafka_log, kafka_log.topic
        else:
            assert log is not None
            try:
                connection, topic = kafka_source(log)
            except KauditError as exc:
                raise UsageError(str(exc)) from None
        if event_id is not None:
            return prove_kafka_inclusion(connection, topic, event_id)
        return prove_kafka_consistency(connection, topic, consistency_from or 0, stream)
    if stream is not None:
        raise UsageError("--stream applies to a Kafka log")
    log_dir = _log_dir(Path(log) if log is not None else None, config_path)
    if event_id is not None:
        return prove_inclusion(log_dir, event_id)
    return prove_consistency(log_dir, consistency_from or 0)


def _log_dir(log: Path | None, config_path: str | os.PathLike[str] | None) -> Path:
    if log is not None:
        resolved = resolve_log_dir(log)
        if resolved is None:
            raise UsageError(f"{log} holds no audit log segments")
        return resolved
    return (load_config(config_path) if config_path else Config()).log_dir
