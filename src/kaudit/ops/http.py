"""The operations endpoints of a kaudit process on one HTTP port (`metrics.listen`):
`/metrics` (Prometheus text format, kaudit.ops.metrics), `/healthz` and `/readyz` (JSON,
kaudit.ops.health).

A small threaded server from the standard library, in a daemon thread: a scrape or a
probe never waits on the gateway's event loop or the recorder's writer, and a stuck
check holds only its own request.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kaudit.errors import KauditError
from kaudit.ops.health import Health
from kaudit.ops.metrics import CONTENT_TYPE, render

__all__ = ["OpsServer"]

log = logging.getLogger("kaudit.ops")

_PATHS = ("/metrics", "/healthz", "/readyz")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path.partition("?")[0]
        if path == "/metrics":
            self._send(200, render(), CONTENT_TYPE)
        elif path == "/healthz":
            self._json(200, self.server.health.live())
        elif path == "/readyz":
            ready, body = self.server.health.ready()
            self._json(200 if ready else 503, body)
        else:
            self._json(404, {"error": f"no such path: {path}", "paths": list(_PATHS)})

    def _json(self, status: int, body: dict[str, Any]) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a scrape every few seconds is no news


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], health: Health) -> None:
        self.health = health
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)


class OpsServer:
    """`/metrics`, `/healthz` and `/readyz` at `listen` (host:port; port 0 picks one)."""

    def __init__(self, listen: str, health: Health) -> None:
        host, _, port = listen.rpartition(":")
        self.health = health
        try:
            self._server = _Server((host.strip("[]"), int(port)), health)
        except OSError as exc:
            raise KauditError(
                f"metrics.listen: cannot listen on {listen}: {exc.strerror or exc}"
            ) from exc
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="kaudit-ops-http", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else host
        return f"http://{f'[{name}]' if ':' in name else name}:{port}"

    def start(self) -> OpsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> OpsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
