"""Tagged fields a schema does not know: where they are in a frame, and the frame
without them.

Kafka's rule for flexible versions (KIP-482) is that a reader skips a tagged field it
does not know: the broker does, so such a field never stops a request from acting. kio's
reader refuses it instead. The gateway therefore decodes as the broker does: `bounds`
notes each unknown tagged field while it walks a frame, and `without_unknown_tags`
gives kio the same frame with those fields cut out (and each tagged-field count
lowered to match). The original bytes are what the broker gets; the tags are noted in
the audit event.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass

from kio.serial.readers import read_unsigned_varint
from kio.serial.writers import write_unsigned_varint
from kio.static.primitive import uvarint


@dataclass(frozen=True, slots=True)
class UnknownTag:
    """One tagged field the schema does not know: `tag`, the offset of the count of the
    tagged fields it is one of (`section`), and where it starts (its tag) and ends."""

    section: int
    tag: int
    start: int
    end: int


def _uvarint(value: int) -> bytes:
    out = io.BytesIO()
    write_unsigned_varint(out, uvarint(value))
    return out.getvalue()


def without_unknown_tags(frame: bytes | memoryview, unknown: Iterable[UnknownTag]) -> bytes:
    """`frame` with each of the `unknown` tagged fields cut out and the count before
    them lowered by as many. The fields were found by walking `frame`, so none overlaps
    another or a count (an unknown field's inside is never walked)."""
    dropped: dict[int, int] = {}
    cuts: list[tuple[int, int, bytes]] = []
    for field in unknown:
        dropped[field.section] = dropped.get(field.section, 0) + 1
        cuts.append((field.start, field.end, b""))
    for section, count in dropped.items():
        declared, size = read_unsigned_varint(frame, section)
        cuts.append((section, section + size, _uvarint(int(declared) - count)))
    out = bytearray()
    at = 0
    for start, end, replacement in sorted(cuts):
        out += frame[at:start]
        out += replacement
        at = end
    out += frame[at:]
    return bytes(out)


def tag_numbers(unknown: Iterable[UnknownTag]) -> tuple[int, ...]:
    """The distinct tag numbers of `unknown`, in order, as the audit event notes them."""
    return tuple(sorted({field.tag for field in unknown}))
