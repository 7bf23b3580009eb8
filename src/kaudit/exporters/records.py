"""What exporters that render for themselves share: native log lines turned into events
with their bodies in the destination's format, and where a half-delivered batch got to.

Exporters that need the event's fields (timestamps for CloudWatch, structured data for
syslog, a readable Slack message) take the runner's native lines (`native_input`) and
decode them here, once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from kaudit.errors import EventDecodeError, ExporterError
from kaudit.events.codec import decode
from kaudit.events.formats import render_bytes
from kaudit.events.model import AuditEvent


@dataclass(frozen=True, slots=True)
class Rendered:
    """One event and its body in the destination's format (no trailing newline)."""

    event: AuditEvent
    body: bytes

    @property
    def sequence(self) -> int | None:
        integrity = self.event.integrity
        return integrity.sequence_number if integrity is not None else None


def render_lines(lines: list[bytes], fmt: str, destination: str) -> list[Rendered]:
    """Decode native log lines and render them in `fmt`; a line that is not an audit
    event makes the batch invalid (not retryable: it goes to the dead-letter file)."""
    out = []
    for index, line in enumerate(lines):
        line = line.rstrip(b"\n")
        try:
            event = decode(line)
        except EventDecodeError as exc:
            raise ExporterError(
                f"{destination}: record {index + 1} of {len(lines)} is not an audit event: {exc}",
                retryable=False,
            ) from exc
        out.append(Rendered(event, line if fmt == "native" else render_bytes(event, fmt)))
    return out


def batch_key(lines: list[bytes]) -> str:
    """A short digest naming a batch: the same records give the same key."""
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.rstrip(b"\n"))
        digest.update(b"\n")
    return digest.hexdigest()[:16]


class Progress:
    """How many parts of a batch a destination has already taken, so the runner's retry
    of the same batch resumes after them instead of sending them again (in this process;
    after a crash the last batch is sent whole, which is the at-least-once duplicate)."""

    def __init__(self) -> None:
        self._key: str | None = None
        self._done = 0

    def start(self, key: str) -> int:
        """Parts already delivered of the batch called `key` (0 for a new batch)."""
        if key != self._key:
            self._key, self._done = key, 0
        return self._done

    def advance(self, done: int) -> None:
        self._done = done

    def finish(self) -> None:
        self._key, self._done = None, 0
