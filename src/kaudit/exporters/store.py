"""The `store` destination: the embedded search index, fed from the log like any
destination.

The runner hands over native lines and moves the cursor only after `send` returns, by
which time the batch is committed in SQLite; a batch sent again after a crash adds
nothing, because the index skips event ids it already has.
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
        self.added = 0

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
            self.added += self.index.add(records)
        except StoreError as exc:
            raise ExporterError(str(exc), retryable=exc.retryable) from exc

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None
