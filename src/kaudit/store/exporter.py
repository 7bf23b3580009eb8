"""The `store` destination: the embedded search index, fed from the log like any
destination.

The runner hands over native lines; `send` returns while the last part of the batch is
still being committed, so the next batch is read and decoded meanwhile, and the runner
moves the cursor only past batches `unsettled_since` says are committed. A batch sent
again after a crash adds nothing, because the index skips event ids it already has.
"""

from __future__ import annotations

from pathlib import Path

from kaudit.config.model import StoreDestination
from kaudit.errors import ExporterError, StoreError
from kaudit.store.index import EventIndex


class StoreExporter:
    """Adds events to the SQLite index at the destination's path."""

    native_input = True
    batch_max = 20_000
    """Lines per batch: each batch is one SQLite transaction, and a commit (full-text
    segment, WAL sync) costs as much as indexing a few thousand events."""

    def __init__(self, config: StoreDestination, data_path: Path) -> None:
        self.config = config
        self.name = config.display_name
        self.path = config.index_path(data_path)
        self._index: EventIndex | None = None
        self._added_before = 0
        """Events added by indexes this exporter opened and closed again."""

    @property
    def added(self) -> int:
        """Events newly added to the index (committed) through this exporter."""
        return self._added_before + (self._index.added if self._index is not None else 0)

    @property
    def index(self) -> EventIndex:
        if self._index is None:
            try:
                self._index = EventIndex(self.path)
            except StoreError as exc:
                raise ExporterError(str(exc), retryable=exc.retryable) from exc
        return self._index

    def send(self, records: list[bytes]) -> None:
        try:
            self.index.submit(records)
        except StoreError as exc:
            raise ExporterError(str(exc), retryable=exc.retryable) from exc

    def unsettled_since(self) -> float | None:
        """When the oldest batch not yet committed was sent (None: all are)."""
        return None if self._index is None else self._index.unsettled_since()

    def idle(self, last_sequence: int | None) -> None:
        """Caught up: commit what is in flight, so a failed commit is retried now."""
        if self._index is None:
            return
        try:
            self._index.flush()
        except StoreError as exc:
            raise ExporterError(str(exc), retryable=exc.retryable) from exc

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._added_before += self._index.added
            self._index = None
