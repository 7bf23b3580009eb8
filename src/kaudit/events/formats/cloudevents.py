"""CloudEvents 1.0 rendering of an audit event: JSON structured mode and Kafka binary mode.

The CloudEvent's `data` is the native event (codec.to_dict), so nothing is lost and
`from_cloudevent` / `from_cloudevent_binary` give back the event exactly. The context
attributes (`id`, `source`, `type`, `time`, `subject`) are derived from it so routers and
filters can work without looking into `data`.

Also owns `parse_rfc3339`, the strict timestamp parser the other renderings share,
because CloudEvents' `time` is where RFC 3339 is a hard rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import orjson

from kaudit.errors import EventDecodeError
from kaudit.events import codec
from kaudit.events.model import AuditEvent

SPEC_VERSION = "1.0"
TYPE_PREFIX = "io.kaudit."
DATA_CONTENT_TYPE = "application/json"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"
"""The Kafka `content-type` header value for a structured-mode record."""

# The Kafka protocol binding prefixes every context attribute with `ce_`, except
# `datacontenttype`, which travels as the plain `content-type` header (binding §3.2).
HEADER_PREFIX = "ce_"
CONTENT_TYPE_HEADER = "content-type"

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)


def parse_rfc3339(timestamp: str) -> datetime | None:
    """`timestamp` as an aware datetime if it is a valid RFC 3339 date-time, else None.

    Stricter than `datetime.fromisoformat`, which also takes forms RFC 3339 forbids
    (no offset, week dates); fractions beyond microseconds are truncated.
    """
    m = _RFC3339.fullmatch(timestamp)
    if m is None:
        return None
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = m.groups()
    try:
        offset = timedelta(0)
        if zulu is None:
            offset = timedelta(hours=int(off_h), minutes=int(off_m))
            if sign == "-":
                offset = -offset
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=timezone(offset),
        )
    except ValueError:
        # Out-of-range fields (month 13, second 60, offset of 24h) are not a time
        # we can place on the timeline.
        return None


def default_source(event: AuditEvent) -> str:
    """`kaudit://<cluster or host>/<source>`: where the event was recorded, as a URI."""
    ctx = event.context
    # Each part is percent-encoded whole so any cluster id yields a valid URI-reference.
    authority = quote(ctx.cluster_id or ctx.host or "", safe="")
    return f"kaudit://{authority}/{quote(ctx.source or 'sdk', safe='')}"


def event_type(event: AuditEvent) -> str:
    """The reverse-DNS CloudEvents type, e.g. `io.kaudit.topic.created`."""
    return TYPE_PREFIX + event.event_type


def subject(event: AuditEvent) -> str:
    """The resource the event is about: its path, or `type/id` when it has none."""
    return event.resource.path or f"{event.resource.type}/{event.resource.id}"


def _attributes(event: AuditEvent, source: str | None) -> dict[str, str]:
    if not event.event_id:
        raise ValueError("a CloudEvent needs a non-empty id, and this event has no event_id")
    attrs = {
        "specversion": SPEC_VERSION,
        "id": event.event_id,
        "source": source if source is not None else default_source(event),
        "type": event_type(event),
    }
    if not attrs["source"]:
        raise ValueError("a CloudEvent needs a non-empty source")
    # `time` is optional in CloudEvents but must be RFC 3339 when present; a timestamp
    # that is not stays available, verbatim, in `data`.
    if parse_rfc3339(event.timestamp) is not None:
        attrs["time"] = event.timestamp
    attrs["subject"] = subject(event)
    attrs["datacontenttype"] = DATA_CONTENT_TYPE
    return attrs


def to_cloudevent(event: AuditEvent, source: str | None = None) -> dict[str, Any]:
    """The event as a structured-mode CloudEvent (JSON event format), `data` = native event."""
    ce: dict[str, Any] = dict(_attributes(event, source))
    ce["data"] = codec.to_dict(event)
    return ce


def to_cloudevent_binary(
    event: AuditEvent, source: str | None = None
) -> tuple[list[tuple[str, bytes]], bytes]:
    """Kafka binary-mode headers and record value: the canonical native bytes."""
    headers = [
        (
            CONTENT_TYPE_HEADER if name == "datacontenttype" else HEADER_PREFIX + name,
            value.encode(),
        )
        for name, value in _attributes(event, source).items()
    ]
    return headers, codec.encode(event)


def from_cloudevent(obj: Mapping[str, Any] | bytes | str) -> AuditEvent:
    """The event carried by a structured-mode CloudEvent (object or its JSON text)."""
    if isinstance(obj, bytes | str):
        try:
            obj = orjson.loads(obj)
        except orjson.JSONDecodeError as exc:
            raise EventDecodeError(f"CloudEvent is not JSON: {exc}") from exc
    if not isinstance(obj, Mapping):
        raise EventDecodeError(f"CloudEvent must be a JSON object, got {type(obj).__name__}")
    _check_attributes(obj.get("specversion"), obj.get("id"), obj.get("datacontenttype"))
    if "data" not in obj:
        raise EventDecodeError("CloudEvent has no data; kaudit events carry the event in data")
    data = obj["data"]
    event = codec.decode(data) if isinstance(data, bytes | str) else codec.from_dict(data)
    return _matching(event, obj.get("id"), obj.get("type"))


def from_cloudevent_binary(headers: Iterable[tuple[str, bytes | str]], value: bytes) -> AuditEvent:
    """The event carried by a Kafka binary-mode CloudEvent record."""
    attrs: dict[str, str] = {}
    for name, raw in headers:
        text = raw.decode() if isinstance(raw, bytes) else raw
        key = name.lower()
        if key == CONTENT_TYPE_HEADER:
            attrs["datacontenttype"] = text
        elif key.startswith(HEADER_PREFIX):
            attrs[key[len(HEADER_PREFIX) :]] = text
    _check_attributes(attrs.get("specversion"), attrs.get("id"), attrs.get("datacontenttype"))
    return _matching(codec.decode(value), attrs.get("id"), attrs.get("type"))


def _check_attributes(specversion: object, ce_id: object, content_type: object) -> None:
    if specversion != SPEC_VERSION:
        raise EventDecodeError(
            f"CloudEvent specversion must be {SPEC_VERSION!r}, got {specversion!r}"
        )
    if not isinstance(ce_id, str) or not ce_id:
        raise EventDecodeError(f"CloudEvent id must be a non-empty string, got {ce_id!r}")
    # Absent means JSON by the JSON event format's rule; anything else is not ours.
    if content_type is not None and not (
        isinstance(content_type, str)
        and content_type.split(";")[0].strip().lower() == DATA_CONTENT_TYPE
    ):
        raise EventDecodeError(
            f"CloudEvent datacontenttype must be {DATA_CONTENT_TYPE!r}, got {content_type!r}"
        )


def _matching(event: AuditEvent, ce_id: object, ce_type: object) -> AuditEvent:
    # A mismatch means the envelope was edited or built for another event: the data is
    # the signed part, but a receiver deduplicating on `id` would be misled.
    if ce_id != event.event_id:
        raise EventDecodeError(
            f"CloudEvent id {ce_id!r} does not match data.event_id {event.event_id!r}"
        )
    if ce_type is not None and ce_type != event_type(event):
        raise EventDecodeError(
            f"CloudEvent type {ce_type!r} does not match data.event_type "
            f"{event.event_type!r} (expected {event_type(event)!r})"
        )
    return event
