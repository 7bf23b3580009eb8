"""What exporters that render for themselves share: native log lines turned into events
with their bodies in the destination's format, and where a half-delivered batch got to.

Exporters that need the event's fields (timestamps for CloudWatch, structured data for
syslog, a readable Slack message) take the runner's native lines (`native_input`) and
decode them here, once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from kaudit.errors import EventDecodeError, ExporterError
from kaudit.events.codec import decode
from kaudit.events.formats import render_bytes
from kaudit.events.model import AuditEvent


@dataclass(frozen=True, slots=True)
class EventFields:
    """The fields of an event that destinations put in names, headers and metadata."""

    event_id: str
    event_type: str
    timestamp: str
    actor_id: str
    resource_type: str
    resource_id: str
    result: str
    sequence: int | None
    host: str | None
    cluster_id: str | None

    @classmethod
    def of(cls, event: AuditEvent) -> EventFields:
        return cls(
            event.event_id,
            event.event_type,
            event.timestamp,
            event.actor.id,
            event.resource.type,
            event.resource.id,
            event.action.result,
            event.integrity.sequence_number if event.integrity is not None else None,
            event.context.host,
            event.context.cluster_id,
        )

    @classmethod
    def read(cls, obj: Any) -> EventFields:
        """The fields of a native event parsed as JSON, checking only these fields: the
        full decode costs more than sending, and native bodies go out as they are."""
        try:
            actor, resource, action = obj["actor"], obj["resource"], obj["action"]
            integrity = obj.get("integrity") or {}
            context = obj.get("context") or {}
            fields = cls(
                obj["event_id"],
                obj["event_type"],
                obj["timestamp"],
                actor["id"],
                resource["type"],
                resource["id"],
                action.get("result", "success"),
                integrity.get("sequence_number"),
                context.get("host"),
                context.get("cluster_id"),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise EventDecodeError(f"not an audit event: missing or wrong field {exc}") from exc
        strings = (fields.event_id, fields.event_type, fields.timestamp, fields.actor_id)
        if not all(isinstance(v, str) for v in strings) or not (
            fields.sequence is None or isinstance(fields.sequence, int)
        ):
            raise EventDecodeError("not an audit event: a field has the wrong type")
        return fields


@dataclass(frozen=True, slots=True)
class Rendered:
    """One event's fields and its body in the destination's format (no trailing newline);
    `event` is the fully decoded event when it was asked for or needed for rendering."""

    fields: EventFields
    body: bytes
    event: AuditEvent | None = None

    @property
    def sequence(self) -> int | None:
        return self.fields.sequence


def render_lines(
    lines: list[bytes], fmt: str, destination: str, *, full: bool = False
) -> list[Rendered]:
    """Native log lines as events rendered in `fmt` (`full`: also decode each event
    completely); a line that is not an audit event makes the batch invalid (not
    retryable: it goes to the dead-letter file)."""
    out = []
    for index, line in enumerate(lines):
        line = line.rstrip(b"\n")
        try:
            if fmt == "native" and not full:
                out.append(Rendered(EventFields.read(orjson.loads(line)), line))
                continue
            event = decode(line)
        except (EventDecodeError, orjson.JSONDecodeError) as exc:
            raise ExporterError(
                f"{destination}: record {index + 1} of {len(lines)} is not an audit event: {exc}",
                retryable=False,
            ) from exc
        body = line if fmt == "native" else render_bytes(event, fmt)
        out.append(Rendered(EventFields.of(event), body, event))
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
