"""What the recorder needs of the parts it writes through: the audit log (`LogSink`) and
the integrity step (`Sealer`). kaudit.log and kaudit.integrity provide them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class LogSink(Protocol):
    """What the recorder needs of an audit log: sequenced, all-or-nothing batch appends.

    A sink that partitions by resource (the Kafka log) sets `keyed = True` and is given
    one key (`type:id` of the event's resource) per line. A sink that may hold part of a
    failed batch (the Kafka log) has `abandon()`, called when the writer gives the batch
    up at close: it returns the indexes of the lines it has written all the same.
    """

    next_sequence: int
    keyed: bool

    def append(self, lines: Sequence[bytes], keys: Sequence[bytes] | None = None) -> None: ...

    def close(self) -> None: ...


class Sealer(Protocol):
    """Integrity applied once, at the writer (kaudit.integrity): seals each line in
    sequence order, learns what became durable, and keeps time for checkpoints."""

    seals: bool
    """Whether it signs lines: then the writer hands it heads (`seal_heads`)."""

    def seal(self, line: bytes) -> bytes:
        """The line with its integrity fields filled in."""

    def seal_heads(self, heads: Sequence[bytes]) -> list[bytes]:
        """Sealed lines from heads: canonical bytes up to and including `"signature":`."""

    def appended(self, lines: Sequence[bytes]) -> None:
        """These sealed lines are durable in the log, in this order."""

    def tick(self) -> None:
        """Called about twice a second by the writer, also while idle."""

    def close(self, *, checkpoint: bool = True) -> None:
        """Stop; with `checkpoint` (the log took everything), write the final checkpoint."""
