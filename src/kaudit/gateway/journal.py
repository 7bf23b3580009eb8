"""The produce/fetch window on disk, so that under fail_closed no answered request's count
is lost when the gateway dies.

Produce and Fetch are counted into a window (aggregate) and recorded when it closes; a
kill -9 before then would lose the counts of requests already answered. Under
fail_closed the window is journaled instead: after a response adds to a count, the
count's new value is appended to the window's file (`<name>-window-<id>.jsonl`) and the
response is held until a background thread has written and fsynced it (group commit:
one fsync covers every count added while the previous one ran). Once the window's
records are durable in the audit log its file is deleted. At start-up, counts left in
files by a gateway that did not stop cleanly are read back (`recover`) and recorded
with the next window, marked `recovered`.

What it costs is one fsync per batch of responses and one short JSON line per count
changed, per batch; bench/gateway.py measures it (the fail_closed consume run).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import orjson

log = logging.getLogger("kaudit.gateway")

_Op = tuple[int, int, bytes | None, threading.Event | None, bool]
_MARKER = -1  # an op that writes nothing: sync_now waits for it to be applied
COMPACT_BYTES = 8 * 1024 * 1024
"""A window file is written afresh (its counts' latest values only) past this size."""

Synced = Callable[[str | None], None]
"""Called on the event loop with None once durable, or with why not."""


class WindowJournal:
    """Append-and-fsync files of window counts, written by a thread of their own."""

    def __init__(self, directory: Path, name: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.prefix = f"{name}-window-"
        self.syncs = 0
        self.compactions = 0
        self.failed: str | None = None
        # (generation, window, its lines or None to delete its file, an event to set once
        # applied, whether the lines replace the file): the thread applies them in order.
        self._ops: deque[_Op] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._generation = 0  # of the last lines handed to the thread
        self._synced = 0  # of the last lines durable
        self._waiters: deque[tuple[int, Synced]] = deque()
        self._files: dict[int, IO[bytes]] = {}
        # Per window file: (bytes of its last fresh start, bytes appended since).
        self._written: dict[int, tuple[int, int]] = {}
        self._thread = threading.Thread(target=self._run, name="kaudit-journal", daemon=True)
        self._thread.start()

    def _path(self, window: int) -> Path:
        return self.directory / f"{self.prefix}{window}.jsonl"

    # -- start-up ---------------------------------------------------------------------------

    def recover(self) -> list[dict[str, Any]]:
        """The last value of each count in files left by an unclean stop (a torn last
        line is skipped: its response was never released)."""
        counts: dict[tuple[Any, ...], dict[str, Any]] = {}
        for path in sorted(self.directory.glob(f"{self.prefix}*.jsonl")):
            for line in path.read_bytes().splitlines():
                try:
                    entry = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                key = (path.name, *entry["key"])
                if "ctx" not in entry and key in counts:  # written with the first value
                    entry["ctx"] = counts[key]["ctx"]
                counts[key] = entry
        return [entry for entry in counts.values() if "ctx" in entry]

    def forget_recovered(self, keep: int) -> None:
        """Delete every window file but window `keep`'s (once the recovered counts are
        durable in it)."""
        for path in self.directory.glob(f"{self.prefix}*.jsonl"):
            if path != self._path(keep):
                path.unlink(missing_ok=True)
        for path in self.directory.glob(f"{self.prefix}*.tmp"):  # a rewrite cut short
            path.unlink(missing_ok=True)

    # -- on the event loop ------------------------------------------------------------------

    def append(self, window: int, lines: list[bytes], replace: bool = False) -> None:
        """Hand counts' new values to the writer thread (`replace`: every count, to
        take the place of the window's file)."""
        self._generation += 1
        data = b"".join(lines)
        if replace:
            self._written[window] = (len(data), 0)
        else:
            snapshot, appended = self._written.get(window, (0, 0))
            self._written[window] = (snapshot, appended + len(data))
        with self._cond:
            self._ops.append((self._generation, window, data, None, replace))
            self._cond.notify()

    def needs_compacting(self, window: int) -> bool:
        """Whether the window's file has had more new values appended than COMPACT_BYTES
        and than its last fresh start held (each count's latest value is all a restart
        reads): time to write it afresh. So a file stays within about twice what its
        counts take, or COMPACT_BYTES, and is rewritten no more often than that."""
        snapshot, appended = self._written.get(window, (0, 0))
        return appended > max(COMPACT_BYTES, snapshot)

    def drop(self, window: int) -> None:
        """Delete a window's file once its records are durable in the audit log."""
        self._written.pop(window, None)
        with self._cond:
            self._ops.append((self._generation, window, None, None, False))
            self._cond.notify()

    @property
    def behind(self) -> bool:
        """Whether counts handed over are not yet durable."""
        return self._synced < self._generation

    def when_synced(self, callback: Synced) -> None:
        """Call `callback` on this event loop once everything appended so far is durable."""
        if self.failed is not None:
            callback(f"the window journal cannot be written: {self.failed}")
            return
        if not self.behind:
            callback(None)
            return
        self._loop = asyncio.get_running_loop()
        self._waiters.append((self._generation, callback))

    def _done(self, generation: int, error: str | None) -> None:
        if error is not None:
            self.failed = error
        else:
            self._synced = max(self._synced, generation)
        while self._waiters and (error is not None or self._waiters[0][0] <= self._synced):
            _, callback = self._waiters.popleft()
            callback(None if error is None else f"the window journal cannot be written: {error}")

    # -- the writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._ops and not self._closing:
                    self._cond.wait()
                if not self._ops and self._closing:
                    return
                ops, self._ops = self._ops, deque()
            error: str | None = None
            try:
                self._apply(ops)
            except OSError as exc:
                error = self.failed = str(exc)
                log.error("the window journal cannot be written: %s", exc)
                for _, _, _, applied, _ in ops:
                    if applied is not None:
                        applied.set()
            loop = self._loop
            if loop is not None and not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(self._done, ops[-1][0], error)
                except RuntimeError:  # the loop closed meanwhile: nobody waits any more
                    return

    def _apply(self, ops: deque[_Op]) -> None:
        touched: set[int] = set()
        for _, window, lines, _, replace in ops:
            if window == _MARKER:
                continue
            if replace and lines is not None:
                self._replace(window, lines)
                self.compactions += 1
                touched.discard(window)
                continue
            if lines is None:
                handle = self._files.pop(window, None)
                if handle is not None:
                    handle.close()
                self._path(window).unlink(missing_ok=True)
                touched.discard(window)
                continue
            handle = self._files.get(window)
            if handle is None:
                fd = os.open(self._path(window), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
                handle = self._files[window] = os.fdopen(fd, "ab", buffering=0)
            handle.write(lines)
            touched.add(window)
        for window in touched:
            os.fdatasync(self._files[window].fileno())
        if touched:
            self.syncs += 1
        for _, _, _, applied, _ in ops:
            if applied is not None:
                applied.set()

    def _replace(self, window: int, lines: bytes) -> None:
        """Write a window's file afresh: a new file, fsynced, renamed over the old one."""
        handle = self._files.pop(window, None)
        if handle is not None:
            handle.close()
        path = self._path(window)
        fresh = path.with_suffix(".tmp")
        fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            os.write(fd, lines)
            os.fdatasync(fd)
        finally:
            os.close(fd)
        os.replace(fresh, path)
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself
        finally:
            os.close(directory)

    def sync_now(self, timeout: float = 30.0) -> bool:
        """Wait (off the event loop: start-up, stop) until everything appended is
        durable; False if that did not happen within `timeout`."""
        applied = threading.Event()
        with self._cond:
            self._ops.append((self._generation, _MARKER, b"", applied, False))
            self._cond.notify()
        if not applied.wait(timeout) or self.failed is not None:
            return False
        self._synced = self._generation
        return True

    def close(self) -> None:
        """Write what is handed over, then stop the thread and close the files."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(30)
        for handle in self._files.values():
            handle.close()
        self._files.clear()
