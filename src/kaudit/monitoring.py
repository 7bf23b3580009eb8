"""What a long-running kaudit process (`kaudit run`, `kaudit gateway`, `kaudit console`)
serves on `metrics.listen`: it hands the parts it runs (the recorder, the gateway, the
exporters, the integrity checkpoints) to kaudit.ops's collectors and readiness checks.

At the top of the layers beside kaudit.service: it knows the parts by their types; the
collectors and checks in kaudit.ops know them only by small protocols.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kaudit.config import Config
from kaudit.config.model import KafkaLog
from kaudit.ops import metrics
from kaudit.ops.health import Health, broker_reachable, directory_writable
from kaudit.ops.http import OpsServer

if TYPE_CHECKING:
    from kaudit.exporters.runner import ExporterRunner
    from kaudit.gateway import Gateway
    from kaudit.recorder.core import Recorder

__all__ = ["Monitoring", "checkpoint_written_at", "monitoring"]


def checkpoint_written_at(config: Config) -> Callable[[], float | None]:
    """When the configured log's last signed checkpoint was written (Unix time; None
    before the first): the newest checkpoint file beside the local log (or its anchor),
    or the Kafka writer's tree state, replaced at each checkpoint it publishes."""
    checkpoints = config.audit.integrity.checkpoints
    log = config.audit.log
    if isinstance(log, KafkaLog):
        candidates: Callable[[], list[Path]] = lambda: [  # noqa: E731
            config.data_path / "kafka-log" / f"{log.topic}.tree.json"
        ]
    else:
        from kaudit.integrity.store import checkpoint_files

        anchor = Path(checkpoints.anchor_path).expanduser() if checkpoints.anchor_path else None

        def candidates() -> list[Path]:
            return [*checkpoint_files(config.log_dir), *([anchor] if anchor else [])]

    def written_at() -> float | None:
        times = []
        for path in candidates():
            with contextlib.suppress(OSError):
                times.append(path.stat().st_mtime)
        return max(times, default=None)

    return written_at


class Monitoring:
    """The metrics and readiness of one process, served on `metrics.listen` when the
    configuration has a `metrics:` section (else collected, never served)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.settings = config.metrics
        self.health = Health()
        self.server = OpsServer(self.settings.listen, self.health) if self.settings else None
        self._undo: list[Callable[[], None]] = []

    @property
    def url(self) -> str | None:
        return self.server.url if self.server is not None else None

    def start(self) -> Monitoring:
        if self.server is not None:
            self.server.start()
        return self

    def close(self) -> None:
        while self._undo:
            self._undo.pop()()
        if self.server is not None:
            self.server.stop()

    def __enter__(self) -> Monitoring:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the parts ------------------------------------------------------------------------

    def watch_recorder(self, recorder: Recorder) -> None:
        """The recorder's counters and write latency, the checkpoints' age, and a
        readiness check that the log takes writes."""
        self._undo.append(metrics.watch_recorder(recorder))
        if self.config.audit.integrity.checkpoints.enabled:
            self._undo.append(metrics.watch_checkpoints(checkpoint_written_at(self.config)))
        self._undo.append(self.health.add("audit_log", lambda: recorder.unavailable_reason))

    def watch_log_directory(self) -> None:
        """For a process that reads the log but runs no recorder: a readiness check that
        its data directory can be written (cursors, dead letters)."""
        path = self.config.data_path
        os.makedirs(path, exist_ok=True)
        self._undo.append(self.health.add("data_dir", directory_writable(path)))

    def watch_gateway(self, gateway: Gateway) -> None:
        """The gateway's counters, and a readiness check that an upstream broker accepts
        connections."""
        from kaudit.gateway.codec import API_NAMES

        def api_label(key: int) -> str:
            # A client may send any of 65,536 API keys: one label for those Kafka lacks,
            # so no client can grow the number of series.
            return API_NAMES.get(key, "unknown")

        self._undo.append(
            metrics.watch_gateway(
                gateway.metrics,
                open_connections=lambda: len(gateway.shared.connections),
                api_name=api_label,
            )
        )
        timeout = self.settings.broker_timeout_seconds if self.settings else 2.0
        self._undo.append(
            self.health.add("broker", broker_reachable(gateway.config.upstream, timeout))
        )

    def watch_exporters(self, runners: Sequence[ExporterRunner]) -> None:
        """Each destination's counters and lag, and a readiness check that none has been
        stuck past `metrics.exporter_stuck_seconds`."""
        if not runners:
            return
        refresh = self.settings.lag_refresh_seconds if self.settings else 15.0
        limit = self.settings.exporter_stuck_seconds if self.settings else 300.0
        unwatch, stuck = metrics.watch_exporters(runners, lag_refresh_s=refresh)
        self._undo.append(unwatch)

        def check() -> str | None:
            names = stuck(limit)
            if not names:
                return None
            return f"failing with nothing delivered for over {limit:g}s: {', '.join(names)}"

        self._undo.append(self.health.add("exporters", check))


@contextlib.contextmanager
def monitoring(config: Config, say: Callable[[str], None] | None = None) -> Iterator[Monitoring]:
    """A process's monitoring, served meanwhile (saying where, to `say`)."""
    with Monitoring(config) as mon:
        if mon.url is not None and say is not None:
            say(f"kaudit metrics: {mon.url}/metrics, {mon.url}/healthz, {mon.url}/readyz")
        yield mon
