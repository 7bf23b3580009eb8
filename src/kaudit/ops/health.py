"""Whether a kaudit process is alive (`/healthz`) and ready (`/readyz`), and why.

A process adds the checks that apply to what it runs (`Health.add`): the audit log takes
writes, the gateway reaches a broker, no destination has been stuck past
`metrics.exporter_stuck_seconds`. Each check answers None when all is well, else the
reason; `/readyz` runs them all and says which failed and why. `/healthz` runs none:
it answers as long as the process can answer at all, so a restart is only asked for a
process that is wedged, not one whose broker is down.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from kaudit.version import __version__

__all__ = ["Check", "Health", "broker_reachable", "directory_writable"]

Check = Callable[[], str | None]
"""A readiness check: None when ready, else why not."""


class Health:
    """The checks of one process, and its liveness."""

    def __init__(self) -> None:
        self.started = time.time()
        self._checks: dict[str, Check] = {}
        self._lock = threading.Lock()

    def add(self, name: str, check: Check) -> Callable[[], None]:
        """Run `check` for `/readyz` as `name` until the returned function is called."""
        with self._lock:
            self._checks[name] = check

        def remove() -> None:
            with self._lock:
                if self._checks.get(name) is check:
                    del self._checks[name]

        return remove

    def live(self) -> dict[str, Any]:
        return {
            "status": "alive",
            "pid": os.getpid(),
            "version": __version__,
            "uptime_seconds": round(time.time() - self.started, 3),
        }

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """(ready, the body saying so): every check's outcome, by name."""
        with self._lock:
            checks = list(self._checks.items())
        results: dict[str, Any] = {}
        for name, check in checks:
            try:
                reason = check()
            except Exception as exc:  # a failing check is a reason, not a crash
                reason = f"the check failed: {exc!r}"
            results[name] = {"ok": reason is None, **({"reason": reason} if reason else {})}
        ready = all(r["ok"] for r in results.values())
        return ready, {"status": "ready" if ready else "not ready", "checks": results}


def broker_reachable(servers: Sequence[str], timeout_s: float) -> Check:
    """A check that one of `servers` (host:port) accepts a TCP connection."""

    def check() -> str | None:
        problems = []
        for server in servers:
            host, _, port = server.rpartition(":")
            try:
                socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
                return None
            except OSError as exc:
                problems.append(f"{server}: {exc.strerror or exc}")
        return "no upstream broker accepts a connection (" + "; ".join(problems) + ")"

    return check


def directory_writable(path: os.PathLike[str] | str) -> Check:
    """A check that a file can be created in `path` (the audit log's directory, for a
    process that reads the log but does not write it)."""

    def check() -> str | None:
        probe = os.path.join(path, f".kaudit-ready-{os.getpid()}")
        try:
            with open(probe, "wb"):
                pass
            os.unlink(probe)
        except OSError as exc:
            return f"cannot write in {path}: {exc.strerror or exc}"
        return None

    return check
