"""`kaudit verify`, `kaudit prove` and `kaudit verify-proof`: is a log intact, and proofs
that an event is in it (or that it grew from a checkpoint) checkable with public keys.

Moved here as they were in the single-module command line; the verification logic
they hold is being moved into `kaudit.integrity` (and `kaudit.exporters` for S3), after
which these become thin like the other commands.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click
import orjson

from kaudit.cli.common import EXIT_FAILED, config_option, handle_errors, load, when_arg
from kaudit.errors import KauditError


def _log_dir(log: Path | None, config_path: str | None) -> Path:
    if log is not None:
        from kaudit.reading import resolve_log_dir

        resolved = resolve_log_dir(log)
        if resolved is None:
            raise click.BadParameter(f"{log} holds no audit log segments")
        return resolved
    return load(config_path).log_dir


@click.command()
@click.argument("event_id", required=False)
@config_option
@click.option(
    "--log",
    help="The local log (or data) directory, or a kafka://[user[:password]@]host:port/topic "
    "Kafka log (default: the configured log).",
)
@click.option(
    "--consistency-from",
    "old_size",
    type=click.IntRange(min=1),
    help="Instead: prove the log grew from its checkpoint of this size.",
)
@click.option(
    "--stream",
    help="A Kafka log's writer stream, for --consistency-from when the topic has several.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the proof here instead of stdout.",
)
@handle_errors
def prove(
    event_id: str | None,
    config_path: str | None,
    log: str | None,
    old_size: int | None,
    stream: str | None,
    out: Path | None,
) -> None:
    """Print an inclusion proof of EVENT_ID against the latest signed checkpoint (or a
    consistency proof between two checkpoints), checkable with the public key alone.

    For a Kafka log (--log kafka://…, or a configured Kafka log) the proof is made in
    the tree of the event's writer stream against its checkpoints on `<topic>.checkpoints`.
    """
    from kaudit.config.model import KafkaConnection, KafkaLog
    from kaudit.integrity.proof import prove_consistency, prove_inclusion

    if (event_id is None) == (old_size is None):
        raise click.UsageError("give an EVENT_ID or --consistency-from SIZE (one of them)")
    configured = load(config_path).audit.log if log is None and config_path else None
    kafka_log = configured if isinstance(configured, KafkaLog) else None
    if (log is not None and log.startswith("kafka://")) or kafka_log is not None:
        from kaudit.integrity.kafka_checkpoints import (
            prove_kafka_consistency,
            prove_kafka_inclusion,
        )
        from kaudit.reading import kafka_source

        connection: KafkaConnection
        if kafka_log is not None:
            connection, topic = kafka_log, kafka_log.topic
        else:
            assert log is not None
            try:
                connection, topic = kafka_source(log)
            except KauditError as exc:
                raise click.UsageError(str(exc)) from None
        proof = (
            prove_kafka_inclusion(connection, topic, event_id)
            if event_id is not None
            else prove_kafka_consistency(connection, topic, old_size or 0, stream)
        )
    else:
        if stream is not None:
            raise click.UsageError("--stream applies to a Kafka log")
        log_dir = _log_dir(Path(log) if log is not None else None, config_path)
        proof = (
            prove_inclusion(log_dir, event_id)
            if event_id is not None
            else prove_consistency(log_dir, old_size or 0)
        )
    data = orjson.dumps(proof, option=orjson.OPT_INDENT_2) + b"\n"
    if out is not None:
        out.write_bytes(data)
    else:
        sys.stdout.buffer.write(data)


@click.command()
@click.argument("source")
@click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="A .pub file that checkpoints must be signed with (repeat for rotated keys).",
)
@click.option(
    "--hmac-key-env",
    help="Environment variable holding the HMAC key: also check "
    "every event's signature and the chain.",
)
@click.option("--since", help="Report coverage from this time (ISO 8601, or 7d, 24h…).")
@click.option("--until", help="Report coverage to this time (ISO 8601, or 1h…).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--anchor",
    "anchors",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="A checkpoint file kept apart from the log (integrity.checkpoints."
    "anchor_path): catches a log cut back together with its own checkpoints.",
)
@config_option
@click.option(
    "--endpoint-url",
    help="For s3://: another endpoint speaking the S3 API (default: the configured s3 "
    "destination's, else $AWS_ENDPOINT_URL, else AWS).",
)
@handle_errors
def verify(
    source: str,
    public_keys: tuple[str, ...],
    hmac_key_env: str | None,
    since: str | None,
    until: str | None,
    as_json: bool,
    anchors: tuple[str, ...],
    config_path: str | None,
    endpoint_url: str | None,
) -> None:
    """Check an audit log for tampering: exit 0 intact, 1 not, 2 usage error.

    SOURCE is a local log (or data) directory, a JSON Lines file (an export), a
    kafka://[user[:password]@]host:port/topic Kafka log (each writer stream against its
    checkpoints on the topic's companion `<topic>.checkpoints`) or an
    s3://bucket/prefix S3 destination's copy (against the checkpoints uploaded beside
    it; endpoint and credentials from the s3 destination in -c, else --endpoint-url and
    the environment). With --public-key the signed Merkle checkpoints are checked
    (modified, missing, inserted, reordered and truncated events, bad or unknown
    signatures); with --hmac-key-env also each event's HMAC and the chain.
    """
    import os

    from kaudit.integrity.keys import load_verifiers
    from kaudit.integrity.verify import verify_jsonl, verify_log
    from kaudit.reading import open_source

    if not public_keys and not hmac_key_env:
        raise click.UsageError("give --public-key (checkpoints) and/or --hmac-key-env (chain)")
    ring = load_verifiers([Path(k) for k in public_keys]) if public_keys else None
    hmac_key = None
    if hmac_key_env:
        value = os.environ.get(hmac_key_env)
        if not value:
            raise click.UsageError(f"the environment variable {hmac_key_env} is not set")
        hmac_key = value.encode()
    if source.startswith("s3://"):
        if anchors:
            raise click.UsageError("--anchor applies to a log directory, not an S3 prefix")
        _verify_s3(
            source,
            config_path,
            endpoint_url,
            ring,
            hmac_key,
            when_arg(since),
            when_arg(until),
            as_json,
        )
        return
    if endpoint_url:
        raise click.UsageError("--endpoint-url applies to an s3:// SOURCE")
    try:
        kind, path = open_source(source)
    except KauditError as exc:
        raise click.UsageError(str(exc)) from None
    if kind not in ("dir", "file", "kafka") or (path is None and kind != "kafka"):
        raise click.UsageError(
            f"cannot verify {source!r}: give a local log directory, a JSON Lines file, "
            "a kafka:// topic or an s3:// prefix"
        )
    start, end = when_arg(since), when_arg(until)
    if kind == "kafka":
        _verify_kafka(source, ring, hmac_key, start, end, _progress, as_json, anchors)
        return
    assert path is not None
    if kind == "dir":
        report = verify_log(
            path,
            verifiers=ring,
            hmac_key=hmac_key,
            since=start,
            until=end,
            progress=_progress,
            anchors=[Path(a) for a in anchors],
        )
    else:
        if anchors:
            raise click.UsageError("--anchor applies to a log directory, not a JSONL file")
        report = verify_jsonl(
            path, verifiers=ring, hmac_key=hmac_key, since=start, until=end, progress=_progress
        )
    _show_report(report, as_json)


def _progress(events: int) -> None:
    if sys.stderr.isatty():
        click.echo(f"\rverifying… {events:,} events", nl=False, err=True)


def _show_report(report: Any, as_json: bool) -> None:
    """Print one verification report; exit 1 when the log is not intact."""
    if report.events and sys.stderr.isatty():
        click.echo(err=True)  # end the progress line
    if as_json:
        click.echo(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        _print_report(report)
    if not report.ok:
        sys.exit(EXIT_FAILED)


def _verify_s3(
    source: str,
    config_path: str | None,
    endpoint_url: str | None,
    ring: Any,
    hmac_key: bytes | None,
    start: datetime | None,
    end: datetime | None,
    as_json: bool,
) -> None:
    """`kaudit verify s3://bucket/prefix`: the S3 destination's copy of the log against
    the checkpoints uploaded beside it."""
    import os

    from kaudit.config.model import AwsAccess, S3Destination
    from kaudit.exporters.s3_verify import parse_s3_url, verify_s3

    bucket, prefix = parse_s3_url(source)
    batch_interval = S3Destination.model_fields["batch_interval_secs"].default
    if config_path:
        config = load(config_path)
        candidates = [
            d
            for d in config.audit.all_destinations
            if isinstance(d, S3Destination) and d.bucket == bucket
        ]
        if not candidates:
            raise click.UsageError(f"{config_path} has no s3 destination for bucket {bucket}")
        destination = next(
            (d for d in candidates if d.prefix.rstrip("/") == prefix.rstrip("/")), candidates[0]
        )
        access = AwsAccess.model_validate(
            destination.model_dump(include=set(AwsAccess.model_fields))
        )
        if endpoint_url:
            access = access.model_copy(update={"endpoint_url": endpoint_url})
        prefix = prefix or destination.prefix
        batch_interval = destination.batch_interval_secs
    else:
        access = AwsAccess(endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None)
    report = verify_s3(
        access,
        bucket,
        prefix,
        verifiers=ring,
        hmac_key=hmac_key,
        since=start,
        until=end,
        progress=_progress,
        # A checkpoint is uploaded after its events, which wait up to a batch interval to
        # be sent, and the next upload is up to one more away.
        heartbeat_grace=timedelta(seconds=10 + 2 * batch_interval),
    )
    _show_report(report, as_json)


def _verify_kafka(
    source: str,
    ring: Any,
    hmac_key: bytes | None,
    start: datetime | None,
    end: datetime | None,
    progress: Any,
    as_json: bool,
    anchors: tuple[str, ...],
) -> None:
    """`kaudit verify kafka://…`: each writer stream against its checkpoints on the
    companion topic; exit 1 when any stream is not intact."""
    from kaudit.integrity.kafka_checkpoints import verify_kafka
    from kaudit.reading import kafka_source

    if anchors:
        raise click.UsageError("--anchor applies to a log directory, not a Kafka topic")
    try:
        connection, topic = kafka_source(source)
    except KauditError as exc:
        raise click.UsageError(str(exc)) from None
    label = source.split("://", 1)[1].rpartition("@")[2]
    reports = verify_kafka(
        connection,
        topic,
        verifiers=ring,
        hmac_key=hmac_key,
        since=start,
        until=end,
        progress=progress,
        label=f"kafka://{label}",
    )
    ok = all(r.ok for r in reports)
    if as_json:
        body = {"source": f"kafka://{label}", "ok": ok, "streams": [r.to_dict() for r in reports]}
        click.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
    else:
        for report in reports:
            _print_report(report)
    if not ok:
        sys.exit(EXIT_FAILED)


def _print_report(report: Any) -> None:
    status = "INTACT" if report.ok else "TAMPERED"
    click.echo(
        f"{report.source}: {status} — {report.events:,} events "
        f"(sequence {report.first_sequence}–{report.last_sequence}), "
        f"{report.checkpoints_checked} checkpoints checked, "
        f"checks: {', '.join(report.checks)}"
    )
    covered = report.covered.to_dict()
    requested = report.requested.to_dict()
    click.echo(f"  requested: {requested['start'] or '(start)'} to {requested['end'] or '(now)'}")
    click.echo(
        f"  covered:   events {covered['first_event']} to {covered['last_event']}, "
        f"checkpoints {covered['first_checkpoint']} to {covered['last_checkpoint']}"
    )
    for finding in report.findings:
        where = ""
        if finding.sequence_from is not None:
            where = f" [seq {finding.sequence_from}"
            if finding.sequence_to not in (None, finding.sequence_from):
                where += f"–{finding.sequence_to}"
            where += "]"
        click.echo(f"  {finding.kind}{where}: {finding.message}")
    for note in report.notes:
        click.echo(f"  note: {note}")


@click.command("verify-proof")
@click.argument("proof_file", type=click.File("rb"))
@click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    required=True,
    type=click.Path(dir_okay=False),
    help="A .pub file (repeat for rotated keys).",
)
@handle_errors
def verify_proof_command(proof_file: Any, public_keys: tuple[str, ...]) -> None:
    """Check a proof from `kaudit prove` with public keys only (exit 0 holds, 1 not)."""
    from kaudit.integrity.keys import load_verifiers
    from kaudit.integrity.proof import ProofError, verify_proof

    ring = load_verifiers([Path(k) for k in public_keys])
    try:
        click.echo(f"OK: {verify_proof(proof_file.read(), ring)}")
    except ProofError as exc:
        click.echo(f"FAILED: {exc}")
        sys.exit(EXIT_FAILED)
