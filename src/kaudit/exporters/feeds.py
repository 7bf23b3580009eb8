"""Where an exporter runner reads the audit log from, and how it saves its cursor: the
local segment log with a cursor file (`LocalFeed`), or the Kafka log topic with a
consumer group whose committed offsets are the cursor (`KafkaFeed`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from kaudit.config.model import KafkaLog
from kaudit.log.cursor import Cursor
from kaudit.log.segments import LogReader, Position


class Feed(Protocol):
    """Where a runner reads the log from, and how it saves its cursor."""

    def read(self, max_lines: int) -> tuple[list[bytes], Any]:
        """The next lines and a token that `commit` takes to move the cursor past them."""

    def commit(self, token: Any, sequence: int | None) -> None: ...

    def lag(self) -> int: ...

    def position(self) -> dict[str, Any] | None: ...

    def last_sequence(self) -> int | None: ...

    def close(self) -> None: ...


class LocalFeed:
    """The local segment log, with a cursor file (read once; this feed is its only
    writer, so the position is kept in memory and the file is only written)."""

    def __init__(self, log_dir: Path, cursor: Cursor) -> None:
        self.reader = LogReader(log_dir)
        self.cursor = cursor
        self._position = cursor.load()
        self._sequence = cursor.sequence()
        # Reading runs ahead of the saved position while delivered batches wait to be
        # settled (see ExporterRunner); with immediate commits the two stay equal.
        self._read_at = self._position

    def read(self, max_lines: int) -> tuple[list[bytes], Any]:
        lines, token = self.reader.read(self._read_at, max_lines)
        if lines:
            self._read_at = token
        return lines, token

    def rewind(self) -> None:
        """Read again from the saved position (what was read since was not delivered)."""
        self._read_at = self._position

    def seek(self, position: Position) -> None:
        """Read from `position` on: a reader that saves its position with its own work
        (the alert engine) resumes where that work stopped, not at the cursor file."""
        self._position = self._read_at = position

    def commit(self, token: Any, sequence: int | None) -> None:
        self.cursor.save(token, sequence=sequence)
        self._position, self._sequence = token, sequence

    def lag(self) -> int:
        return sum(1 for _ in self.reader.iter_lines(self._position))

    def position(self) -> dict[str, Any] | None:
        at = self._position
        return None if at is None else {"segment": at.segment, "offset": at.offset}

    def last_sequence(self) -> int | None:
        return self._sequence

    def close(self) -> None:
        pass


_EMPTY_POLLS_BEFORE_IDLE = 30


class KafkaFeed:
    """The Kafka log topic, with a consumer group whose committed offsets are the cursor."""

    def __init__(self, config: KafkaLog, group: str, poll_s: float = 1.0) -> None:
        from kaudit.log.kafka import KafkaLogReader

        self.reader = KafkaLogReader(config, group=group)
        self.group = group
        self.poll_s = poll_s
        self._last_sequence: int | None = None

    def read(self, max_lines: int) -> tuple[list[bytes], Any]:
        records = self.reader.poll_batch(max_lines, self.poll_s)
        # An empty poll can mean a rebalance in progress rather than the end: say
        # "caught up" only when the group has nothing left to read.
        for _ in range(_EMPTY_POLLS_BEFORE_IDLE):
            if records or self.reader.lag() == 0:
                break
            records = self.reader.poll_batch(max_lines, self.poll_s)
        return [r.line for r in records], records

    def commit(self, token: Any, sequence: int | None) -> None:
        self.reader.commit(token)
        self._last_sequence = sequence

    def lag(self) -> int:
        return self.reader.lag()

    def position(self) -> dict[str, Any] | None:
        return {"consumer_group": self.group}

    def last_sequence(self) -> int | None:
        return self._last_sequence

    def close(self) -> None:
        self.reader.close()
