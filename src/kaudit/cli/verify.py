"""`kaudit verify`, `kaudit prove` and `kaudit verify-proof`: is a log intact, and proofs
that an event is in it (or that it grew from a checkpoint) checkable with public keys.

Thin over `kaudit.reports.verify` (verify_source, prove_source) and
`kaudit.integrity.proof` (verify_proof): these commands parse options and print.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import orjson

from kaudit.cli.common import EXIT_FAILED, EXIT_USAGE, config_option, fail, handle_errors, when_arg


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
    from kaudit.reports.verify import prove_source

    proof = prove_source(
        log, event_id=event_id, consistency_from=old_size, stream=stream, config_path=config_path
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
    the environment), or a file destination's folder of Parquet files (against the
    checkpoints copied beside them). With --public-key the signed Merkle checkpoints are checked
    (modified, missing, inserted, reordered and truncated events, bad or unknown
    signatures); with --hmac-key-env also each event's HMAC and the chain.
    """
    from kaudit.reports.verify import report_json, report_text, verification_keys, verify_source

    ring, hmac_key = verification_keys(public_keys, hmac_key_env)
    progress = _Progress()
    result = verify_source(
        source,
        verifiers=ring,
        hmac_key=hmac_key,
        since=when_arg(since),
        until=when_arg(until),
        anchors=anchors,
        config_path=config_path,
        endpoint_url=endpoint_url,
        progress=progress,
    )
    progress.end()
    text = report_json(result) if as_json else report_text(result)
    if text:  # a Kafka topic with no writer stream has no report lines
        click.echo(text)
    if not result.ok:
        sys.exit(EXIT_FAILED)


class _Progress:
    """The count of events read so far, on one line of a terminal's stderr."""

    def __init__(self) -> None:
        self.shown = False

    def __call__(self, events: int) -> None:
        if sys.stderr.isatty():
            click.echo(f"\rverifying… {events:,} events", nl=False, err=True)
            self.shown = True

    def end(self) -> None:
        if self.shown:
            click.echo(err=True)


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
    """Check a proof from `kaudit prove` with public keys only (exit 0 holds, 1 not, 2
    not a proof)."""
    from kaudit.integrity.keys import load_verifiers
    from kaudit.integrity.proof import NotAProofError, ProofError, verify_proof

    ring = load_verifiers([Path(k) for k in public_keys])
    try:
        click.echo(f"OK: {verify_proof(proof_file.read(), ring)}")
    except NotAProofError as exc:
        fail(f"{proof_file.name}: {exc}", EXIT_USAGE)
    except ProofError as exc:
        click.echo(f"FAILED: {exc}")
        sys.exit(EXIT_FAILED)
