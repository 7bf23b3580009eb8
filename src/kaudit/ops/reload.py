"""Reloading the configuration of a running process (SIGHUP, `kaudit reload`).

One `Reloader` per process re-reads the configuration file and hands the new
configuration to the parts that registered with it: the recorder (event selection,
redaction), the exporters (destinations added, changed, removed), the gateway (its API
settings), and whatever else registers (alert rules). A reload happens in two steps, so
that a new configuration is either in force everywhere or nowhere:

1. `prepare(old, new)` of every part builds what can fail (new exporters, a new
   filter) without touching what runs, and returns a `Change`, or None when the part
   has nothing to change;
2. when every part has prepared, each change is committed; if one failed to prepare,
   the prepared ones are aborted, and the old configuration stays in force.

A file that fails to load is refused with its errors, nothing is prepared. What cannot
change without a restart (where the log is, where the gateway listens) is named in the
outcome as needing one; the rest of the new configuration still applies.

A running process announces itself in `<data_dir>/run/<pid>.json` (its command and the
outcome of its last reload), which is how `kaudit reload` finds it, signals it and
reports what happened.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from kaudit.config import Config
from kaudit.errors import ConfigError

log = logging.getLogger("kaudit.reload")

__all__ = [
    "Change",
    "Prepare",
    "ReloadOutcome",
    "Reloader",
    "current",
    "register",
    "restart_needed",
    "running_processes",
]


class Change(Protocol):
    """A part's prepared switch to a new configuration."""

    def commit(self) -> None:
        """Put the new configuration in force (must not fail)."""

    def abort(self) -> None:
        """Release what was prepared; the old configuration stays."""


Prepare = Callable[[Config, Config], Change | None]
"""(old, new) → the part's change, None when it has nothing to change; raises to refuse."""


@dataclass(frozen=True)
class Committed:
    """A change that only needs committing (nothing to release on abort)."""

    apply: Callable[[], None]

    def commit(self) -> None:
        self.apply()

    def abort(self) -> None:
        pass


@dataclass
class ReloadOutcome:
    """What a reload did: `ok` when the new configuration is in force."""

    ok: bool
    at: float
    errors: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    restart_needed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "at": self.at,
            "errors": self.errors,
            "changed": self.changed,
            "restart_needed": self.restart_needed,
        }


# Settings read once at start: a change to them is reported as needing a restart.
_FIXED = (
    ("data_dir", lambda c: c.data_dir),
    ("cluster", lambda c: c.cluster),
    ("auditors", lambda c: c.auditors),
    ("audit.log", lambda c: c.audit.log),
    ("audit.integrity", lambda c: c.audit.integrity),
    ("audit.failure_policy", lambda c: c.audit.failure_policy),
    ("audit.queue_max_events", lambda c: c.audit.queue_max_events),
    ("audit.batch_max_events", lambda c: c.audit.batch_max_events),
    ("audit.enabled", lambda c: c.audit.enabled),
    ("console", lambda c: c.console),
    ("gateway (present or not)", lambda c: c.gateway is None),
    ("gateway.upstream", lambda c: c.gateway and c.gateway.upstream),
    ("gateway.listen", lambda c: c.gateway and c.gateway.listen),
    ("gateway.advertised_host", lambda c: c.gateway and c.gateway.advertised_host),
    ("gateway.broker_ports_start", lambda c: c.gateway and c.gateway.broker_ports_start),
    ("gateway.brokers", lambda c: c.gateway and c.gateway.brokers),
    ("gateway.discovery", lambda c: c.gateway and c.gateway.discovery),
    ("gateway.tls", lambda c: c.gateway and c.gateway.tls),
    ("gateway.upstream_tls", lambda c: c.gateway and c.gateway.upstream_tls),
    ("gateway.records_window_seconds", lambda c: c.gateway and c.gateway.records_window_seconds),
    ("gateway.max_window_keys", lambda c: c.gateway and c.gateway.max_window_keys),
)


def restart_needed(old: Config, new: Config) -> list[str]:
    """The settings that differ between `old` and `new` but apply only at start."""
    return [name for name, get in _FIXED if get(old) != get(new)]


class Reloader:
    """Re-reads the configuration with `load` and hands it to the registered parts."""

    def __init__(
        self,
        load: Callable[[], Config],
        config: Config,
        *,
        command: str = "kaudit",
        announce: bool = True,
    ) -> None:
        self._load = load
        self.config = config
        self.command = command
        self._parts: dict[int, tuple[str, Prepare]] = {}
        self._next_id = 0
        self._lock = threading.Lock()  # one reload at a time; registration meanwhile
        self._wanted = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._previous_handler: Any = None
        self.last: ReloadOutcome | None = None
        self._announce_path = config.data_path / "run" / f"{os.getpid()}.json" if announce else None

    # -- parts ------------------------------------------------------------------------------

    def register(self, name: str, prepare: Prepare) -> Callable[[], None]:
        """Have `prepare` called on every reload; returns the function that unregisters."""
        with self._lock:
            key = self._next_id
            self._next_id += 1
            self._parts[key] = (name, prepare)

        def unregister() -> None:
            with self._lock:
                self._parts.pop(key, None)

        return unregister

    # -- reloading --------------------------------------------------------------------------

    def reload(self) -> ReloadOutcome:
        """Load the configuration again and put it in force, or refuse it whole."""
        with self._lock:
            outcome = self._reload()
            self.last = outcome
        if outcome.ok:
            log.warning(
                "configuration reloaded: %s%s",
                ", ".join(outcome.changed) or "nothing changed",
                f"; needs a restart to apply: {', '.join(outcome.restart_needed)}"
                if outcome.restart_needed
                else "",
            )
        else:
            log.error(
                "configuration reload refused, the previous one stays in force:\n  %s",
                "\n  ".join(outcome.errors),
            )
        self._write_announcement()
        return outcome

    def _reload(self) -> ReloadOutcome:
        now = time.time()
        try:
            new = self._load()
        except ConfigError as exc:
            return ReloadOutcome(False, now, [f"{exc.source}: {i}" for i in exc.issues])
        except Exception as exc:  # a reload never takes the process down
            return ReloadOutcome(False, now, [f"cannot load the configuration: {exc}"])
        old = self.config
        prepared: list[tuple[str, Change]] = []
        for name, prepare in list(self._parts.values()):
            try:
                change = prepare(old, new)
            except Exception as exc:
                for _, done in prepared:
                    with contextlib.suppress(Exception):
                        done.abort()
                return ReloadOutcome(False, now, [f"{name}: {exc}"])
            if change is not None:
                prepared.append((name, change))
        for name, change in prepared:
            try:
                change.commit()
            except Exception:
                log.exception("%s: applying the reloaded configuration failed", name)
        self.config = new
        return ReloadOutcome(
            True,
            now,
            changed=[name for name, _ in prepared],
            restart_needed=restart_needed(old, new),
        )

    # -- SIGHUP and the announcement ---------------------------------------------------------

    def start(self) -> None:
        """Reload on SIGHUP (from now on, on a thread of its own) and announce this
        process in `<data_dir>/run/`. Call from the main thread."""
        self._thread = threading.Thread(target=self._serve, name="kaudit-reload", daemon=True)
        self._thread.start()
        self._previous_handler = signal.signal(signal.SIGHUP, lambda *_: self._wanted.set())
        self._write_announcement()

    def request(self) -> None:
        """Ask for a reload (what SIGHUP does)."""
        self._wanted.set()

    def _serve(self) -> None:
        while True:
            self._wanted.wait()
            if self._closed.is_set():
                return
            self._wanted.clear()
            try:
                self.reload()
            except Exception:  # the reload thread must outlive any bug in one reload
                log.exception("configuration reload failed")

    def close(self) -> None:
        self._closed.set()
        self._wanted.set()
        if self._thread is not None and threading.current_thread() is threading.main_thread():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signal.SIGHUP, self._previous_handler or signal.SIG_DFL)
        if self._announce_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._announce_path.unlink()

    def _write_announcement(self) -> None:
        path = self._announce_path
        if path is None or self._thread is None:
            return
        body = {
            "pid": os.getpid(),
            "command": self.command,
            "last_reload": self.last.as_dict() if self.last is not None else None,
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(orjson.dumps(body))
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("cannot write %s (kaudit reload will not find this process): %s", path, exc)


def running_processes(data_dir: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(pid, announcement) of the kaudit processes running on `data_dir`; the
    announcements of processes that are gone (killed) are removed."""
    run_dir = data_dir / "run"
    if not run_dir.is_dir():
        return
    for path in sorted(run_dir.glob("*.json")):
        try:
            body = orjson.loads(path.read_bytes())
            pid = int(body["pid"])
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
        if not _alive(pid):
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        yield pid, body


def read_announcement(data_dir: Path, pid: int) -> dict[str, Any] | None:
    try:
        body = orjson.loads((data_dir / "run" / f"{pid}.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A pid reused by another program is not ours.
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"kaudit" in cmdline


# -- the process's reloader --------------------------------------------------------------------

_current: Reloader | None = None


def install(reloader: Reloader | None) -> None:
    """Make `reloader` the process's (None: no reloading), which parts register with."""
    global _current
    _current = reloader


def current() -> Reloader | None:
    return _current


def register(name: str, prepare: Prepare) -> Callable[[], None]:
    """Register with the process's reloader, if it has one (a process started by
    `kaudit run` / `kaudit gateway`; a library user has none): returns the function that
    unregisters."""
    reloader = _current
    if reloader is None:
        return lambda: None
    return reloader.register(name, prepare)
