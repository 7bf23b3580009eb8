"""The exporters a running `kaudit run` serves: one thread per destination, each with
its own stop, so that a configuration reload changes them destination by destination.

On a reload, a destination that is gone or whose settings changed is stopped: its
runner finishes the batch it is delivering and saves its cursor, as at any stop; the
new one then starts from that cursor (the same cursor file, or the same consumer group
of the Kafka log). Destinations that did not change keep running untouched. Delivery
stays at-least-once: nothing past the saved cursor is skipped, a batch in doubt is
delivered again. The new destinations are built before anything is stopped, so one that
cannot be built refuses the whole reload and the running ones go on.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import overload

from kaudit.config import Config
from kaudit.config.model import Destination
from kaudit.exporters.registry import runner_for
from kaudit.exporters.runner import ExporterRunner

log = logging.getLogger("kaudit.exporters")


class _Running:
    """One destination's runner on its thread."""

    def __init__(self, destination: Destination, runner: ExporterRunner) -> None:
        self.destination = destination
        self.runner = runner
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=runner.run, args=(self.stop,), name=f"exporter-{runner.name}"
        )

    def start(self) -> None:
        self.thread.start()

    def end(self) -> None:
        self.stop.set()
        if self.thread.ident is not None:
            self.thread.join()
        self.runner.close()


class _Swap:
    """A reload's change of destinations, prepared: the new runners are built."""

    def __init__(self, pool: ExporterPool, gone: list[str], new: dict[str, _Running]) -> None:
        self._pool, self._gone, self._new = pool, gone, new

    def commit(self) -> None:
        self._pool.swap(self._gone, self._new)

    def abort(self) -> None:
        for running in self._new.values():
            with contextlib.suppress(Exception):
                running.runner.close()


class _RunnersView(Sequence[ExporterRunner]):
    """The runners a pool runs at the moment it is read: what metrics iterate, so that
    they follow a reload's new runners."""

    def __init__(self, pool: ExporterPool) -> None:
        self._pool = pool

    def _now(self) -> list[ExporterRunner]:
        with self._pool._lock:
            return [running.runner for running in self._pool._running.values()]

    @overload
    def __getitem__(self, index: int) -> ExporterRunner: ...

    @overload
    def __getitem__(self, index: slice) -> list[ExporterRunner]: ...

    def __getitem__(self, index: int | slice) -> ExporterRunner | list[ExporterRunner]:
        return self._now()[index]

    def __len__(self) -> int:
        return len(self._now())

    def __iter__(self) -> Iterator[ExporterRunner]:
        return iter(self._now())


class ExporterPool:
    """Every configured destination's exporter, each on a thread of its own."""

    def __init__(
        self,
        config: Config,
        build: Callable[[Config, Destination], ExporterRunner] = runner_for,
    ) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._running: dict[str, _Running] = {}
        self._sent_before: dict[str, int] = {}  # by runners a reload replaced
        self._closed = False
        for destination in config.audit.all_destinations:
            self._running[destination.display_name] = _Running(
                destination, build(config, destination)
            )

    @property
    def names(self) -> list[str]:
        return list(self._running)

    @property
    def runners(self) -> Sequence[ExporterRunner]:
        """The runners running, read afresh each time it is iterated."""
        return _RunnersView(self)

    def start(self) -> None:
        for running in self._running.values():
            running.start()

    def prepare_reload(self, old: Config, new: Config) -> _Swap | None:
        """The destinations of `new` that differ from those running: built, not started."""
        wanted = {d.display_name: d for d in new.audit.all_destinations}
        with self._lock:
            current = {name: r.destination for name, r in self._running.items()}
        gone = [n for n, d in current.items() if n not in wanted or wanted[n] != d]
        added = [n for n, d in wanted.items() if n not in current or current[n] != d]
        if not gone and not added:
            return None
        built: dict[str, _Running] = {}
        try:
            for name in added:
                built[name] = _Running(wanted[name], self._build(new, wanted[name]))
        except BaseException:
            _Swap(self, [], built).abort()
            raise
        return _Swap(self, gone, built)

    def swap(self, gone: list[str], new: dict[str, _Running]) -> None:
        """Stop the runners of `gone` (each saves its cursor) and start those of `new`."""
        with self._lock:
            if self._closed:
                _Swap(self, [], new).abort()
                return
            for name in gone:
                running = self._running.pop(name)
                running.end()
                self._sent_before[name] = (
                    self._sent_before.get(name, 0) + running.runner.metrics.sent
                )
                log.warning("exporter %s stopped (configuration reload)", name)
            for name, running in new.items():
                self._running[name] = running
                running.start()
                log.warning("exporter %s started (configuration reload)", name)

    def close(self) -> dict[str, int]:
        """Stop every runner (each saves its cursor); events sent per destination."""
        with self._lock:
            self._closed = True
            for running in self._running.values():
                running.stop.set()
            for running in self._running.values():
                running.end()
            sent = dict(self._sent_before)
            for name, running in self._running.items():
                sent[name] = sent.get(name, 0) + running.runner.metrics.sent
        return sent
