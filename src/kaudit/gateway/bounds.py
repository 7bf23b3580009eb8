"""Declared lengths in a frame, checked before kio's native reader sees the frame.

kio's reader (Rust) reserves room for an array's declared item count before it reads a
single item, so a frame that declares billions of items aborts the whole process
("memory allocation of … bytes failed"): no exception, nothing to catch, every client of
the gateway cut off by one request. Kafka's own readers refuse such a frame ("Tried to
allocate a collection of size N, but there are only M bytes remaining"); this module
does the same before kio reads anything. It walks the frame along the schema kio reads
it with, built from kio's introspection of the entity dataclasses (so every API and
version kio knows is covered), and refuses any array count, string or bytes length or
tagged field size that the bytes left in the frame cannot hold.

Where kio's reader succeeds the walk takes the same steps (a nullable struct by its int8
marker, a tagged field by its schema, the request header's client id as a legacy
string), so every length kio acts on has been checked first. Where kio would fail the
walk may go on or stop: kio fails there anyway. Each entity type is compiled once into a
walker: runs of fixed-size fields become one skip and arrays of fixed-size items one
multiplication; walking allocates nothing per field. On the way it notes every tagged
field the schema does not know (see tagged), which kio would refuse and the broker skips.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import Field, dataclass, fields
from functools import cache
from typing import Any, TypeAlias

from kio.serial._introspect import (
    EntityField,
    EntityTupleField,
    PrimitiveField,
    PrimitiveTupleField,
    classify_field,
    get_field_tag,
    get_schema_field_type,
    is_optional,
)
from kio.static.protocol import Entity

from kaudit.gateway.tagged import UnknownTag

Frame: TypeAlias = bytes | memoryview
Walker: TypeAlias = Callable[[Frame, int, int, list[UnknownTag]], int]
"""(frame, offset, end, unknown) → the offset after one value; raises DeclaredLengthError.
Each tagged field the schema does not know is appended to `unknown`."""
FrameCheck: TypeAlias = Callable[[Frame, list[UnknownTag]], int]

_I16 = struct.Struct(">h").unpack_from
_I32 = struct.Struct(">i").unpack_from

# Sizes of the kafka_types kio reads as a fixed number of bytes, null or not.
_FIXED_SIZES = {
    "bool": 1,
    "int8": 1,
    "uint8": 1,
    "int16": 2,
    "uint16": 2,
    "error_code": 2,
    "int32": 4,
    "uint32": 4,
    "timedelta_i32": 4,
    "int64": 8,
    "uint64": 8,
    "float64": 8,
    "timedelta_i64": 8,
    "datetime_i64": 8,
    "uuid": 16,
}


class DeclaredLengthError(Exception):
    """A length declared in a frame that the rest of the frame cannot hold (or a frame
    that ends inside a value). `path` names the field, innermost part first."""

    def __init__(self, problem: str, where: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.path: list[str] = [] if where is None else [where]

    def __str__(self) -> str:
        where = ""
        for part in reversed(self.path):
            where += part if not where or part.startswith("[") else "." + part
        return f"{where} {self.problem}" if where else self.problem


def _items(count: int, least: int, left: int) -> DeclaredLengthError:
    items = "item" if count == 1 else "items"
    sized = f" of at least {least} bytes" if least > 1 else ""
    return DeclaredLengthError(f"declares {count} {items}{sized} but only {left} bytes are left")


def _bytes(count: int, left: int) -> DeclaredLengthError:
    return DeclaredLengthError(f"declares {count} bytes but only {left} are left")


def _negative(count: int) -> DeclaredLengthError:
    return DeclaredLengthError(f"declares a length of {count}")


_ENDS_EARLY = "runs past the end of the frame"


def _uvarint(buf: Frame, p: int) -> tuple[int, int]:
    """(value, offset after it) of the unsigned varint at `p`, as kio reads it: at most
    five bytes, the fifth's seven bits unmasked."""
    value = shift = 0
    for _ in range(5):
        byte = buf[p]
        p += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, p
        shift += 7
    raise DeclaredLengthError("holds a varint longer than five bytes")


# -- strings and bytes -----------------------------------------------------------------


def _compact_bytes(buf: Frame, p: int, end: int, unknown: list[UnknownTag]) -> int:
    """A compact string or bytes, nullable or not: a varint of length + 1, then bytes."""
    # The one-byte varint is read inline here and in the compact arrays below, not through
    # _uvarint: it is almost every length in a frame, and a call per field costs more.
    n = buf[p]
    if n < 0x80:
        p += 1
    else:
        n, p = _uvarint(buf, p)
    if n > 1:
        n -= 1
        if n > end - p:
            raise _bytes(n, end - p)
        return p + n
    return p


def _legacy_sized(read_length: Callable[[Frame, int], tuple[int]], width: int) -> Walker:
    """A legacy string (int16 length) or bytes (int32 length), nullable or not: the
    length (-1 for null), then that many bytes."""

    def walk(buf: Frame, p: int, end: int, unknown: list[UnknownTag]) -> int:
        n: int
        (n,) = read_length(buf, p)
        p += width
        if n > 0:
            if n > end - p:
                raise _bytes(n, end - p)
            return p + n
        if n < -1:
            raise _negative(n)
        return p

    return walk


_legacy_string = _legacy_sized(_I16, 2)
_legacy_bytes = _legacy_sized(_I32, 4)


# -- arrays ----------------------------------------------------------------------------


def _compact_fixed_array(size: int) -> Walker:
    """A compact array (count + 1 as a varint, 0 for null) of `size`-byte items."""

    def walk(buf: Frame, p: int, end: int, unknown: list[UnknownTag]) -> int:
        n = buf[p]
        if n < 0x80:
            p += 1
        else:
            n, p = _uvarint(buf, p)
        if n > 1:
            total = (n - 1) * size
            if total > end - p:
                raise _items(n - 1, size, end - p)
            return p + total
        return p

    return walk


def _legacy_fixed_array(size: int) -> Walker:
    """A legacy array (int32 count, -1 for null) of `size`-byte items."""

    def walk(buf: Frame, p: int, end: int, unknown: list[UnknownTag]) -> int:
        n: int
        (n,) = _I32(buf, p)
        p += 4
        if n > 0:
            total = n * size
            if total > end - p:
                raise _items(n, size, end - p)
            return p + total
        if n < -1:
            raise _negative(n)
        return p

    return walk


def _items_of(
    item: Walker, least: int, n: int, buf: Frame, p: int, end: int, unknown: list[UnknownTag]
) -> int:
    """Walk `n` items from `p`, once the bytes left can hold `n` of at least `least`
    bytes; an error names the item it was found in."""
    if n * least > end - p:
        raise _items(n, least, end - p)
    i = 0
    try:
        for i in range(n):  # noqa: B007 (named in the error)
            p = item(buf, p, end, unknown)
    except DeclaredLengthError as exc:
        exc.path.append(f"[{i}]")
        raise
    except (IndexError, struct.error):
        raise DeclaredLengthError(_ENDS_EARLY, f"[{i}]") from None
    return p


def _compact_array(item: Walker, least: int) -> Walker:
    """A compact array of items of varying size, each at least `least` bytes."""

    def walk(buf: Frame, p: int, end: int, unknown: list[UnknownTag]) -> int:
        n = buf[p]
        if n < 0x80:
            p += 1
        else:
            n, p = _uvarint(buf, p)
        if n <= 1:
            return p
        n -= 1
        return _items_of(item, least, n, buf, p, end, unknown)

    return walk


def _legacy_array(item: Walker, least: int) -> Walker:
    """A legacy array of items of varying size, each at least `least` bytes."""

    def walk(buf: Frame, p: int, end: int, unknown: list[UnknownTag]) -> int:
        n: int
        (n,) = _I32(buf, p)
        p += 4
        if n <= 0:
            if n < -1:
                raise _negative(n)
            return p
        return _items_of(item, least, n, buf, p, end, unknown)

    return walk


# -- entities --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Part:
    """How to walk one value: its exact size when fixed, the fewest bytes it takes."""

    size: int | None
    least: int
    walk: Walker


@cache
def _skip(size: int) -> _Part:
    def walk(buf: Frame, p: int, end: int, unknown: list[UnknownTag]) -> int:
        return p + size

    return _Part(size, size, walk)


_LEGACY_STRING = _Part(None, 2, _legacy_string)
_LEGACY_BYTES = _Part(None, 4, _legacy_bytes)
_COMPACT_BYTES = _Part(None, 1, _compact_bytes)


def _primitive(kafka_type: str, flexible: bool) -> _Part:
    size = _FIXED_SIZES.get(kafka_type)
    if size is not None:
        return _skip(size)
    if kafka_type in ("string", "bytes", "records"):
        if flexible:
            return _COMPACT_BYTES
        return _LEGACY_STRING if kafka_type == "string" else _LEGACY_BYTES
    raise NotImplementedError(f"no length check for kafka_type {kafka_type!r}")


def _array(item: _Part, flexible: bool) -> _Part:
    if item.size:
        walk = (_compact_fixed_array if flexible else _legacy_fixed_array)(item.size)
    else:
        # Items of no size at all still count against the bytes left, as in Kafka.
        least = max(item.least, 1)
        walk = (_compact_array if flexible else _legacy_array)(item.walk, least)
    return _Part(None, 1 if flexible else 4, walk)


def _field(field: Field[Any], flexible: bool, request_header: bool) -> _Part:
    """The part kio's native reader reads `field` as (its build_field_schema)."""
    if request_header and field.name == "client_id":
        return _LEGACY_STRING  # always a legacy string, as in Apache Kafka
    shape = classify_field(field)
    item: _Part
    if isinstance(shape, PrimitiveField | PrimitiveTupleField):
        item = _primitive(get_schema_field_type(field), flexible)
    elif isinstance(shape, EntityField):
        item = _entity(shape.type_, is_optional(field))
    elif isinstance(shape, EntityTupleField):
        item = _entity(shape.type_, False)
    else:  # pragma: no cover - kio knows no other shape
        raise NotImplementedError(f"no length check for field {field.name!r}")
    return _array(item, flexible) if shape.is_array else item


def _tags(known: dict[int, tuple[Walker, str]]) -> Walker:
    """The tagged fields of a flexible entity: a varint count, then per field its tag,
    its size and its value. kio reads a known tag's value by its schema (not its size);
    a tag the schema does not know is skipped by its size, as the broker skips it, and
    noted in `unknown` (kio refuses it: the codec cuts it out before kio reads)."""

    def walk(buf: Frame, p: int, end: int, unknown: list[UnknownTag]) -> int:
        section = p
        count, p = _uvarint(buf, p)
        if count * 2 > end - p:
            raise DeclaredLengthError(
                f"declares {count} tagged fields but only {end - p} bytes are left"
            )
        for _ in range(count):
            start = p
            tag, p = _uvarint(buf, p)
            size, p = _uvarint(buf, p)
            entry = known.get(tag)
            if size > end - p:
                name = f"tag {tag}" if entry is None else f"{entry[1]} (tag {tag})"
                raise DeclaredLengthError(
                    f"declares {size} bytes but only {end - p} are left", name
                )
            if entry is None:
                p += size
                unknown.append(UnknownTag(section, tag, start, p))
                continue
            try:
                p = entry[0](buf, p, end, unknown)
            except DeclaredLengthError as exc:
                exc.path.append(entry[1])
                raise
        return p

    return walk


def _entity_walker(
    steps: tuple[tuple[int, Walker, str], ...], tail: int, tags: Walker | None
) -> Walker:
    """Walk `steps` (bytes to skip, then a value of varying size, named), skip `tail`
    bytes, then read the tagged fields when the entity is flexible (`tags`)."""
    if tags is None:

        def walk(buf: Frame, p: int, end: int, unknown: list[UnknownTag]) -> int:
            label = ""
            try:
                for skip, step, label in steps:  # noqa: B007 (named in the error)
                    p = step(buf, p + skip, end, unknown)
            except DeclaredLengthError as exc:
                exc.path.append(label)
                raise
            except (IndexError, struct.error):
                raise DeclaredLengthError(_ENDS_EARLY, label) from None
            return p + tail

        return walk

    def walk_flexible(buf: Frame, p: int, end: int, unknown: list[UnknownTag]) -> int:
        label = ""
        try:
            for skip, step, label in steps:  # noqa: B007 (named in the error)
                p = step(buf, p + skip, end, unknown)
            p += tail
            label = ""
            if buf[p] == 0:  # no tagged fields: the common case
                return p + 1
            return tags(buf, p, end, unknown)
        except DeclaredLengthError as exc:
            if label:
                exc.path.append(label)
            raise
        except (IndexError, struct.error):
            raise DeclaredLengthError(_ENDS_EARLY, label or None) from None

    return walk_flexible


@cache
def _entity(entity_type: type[Entity], nullable: bool) -> _Part:
    """The part kio's native reader reads an entity as (its compile_entity_schema)."""
    flexible = bool(entity_type.__flexible__)
    request_header = entity_type.__name__ == "RequestHeader"
    steps: list[tuple[int, Walker, str]] = []
    known: dict[int, tuple[Walker, str]] = {}
    skip = least = 0
    for field in fields(entity_type):
        tag = get_field_tag(field)
        part = _field(field, flexible, request_header)
        if tag is not None:
            known[int(tag)] = (part.walk, field.name)
        elif part.size is not None:
            skip += part.size
            least += part.size
        else:
            steps.append((skip, part.walk, field.name))
            skip = 0
            least += part.least
    if known and not flexible:
        raise ValueError(f"{entity_type.__name__}: tagged fields on a non-flexible entity")
    if flexible:
        least += 1
    elif not steps and not nullable:
        return _skip(skip)
    walk = _entity_walker(tuple(steps), skip, _tags(known) if flexible else None)
    if not nullable:
        return _Part(None, least, walk)

    def walk_nullable(buf: Frame, p: int, end: int, unknown: list[UnknownTag]) -> int:
        if buf[p] == 0xFF:  # int8 -1: null (KIP-893)
            return p + 1
        return walk(buf, p + 1, end, unknown)

    return _Part(None, 1, walk_nullable)


def frame_check(header: type[Entity], body: type[Entity]) -> FrameCheck:
    """A check of a frame (no size prefix) holding a `header` then a `body` entity:
    DeclaredLengthError, naming the field, if any length in it is more than the bytes
    after it hold, or if the frame ends inside a value; else the offset after the body,
    with every tagged field the schemas do not know appended to `unknown`. Built once per
    schema (the codec caches it per API and version)."""
    walk_header = _entity(header, False).walk
    walk_body = _entity(body, False).walk
    header_name, body_name = header.__name__, body.__name__

    def check(buf: Frame, unknown: list[UnknownTag]) -> int:
        end = len(buf)
        try:
            p = walk_header(buf, 0, end, unknown)
        except DeclaredLengthError as exc:
            exc.path.append(header_name)
            raise
        try:
            p = walk_body(buf, p, end, unknown)
        except DeclaredLengthError as exc:
            exc.path.append(body_name)
            raise
        if p > end:
            raise DeclaredLengthError(_ENDS_EARLY, body_name)
        return p

    return check
