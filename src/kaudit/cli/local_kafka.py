"""`kaudit local-kafka start|stop|status`: the command-line face of `kaudit.dev.kafka`.

The group is registered by the main ``kaudit`` CLI and also runs on its own with
``python -m kaudit.cli.local_kafka``. Results go to stdout as JSON (the `status` document), so
scripts can read ``bootstrap_servers`` and friends; progress and errors go to stderr.

Exit codes: 0 success; 1 Kafka failed (download, format, start, stop); 2 a required
program (java, mvn) is missing or a usage error; 3 from `status` when no broker runs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from kaudit.dev.broker_auditor import DECISIONS_TOPIC, broker_auditor_plugin
from kaudit.dev.dist import KAFKA_VERSION
from kaudit.dev.errors import KafkaAlreadyRunningError, LocalKafkaError, MissingToolError
from kaudit.dev.kafka import DEFAULT_DIR, READY_TIMEOUT_S, STOP_TIMEOUT_S, LocalKafka

_EXIT_FAILED = 1
_EXIT_MISSING_TOOL = 2
_EXIT_NOT_RUNNING = 3

_dir_option = click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_DIR,
    show_default=True,
    help="Directory holding the broker's config, data, log and state.json.",
)


@click.group("local-kafka")
def local_kafka() -> None:
    """Run a local Apache Kafka (KRaft, SASL, ACLs) for the demo and the tests."""


@local_kafka.command()
@_dir_option
@click.option(
    "--port-base",
    type=click.IntRange(1024, 65533),
    default=None,
    metavar="PORT",
    help="Use PORT, PORT+1, PORT+2 for PLAINTEXT, SASL_PLAINTEXT and the controller "
    "(default: free ports chosen now).",
)
@click.option(
    "--kafka-version", default=KAFKA_VERSION, show_default=True, help="Kafka 4.x release."
)
@click.option("--fresh", is_flag=True, help="Discard existing storage (topics, ACLs) first.")
@click.option(
    "--broker-auditor",
    is_flag=True,
    help="Load kaudit's broker auditor plugin (built from broker-auditor/ with Maven once): "
    f"every decision of the authorizer goes to the topic {DECISIONS_TOPIC}.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=READY_TIMEOUT_S,
    show_default=True,
    help="Seconds to wait for the broker to answer clients.",
)
def start(
    directory: Path,
    port_base: int | None,
    kafka_version: str,
    fresh: bool,
    broker_auditor: bool,
    timeout: float,
) -> None:
    """Fetch Kafka (once), format storage, start the broker detached and wait until ready."""
    began = time.monotonic()
    try:
        plugin = (
            broker_auditor_plugin(kafka_version=kafka_version, progress=_progress)
            if broker_auditor
            else None
        )
        kafka = LocalKafka(
            directory,
            kafka_version=kafka_version,
            port_base=port_base,
            ready_timeout=timeout,
            progress=_progress,
            broker_auditor=plugin,
        )
        info = kafka.start(fresh=fresh)
    except KafkaAlreadyRunningError as exc:
        _progress(f"Kafka is already running in {exc.info.dir} (pid {exc.info.pid})")
        _print_json(exc.info.to_json())
        return
    except LocalKafkaError as exc:
        _fail(exc)
    _progress(
        f"Kafka {info.kafka_version} ready in {time.monotonic() - began:.1f} s "
        f"(broker JVM {info.ready_seconds} s): PLAINTEXT {info.bootstrap_servers}, "
        f"SASL_PLAINTEXT {info.sasl_bootstrap_servers}; log {info.log_file}"
    )
    _print_json(info.to_json())


@local_kafka.command()
@_dir_option
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=STOP_TIMEOUT_S,
    show_default=True,
    help="Seconds to wait after SIGTERM before SIGKILL.",
)
def stop(directory: Path, timeout: float) -> None:
    """Stop the broker started from DIR (only that process)."""
    try:
        stopped = LocalKafka(directory).stop(timeout=timeout)
    except LocalKafkaError as exc:
        _fail(exc)
    _progress("Kafka stopped" if stopped else f"No local Kafka running in {directory}")


@local_kafka.command()
@_dir_option
def status(directory: Path) -> None:
    """Print the broker's connection details as JSON (exit 3 if it is not running)."""
    kafka = LocalKafka(directory)
    try:
        info = kafka.status()
    except LocalKafkaError as exc:
        _fail(exc)
    if info is None:
        _print_json({"running": False, "ready": False, "pid": None, "dir": str(kafka.dir)})
        raise SystemExit(_EXIT_NOT_RUNNING)
    _print_json(info.to_json())
    if not info.running:
        raise SystemExit(_EXIT_NOT_RUNNING)


def _progress(message: str) -> None:
    click.echo(message, err=True)


def _print_json(data: dict[str, Any]) -> None:
    click.echo(json.dumps(data, indent=2))


def _fail(exc: LocalKafkaError) -> NoReturn:
    click.echo(f"kaudit: error: {exc}", err=True)
    raise SystemExit(_EXIT_MISSING_TOOL if isinstance(exc, MissingToolError) else _EXIT_FAILED)


if __name__ == "__main__":
    local_kafka()
