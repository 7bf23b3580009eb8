"""The `kaudit` command line.

Exit codes: 0 success; 1 a runtime failure (log unwritable, destination down…) or, for
`check-config`-like checks, a negative answer; 2 bad usage or an invalid configuration.
Errors are one clear message on stderr, never a traceback.
"""

from __future__ import annotations

import collections
import fnmatch
import functools
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar

import click
import orjson

from kaudit.config import Config, load_config
from kaudit.config.model import KafkaLog
from kaudit.dev.cli import local_kafka
from kaudit.errors import ConfigError, KauditError, UsageError
from kaudit.events.codec import decode
from kaudit.events.formats import FORMATS, render_bytes

P = ParamSpec("P")
R = TypeVar("R")

_EXIT_FAILED = 1
_EXIT_USAGE = 2


def _fail(message: str, code: int = _EXIT_FAILED) -> NoReturn:
    click.echo(f"kaudit: error: {message}", err=True)
    sys.exit(code)


def _handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn kaudit's errors into a message and an exit code instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            click.echo(f"{exc.source}: invalid configuration", err=True)
            for issue in exc.issues:
                click.echo(f"  {issue}", err=True)
            sys.exit(_EXIT_USAGE)
        except UsageError as exc:
            _fail(str(exc), _EXIT_USAGE)
        except KauditError as exc:
            _fail(str(exc))
        except BrokenPipeError:
            sys.stderr.close()  # the reader (head, jq) went away: not an error
            sys.exit(0)

    return wrapper


def _load(config_path: str | None) -> Config:
    return load_config(config_path) if config_path else Config()


_config_option = click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="kaudit YAML configuration file (default: built-in defaults).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kaudit")
def main() -> None:
    """kaudit: a tamper-evident audit trail for Apache Kafka."""


main.add_command(local_kafka)


@main.command("check-config")
@click.argument("file", type=click.Path(dir_okay=False))
@_handle_errors
def check_config(file: str) -> None:
    """Validate a configuration file: exit 0 when valid, 2 listing every error when not."""
    config = load_config(file)
    destinations = config.audit.all_destinations
    click.echo(f"{file}: valid")
    click.echo(
        f"  data_dir: {config.data_dir} (log: {config.audit.log.type}, "
        f"failure_policy: {config.audit.failure_policy})"
    )
    for d in destinations:
        click.echo(f"  destination: {d.display_name} (format {d.format})")


@main.command()
@_config_option
@click.option("--count", "-n", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option(
    "--spread",
    default="0s",
    show_default=True,
    help="Spread event times over this window ending now (e.g. 7d, 24h, 30m, 0s).",
)
@_handle_errors
def generate(config_path: str | None, count: int, seed: int, spread: str) -> None:
    """Write COUNT realistic synthetic events through the recorder."""
    from kaudit.generate import generate as run_generate
    from kaudit.session import describe_log
    from kaudit.session import open as open_session

    spread_s = _parse_duration(spread)
    config = _load(config_path)
    started = time.perf_counter()
    with (
        open_session(config) as session,
        click.progressbar(length=count, label="recording", file=sys.stderr) as bar,
    ):
        run_generate(session, count, seed=seed, spread_seconds=spread_s, progress=bar.update)
        session.flush()
        dropped = session.recorder.metrics()["kaudit_events_dropped_total"]
    elapsed = time.perf_counter() - started
    click.echo(
        f"recorded {count} events in {elapsed:.2f}s into {describe_log(config)}"
        + (f" ({dropped} dropped)" if dropped else ""),
        err=True,
    )


def _parse_duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    text = text.strip()
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a duration; use a number with s, m, h, d or w (e.g. 7d)"
        ) from None


def _selected(lines: Iterator[bytes], type_glob: str | None) -> Iterator[bytes]:
    for line in lines:
        if type_glob is not None and line:
            try:
                event_type = orjson.loads(line).get("event_type", "")
            except orjson.JSONDecodeError:
                continue
            if not fnmatch.fnmatchcase(str(event_type), type_glob):
                continue
        yield line


@main.command()
@click.argument("source", required=False)
@_config_option
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events as they come.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="native", show_default=True)
@click.option("--type", "type_glob", help="Only event types matching this glob (e.g. 'acl.*').")
@click.option("--lines", "-n", type=click.IntRange(min=0), help="Only the last N events.")
@_handle_errors
def tail(
    source: str | None,
    config_path: str | None,
    follow: bool,
    fmt: str,
    type_glob: str | None,
    lines: int | None,
) -> None:
    """Print audit events as JSON Lines (jq-friendly).

    SOURCE is a log directory, a data directory, a JSON Lines file (.gz too), - for
    stdin, or kafka://[user[:password]@]host:port/topic[?mechanism=M&protocol=P] (events
    repeated by at-least-once delivery are shown once); without it, the log of the
    configuration given with -c (or ./kaudit-data).
    """
    from kaudit.reading import iter_lines

    config = _load(config_path) if config_path or source is None else None
    kafka_log = (
        config.audit.log if config is not None and isinstance(config.audit.log, KafkaLog) else None
    )
    if source is None:
        assert config is not None
        source = (
            f"kafka://{','.join(kafka_log.bootstrap_servers)}/{kafka_log.topic}"
            if kafka_log is not None
            else str(config.log_dir)
        )
    stream = _selected(iter_lines(source, follow=follow, kafka_base=kafka_log), type_glob)
    if lines is not None:
        stream = _last(stream, lines)
    out = sys.stdout.buffer
    for line in stream:
        if not line:  # caught up while following: show what we have
            out.flush()
            continue
        if fmt == "native":
            out.write(line if line.endswith(b"\n") else line + b"\n")
        else:
            out.write(render_bytes(decode(line), fmt) + b"\n")
    out.flush()


def _last(stream: Iterator[bytes], n: int) -> Iterator[bytes]:
    """The last `n` lines of the backlog (up to the first catch-up marker), then the rest."""
    backlog: collections.deque[bytes] = collections.deque(maxlen=n)
    for line in stream:
        if not line:
            yield from backlog
            backlog.clear()
            yield line
            yield from stream
            return
        backlog.append(line)
    yield from backlog


@main.command()
@click.argument("event_type")
@_config_option
@click.option("--actor", required=True, help="Who: a principal or user id.")
@click.option("--resource", required=True, help="What: TYPE:ID, e.g. backup:nightly-42.")
@click.option(
    "--result",
    type=click.Choice(["success", "failure", "denied"]),
    default="success",
    show_default=True,
)
@click.option("--operation", help="The action's operation (default: from the event type).")
@click.option("--details", help="Details as a JSON object.")
@_handle_errors
def emit(
    event_type: str,
    config_path: str | None,
    actor: str,
    resource: str,
    result: str,
    operation: str | None,
    details: str | None,
) -> None:
    """Record one event (for shell scripts, e.g. a backup job)."""
    from kaudit.session import open as open_session

    parsed: Any = None
    if details:
        try:
            parsed = orjson.loads(details)
        except orjson.JSONDecodeError as exc:
            raise click.BadParameter(f"--details is not JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise click.BadParameter("--details must be a JSON object")
    try:
        with open_session(_load(config_path), source="cli") as session:
            session.emit(
                event_type,
                actor=actor,
                resource=resource,
                result=result,
                action=operation,
                details=parsed,
                durable=True,
            )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _run_exporters(config: Config, once: bool) -> dict[str, int]:
    from kaudit.exporters import drain_all, runners_for

    if once:
        return drain_all(config)
    runners = runners_for(config)
    if not runners:
        return {}
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    threads = [
        threading.Thread(target=r.run, args=(stop,), name=f"exporter-{r.name}") for r in runners
    ]
    for t in threads:
        t.start()
    click.echo(
        f"kaudit: exporting to {', '.join(r.name for r in runners)} (Ctrl-C to stop)", err=True
    )
    try:
        if config.gateway is not None:
            _serve_gateway(config)  # returns on SIGINT/SIGTERM
            stop.set()
        while not stop.wait(0.5):
            pass
    finally:
        stop.set()
        for t in threads:
            t.join()
        for r in runners:
            r.close()
    return {r.name: r.metrics.sent for r in runners}


def _serve_gateway(config: Config) -> None:
    from kaudit.gateway import Gateway, run_gateway
    from kaudit.session import describe_log

    def ready(gw: Gateway) -> None:
        click.echo(
            f"kaudit gateway: listening on {gw.config.listen} for "
            f"{','.join(gw.config.upstream)}, brokers from port "
            f"{gw.brokers.broker_ports_start}; recording to {describe_log(config)} "
            "(Ctrl-C to stop)",
            err=True,
        )

    run_gateway(config, ready=ready)


@main.command()
@_config_option
@click.option("--once", is_flag=True, help="Deliver what is in the log now, then exit.")
@_handle_errors
def run(config_path: str | None, once: bool) -> None:
    """Run what the configuration asks for: the gateway (`gateway:`) and the exporters
    (each destination with its own cursor); and apply audit.retention: when starting and
    hourly, or once at the end with --once."""
    config = _load(config_path)
    if not once:
        _retention_in_background(config)
    counts = _run_exporters(config, once)
    if not counts:
        if config.gateway is not None and not once:
            _serve_gateway(config)
            return
        _fail("no destination configured (audit.destination or audit.destinations)", _EXIT_USAGE)
    for name, n in counts.items():
        click.echo(f"{name}: {n} events", err=True)
    if once:
        _retention_once(config)


@main.command()
@click.option("--upstream", help="The cluster's bootstrap servers, HOST:PORT[,HOST:PORT...].")
@click.option("--listen", help="Where clients connect, HOST:PORT (brokers follow on PORT+1+id).")
@_config_option
@_handle_errors
def gateway(upstream: str | None, listen: str | None, config_path: str | None) -> None:
    """Run the audit gateway: a Kafka proxy that audits every request (KIP-567)."""
    from kaudit.config.load import with_overrides

    config = _load(config_path)
    overrides = {key: value for key, value in (("upstream", upstream), ("listen", listen)) if value}
    if config.gateway is None and not upstream:
        _fail("no upstream: pass --upstream HOST:PORT or set gateway.upstream", _EXIT_USAGE)
    if overrides:
        config = with_overrides(config, "gateway", overrides, "command line")
    _serve_gateway(config)


@main.group()
def exporters() -> None:
    """Inspect exporters."""


@exporters.command("status")
@_config_option
@_handle_errors
def exporters_status(config_path: str | None) -> None:
    """Each destination's cursor and how many events it is behind (JSON)."""
    from kaudit.exporters import runners_for

    config = _load(config_path)
    rows = []
    for r in runners_for(config):
        rows.append(
            {
                "destination": r.name,
                "format": r.fmt,
                "cursor": r.feed.position(),
                "last_sequence": r.feed.last_sequence(),
                "lag_events": r.lag(),
                "metrics": _read_metrics(r.metrics_path),
            }
        )
        r.close()
    click.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())


def _read_metrics(path: Path | None) -> Any:
    """What the last `kaudit run` wrote about a destination (sent, failed, retried, ...)."""
    if path is None:
        return None
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None


@main.group()
def keys() -> None:
    """Manage the Ed25519 keys that sign Merkle checkpoints."""


@keys.command("generate")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Writes OUT.key (private, mode 0600) and OUT.pub (public, share it).",
)
@click.option("--name", help="The key's name in signed checkpoints (default: kaudit/<host>).")
@click.option("--force", is_flag=True, help="Replace existing key files.")
@_handle_errors
def keys_generate(out: Path, name: str | None, force: bool) -> None:
    """Generate a signing key pair for integrity.checkpoints."""
    import socket

    from kaudit.integrity.keys import generate as generate_keys

    files = generate_keys(out, name or f"kaudit/{socket.gethostname()}", force=force)
    click.echo(f"private key: {files.private} (keep it secret; integrity.checkpoints.key_file)")
    click.echo(
        f"public key:  {files.public} (give it to verifiers: kaudit verify "
        f"--public-key {files.public})"
    )
    click.echo(f"verifier:    {files.verifier.text()}")


def _log_dir(log: Path | None, config_path: str | None) -> Path:
    if log is not None:
        from kaudit.reading import resolve_log_dir

        resolved = resolve_log_dir(log)
        if resolved is None:
            raise click.BadParameter(f"{log} holds no audit log segments")
        return resolved
    return _load(config_path).log_dir


@main.command()
@click.argument("event_id", required=False)
@_config_option
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
@_handle_errors
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
    configured = _load(config_path).audit.log if log is None and config_path else None
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


def _parse_when(text: str | None) -> datetime | None:
    """An ISO 8601 time, or a duration back from now (7d, 24h, 30m)."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return when if when.tzinfo else when.replace(tzinfo=UTC)
    except ValueError:
        return datetime.now(UTC) - timedelta(seconds=_parse_duration(text))


@main.command()
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
@_config_option
@click.option(
    "--endpoint-url",
    help="For s3://: another endpoint speaking the S3 API (default: the configured s3 "
    "destination's, else $AWS_ENDPOINT_URL, else AWS).",
)
@_handle_errors
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
            _parse_when(since),
            _parse_when(until),
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
    start, end = _parse_when(since), _parse_when(until)
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
        sys.exit(_EXIT_FAILED)


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
        config = _load(config_path)
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
        sys.exit(_EXIT_FAILED)


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


@main.command("verify-proof")
@click.argument("proof_file", type=click.File("rb"))
@click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    required=True,
    type=click.Path(dir_okay=False),
    help="A .pub file (repeat for rotated keys).",
)
@_handle_errors
def verify_proof_command(proof_file: Any, public_keys: tuple[str, ...]) -> None:
    """Check a proof from `kaudit prove` with public keys only (exit 0 holds, 1 not)."""
    from kaudit.integrity.keys import load_verifiers
    from kaudit.integrity.proof import ProofError, verify_proof

    ring = load_verifiers([Path(k) for k in public_keys])
    try:
        click.echo(f"OK: {verify_proof(proof_file.read(), ring)}")
    except ProofError as exc:
        click.echo(f"FAILED: {exc}")
        sys.exit(_EXIT_FAILED)


@main.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("kaudit-demo"),
    show_default=True,
)
@click.option("--count", type=click.IntRange(min=1), default=5000, show_default=True)
@click.option(
    "--kafka/--no-kafka",
    default=True,
    show_default=True,
    help="Also record into a local Apache Kafka's __oprtr_audit_log topic.",
)
@_handle_errors
def demo(directory: Path, count: int, kafka: bool) -> None:
    """Record a realistic week of Kafka audit events into a local log and show how to
    look at them."""
    from kaudit.demo import run_demo

    run_demo(directory, count, kafka=kafka)


# ---------------------------------------------------------------- search, report, retention
# The logic lives in kaudit.store (search, retention) and kaudit.reports (report).

_FILTER_OPTIONS = [
    click.option(
        "--since",
        help="From this time: ISO 8601 (2026-11-01, 2026-11-01T10:00Z) "
        "or back from now (30m, 24h, 7d).",
    ),
    click.option("--until", help="Before this time (same forms as --since)."),
    click.option("--type", "type_glob", help="Event type or glob (topic.deleted, 'acl.*')."),
    click.option("--actor", help="Actor id (User:alice) or name (alice); globs allowed."),
    click.option("--resource", help="type:id (topic:orders) or id (orders); globs allowed."),
    click.option("--result", type=click.Choice(["success", "failure", "denied"])),
    click.option("--cluster", help="Cluster id (context.cluster_id); globs allowed."),
    click.option("--query", "-q", help="Free text: every word must occur (word* for a prefix)."),
]


def _filter_options(fn: Callable[P, R]) -> Callable[P, R]:
    for option in reversed(_FILTER_OPTIONS):
        fn = option(fn)
    return fn


@main.command()
@click.argument("source", required=False)
@_config_option
@_filter_options
@click.option(
    "--format",
    "-o",
    "fmt",
    type=click.Choice(["table", "json", "jsonl", "csv"]),
    help="Output (default: table on a terminal, else jsonl).",
)
@click.option(
    "--count-by",
    type=click.Choice(["type", "category", "actor", "resource", "result", "cluster", "day"]),
    help="Count matching events by this instead of listing them.",
)
@click.option(
    "--limit",
    "-n",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="At most this many events (0: all).",
)
@_handle_errors
def search(
    source: str | None,
    config_path: str | None,
    since: str | None,
    until: str | None,
    type_glob: str | None,
    actor: str | None,
    resource: str | None,
    result: str | None,
    cluster: str | None,
    query: str | None,
    fmt: str | None,
    count_by: str | None,
    limit: int,
) -> None:
    """Find audit events, newest first, or count them (--count-by).

    Searches SOURCE when given: a search index file, a log or data directory, a JSON
    Lines file, - or kafka://… (as `kaudit tail` reads them, by scanning: slower, same
    answers). Without it: the index of the configured `store` destination, else the
    configured log.
    """
    from kaudit.errors import SearchError
    from kaudit.store.output import write_counts, write_hits
    from kaudit.store.query import Filter, open_search, parse_time

    try:
        flt = Filter(
            since=parse_time(since, what="--since") if since else None,
            until=parse_time(until, what="--until") if until else None,
            type=type_glob,
            actor=actor,
            resource=resource,
            result=result,
            cluster=cluster,
            query=query,
        )
    except SearchError as exc:
        raise click.UsageError(str(exc)) from None
    fmt = fmt or ("table" if sys.stdout.isatty() else "jsonl")
    searcher = open_search(source, _load(config_path))
    try:
        out = sys.stdout.buffer
        if count_by:
            write_counts(searcher.count_by(flt, (count_by,)), (count_by,), fmt, out)
        else:
            write_hits(searcher.search(flt, limit or None), fmt, out)
        out.flush()
    finally:
        searcher.close()


@main.command()
@click.argument("source", required=False)
@_config_option
@click.option("--period", help="The month, YYYY-MM (default: last month).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["md", "html", "csv", "json"]),
    default="md",
    show_default=True,
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here, not stdout."
)
@click.option(
    "--max-rows",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Listed denied events and changes (newest); counts are always complete.",
)
@_handle_errors
def report(
    source: str | None,
    config_path: str | None,
    period: str | None,
    fmt: str,
    out: Path | None,
    max_rows: int,
) -> None:
    """The compliance report of a month: operations by category and result, denied
    access, ACL and config changes, top actors, events per day, integrity status.

    Reads SOURCE, the configured index or the configured log, as `kaudit search` does.
    """
    from kaudit.errors import SearchError
    from kaudit.reports.compliance import (
        build_report,
        integrity_status,
        parse_period,
        previous_month,
        render,
    )
    from kaudit.store.query import open_search

    period = period or previous_month()
    try:
        start, _ = parse_period(period)
    except SearchError as exc:
        raise click.UsageError(str(exc)) from None
    from kaudit.reading import resolve_log_dir

    config = _load(config_path)
    searcher = open_search(source, config)
    # A log directory given as SOURCE is the one verified; otherwise the configured log.
    log_dir = resolve_log_dir(Path(source)) if source and Path(source).is_dir() else None
    try:
        data = render(
            build_report(
                searcher,
                period,
                integrity=integrity_status(config, start, log_dir),
                max_rows=max_rows,
            ),
            fmt,
        )
    finally:
        searcher.close()
    if out is not None:
        out.write_bytes(data)
        click.echo(f"wrote {out}", err=True)
    else:
        sys.stdout.buffer.write(data)


@main.group()
def retention() -> None:
    """How long audit data is kept (audit.retention)."""


@retention.command("apply")
@_config_option
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@_handle_errors
def retention_apply(config_path: str | None, dry_run: bool) -> None:
    """Remove log segments, index entries and rotated export files older than
    max_days (never anything younger than min_days); prints what went, as JSON."""
    from kaudit.store.retention import apply_retention

    done = apply_retention(_load(config_path), dry_run=dry_run)
    click.echo(orjson.dumps(done.to_dict(), option=orjson.OPT_INDENT_2).decode())


def _retention_in_background(config: Config) -> None:
    from kaudit.store.retention import RetentionWorker

    if config.audit.retention.max_days is not None:
        # A daemon thread: it stops with the process, mid-removal at worst, which
        # leaves whole files and committed transactions only.
        RetentionWorker(config).start(threading.Event())


def _retention_once(config: Config) -> None:
    from kaudit.store.retention import apply_retention

    done = apply_retention(config)
    removed = len(done.segments) + done.index_events + len(done.files)
    if removed:
        click.echo(
            f"retention: removed {len(done.segments)} log segments, {done.index_events} "
            f"indexed events, {len(done.files)} rotated files (before {done.cutoff})",
            err=True,
        )


if __name__ == "__main__":
    main()
