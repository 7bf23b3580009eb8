"""The renderings a destination can pick with `format:`: native, CloudEvents and OCSF.

`render` gives plain JSON types, `render_bytes` the bytes an exporter writes. Native bytes
are the codec's canonical bytes (what the log stores and signs); the other formats are
serialised with sorted keys so the same event always gives the same bytes.
"""

from __future__ import annotations

from typing import Any

import orjson

from kaudit.events import codec
from kaudit.events.formats.cloudevents import from_cloudevent, to_cloudevent, to_cloudevent_binary
from kaudit.events.formats.ocsf import to_ocsf
from kaudit.events.model import AuditEvent

FORMATS: tuple[str, ...] = ("native", "cloudevents", "ocsf")

__all__ = [
    "FORMATS",
    "from_cloudevent",
    "render",
    "render_bytes",
    "to_cloudevent",
    "to_cloudevent_binary",
    "to_ocsf",
]


def _check(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown event format {fmt!r}; accepted: {', '.join(FORMATS)}")


def render(event: AuditEvent, fmt: str) -> dict[str, Any]:
    """`event` in format `fmt` as plain JSON types."""
    _check(fmt)
    if fmt == "cloudevents":
        return to_cloudevent(event)
    if fmt == "ocsf":
        return to_ocsf(event)
    return codec.to_dict(event)


def render_bytes(event: AuditEvent, fmt: str) -> bytes:
    """`event` in format `fmt` as compact UTF-8 JSON, without a trailing newline."""
    _check(fmt)
    if fmt == "native":
        return codec.encode(event)
    return orjson.dumps(render(event, fmt), option=orjson.OPT_SORT_KEYS)
