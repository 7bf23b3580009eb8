"""The console on a web server: uvicorn in a thread of its own, started and stopped by
`kaudit console`, `kaudit run` and the demo."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import uvicorn

from kaudit.config import Config
from kaudit.console.app import build_app
from kaudit.console.clusters import KafkaCallError
from kaudit.errors import KauditError, UsageError
from kaudit.ops.logs import json_lines
from kaudit.recorder.core import Recorder

__all__ = ["ConsoleServer"]


class ConsoleServer:
    """Serves the console of `config.console`, recording to `recorder`."""

    def __init__(self, config: Config, recorder: Recorder, *, base_dir: Path | None = None) -> None:
        console = config.console
        if console is None:
            raise UsageError("no console section in the configuration")
        self.app = build_app(config, recorder, base_dir=base_dir)
        self.host, self.port = console.listen_host, console.listen_port
        self._server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host=self.host,
                port=self.port,
                log_level="warning",
                # Under --log-format json uvicorn's records go to kaudit's JSON handler.
                log_config=None if json_lines() else uvicorn.config.LOGGING_CONFIG,
                access_log=False,
                lifespan="off",
                server_header=False,
                # Forwarded headers only from configured proxies: uvicorn would otherwise
                # believe any local process about the source address.
                proxy_headers=bool(console.trusted_proxies),
                forwarded_allow_ips=list(console.trusted_proxies) or None,
            )
        )
        self._thread = threading.Thread(target=self._server.run, name="console", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self, timeout: float = 30.0) -> None:
        """Start serving; returns once the server listens, else raises saying why."""
        # Each cluster's id is asked for now, in the background, so that the first
        # action's decision does not wait on it.
        threading.Thread(target=self._learn_cluster_ids, name="console-ids", daemon=True).start()
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise KauditError(f"the console could not listen on {self.host}:{self.port}")
            if time.monotonic() > deadline:
                self.stop()
                raise KauditError(f"the console did not start within {timeout:g}s")
            time.sleep(0.05)

    def _learn_cluster_ids(self) -> None:
        clusters = self.app.state.console.service.clusters
        for name in clusters.names:
            with contextlib.suppress(KafkaCallError):  # asked again on first use
                _ = clusters.get(name).id

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self.app.state.console.service.clusters.close()
