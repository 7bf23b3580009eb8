"""Frames with tagged fields no schema knows, as a newer client (or an attacker) sends them.

`write_with_tags` writes a kio entity the way kio's writer does, field by field with
kio's own field writers, but adds, in every flexible entity's tagged fields, the extra
ones `extra` chooses for it (tag number, raw value), in tag order as Kafka writes them.
Known tagged fields inside a known tagged field are written by kio unchanged.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from dataclasses import MISSING, fields
from functools import cache
from typing import Any

from kio.serial._implicit_defaults import get_tagged_field_default
from kio.serial._introspect import (
    EntityField,
    EntityTupleField,
    classify_field,
    get_field_tag,
    is_optional,
)
from kio.serial._serialize import get_field_writer
from kio.serial.writers import (
    compact_array_writer,
    legacy_array_writer,
    write_int8,
    write_tagged_field,
    write_unsigned_varint,
)
from kio.static.primitive import i8, uvarint

Extra = Callable[[type[Any]], list[tuple[int, bytes]]]
"""Chooses the unknown tagged fields (tag, value) to add to one entity of a type."""


@cache
def known_tags(entity_type: type[Any]) -> frozenset[int]:
    """The tag numbers an entity type's schema knows."""
    tags = (get_field_tag(f) for f in fields(entity_type))
    return frozenset(int(t) for t in tags if t is not None)


def write_with_tags(buffer: io.BytesIO, entity: Any, extra: Extra) -> None:
    """Write `entity` with the unknown tagged fields `extra` chooses for each entity."""
    entity_type = type(entity)
    flexible = bool(entity_type.__flexible__)
    request_header = entity_type.__name__ == "RequestHeader"
    tagged: list[tuple[int, bytes]] = []
    for field in fields(entity_type):
        value = getattr(entity, field.name)
        tag = get_field_tag(field)
        if tag is not None:
            default = get_tagged_field_default(field)
            if value == field.default or (field.default is MISSING and value == default):
                continue  # kio leaves out a tagged field at its default
            out = io.BytesIO()
            writer = get_field_writer(field, flexible, request_header, is_tag=True)
            write_tagged_field(out, tag, writer, value)
            tagged.append((int(tag), out.getvalue()))
            continue
        shape = classify_field(field)
        if isinstance(shape, EntityField):
            if is_optional(field):
                write_int8(buffer, i8(-1 if value is None else 1))
                if value is None:
                    continue
            write_with_tags(buffer, value, extra)
        elif isinstance(shape, EntityTupleField):

            def item(out: Any, value: Any) -> None:
                write_with_tags(out, value, extra)

            (compact_array_writer if flexible else legacy_array_writer)(item)(buffer, value)
        else:
            get_field_writer(field, flexible, request_header, is_tag=False)(buffer, value)
    if not flexible:
        return
    for tag, value in extra(entity_type):
        out = io.BytesIO()
        write_unsigned_varint(out, uvarint(tag))
        write_unsigned_varint(out, uvarint(len(value)))
        out.write(value)
        tagged.append((tag, out.getvalue()))
    tagged.sort(key=lambda entry: entry[0])
    write_unsigned_varint(buffer, uvarint(len(tagged)))
    for _, entry in tagged:
        buffer.write(entry)


def frame_with_tags(header: Any, body: Any, extra: Extra) -> bytes:
    """A whole frame (size prefix included) of `header` then `body`, with the unknown
    tagged fields `extra` chooses."""
    out = io.BytesIO()
    write_with_tags(out, header, extra)
    write_with_tags(out, body, extra)
    data = out.getvalue()
    return struct.pack(">i", len(data)) + data


def no_tags(entity_type: type[Any]) -> list[tuple[int, bytes]]:
    return []
