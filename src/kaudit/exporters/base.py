"""The exporter contract: what a destination implements to be fed from the audit log.

An `Exporter` only knows how to deliver a batch of rendered events to its destination.
Everything around it — reading the log behind a cursor (`feeds`), selecting, rendering,
retrying and dead letters (`runner`), which class serves which destination type
(`registry`) — is kept out of it, so a destination stays small.
"""

from __future__ import annotations

from typing import Protocol


class Exporter(Protocol):
    """Delivers rendered events (one JSON document each, no newline) to a destination.

    An exporter that renders by itself (e.g. CloudEvents binary mode, where attributes
    become Kafka headers) sets `native_input = True` and is given the native canonical
    lines instead. An exporter with an `idle(delivered_through)` method has it called
    whenever the runner has caught up with the log, with the sequence number of the last
    event delivered (the S3 exporter uploads the heartbeat checkpoints then).
    """

    name: str

    def send(self, records: list[bytes]) -> None:
        """Deliver all of `records` or raise ExporterError (retryable or not)."""

    def close(self) -> None: ...
