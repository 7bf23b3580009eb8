"""What a Produce request carries, read without copying its records.

Produce requests are the gateway's biggest requests (up to a megabyte per request by
default) and are cut through to the broker as they arrive. For the audit only a few
fields matter: acks (acks=0 gets no response), and per topic how many records and bytes.
`summarize_produce_request` walks the request's pieces as they came off the socket,
reading the small fields and each record batch's header, and skipping the records.

Produce v3–v13 (v9+ flexible, v13 topic ids), request header v1 or v2.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kaudit.gateway.codec import FrameDecodeError
from kaudit.gateway.fetch import Pieces, count_batches
from kaudit.gateway.framing import Chunk
from kaudit.gateway.varint import read_uvarint, skip_tagged_fields

MIN_VERSION, MAX_VERSION = 3, 13
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_BATCH_HEAD = 61  # record batch v2 header; recordsCount at 57, batchLength at 8
_LEGACY_HEAD = 12  # offset(8) + message size(4)
_NOTHING_MORE = b"\x01\x00\x00"
"""A flexible produce response partition's end when it has no record errors, no error
message and no tagged fields (no new leader): empty array, null string, no fields."""


@dataclass(slots=True)
class TopicProduced:
    topic: Any  # name (str) or topic id (uuid.UUID)
    records: int = 0
    nbytes: int = 0


@dataclass(slots=True)
class ProduceSummary:
    client_id: str | None
    transactional_id: str | None
    acks: int
    topics: list[TopicProduced] = field(default_factory=list)


def _nullable_string(r: Pieces, flexible: bool) -> str | None:
    size = r.uvarint() - 1 if flexible else r.i16()
    if size < 0:
        return None
    return str(r.take(size), "utf-8", "replace")


def produce_head(pieces: Sequence[Chunk], version: int) -> tuple[str | None, int]:
    """(client id, acks) from the start of a Produce request frame; FrameDecodeError when
    the pieces do not reach that far or are malformed."""
    summary = _summarize(pieces, version, head_only=True)
    return summary.client_id, summary.acks


def summarize_produce_request(pieces: Sequence[Chunk], version: int) -> ProduceSummary:
    """Client id, transactional id, acks, and records and bytes per topic of a Produce
    request frame given as the pieces it arrived in (length prefix included)."""
    return _summarize(pieces, version, head_only=False)


def _summarize(pieces: Sequence[Chunk], version: int, head_only: bool) -> ProduceSummary:
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise FrameDecodeError(f"produce v{version} is not summarised here")
    if len(pieces) == 1 and not head_only and version >= 9:
        try:
            return _summarize_flexible(pieces[0], version)
        except (struct.error, IndexError, ValueError) as exc:
            raise FrameDecodeError(f"malformed produce v{version} request: {exc}") from exc
    flexible = version >= 9
    r = Pieces(pieces, 12)  # size prefix, api key, version, correlation id
    try:
        client_id = _nullable_string(r, flexible=False)  # always a legacy string
        if flexible:
            r.skip_tagged_fields()  # request header v2
        transactional_id = _nullable_string(r, flexible)
        acks = r.i16()
        summary = ProduceSummary(client_id, transactional_id, acks)
        if head_only:
            return summary
        r.skip(4)  # timeout_ms
        for _ in range(r.uvarint() - 1 if flexible else r.i32()):
            if version >= 13:
                topic: Any = uuid.UUID(bytes=bytes(r.take(16)))
            else:
                topic = _nullable_string(r, flexible) or ""
            produced = TopicProduced(topic)
            for _ in range(r.uvarint() - 1 if flexible else r.i32()):
                r.skip(4)  # partition index
                size = r.uvarint() - 1 if flexible else r.i32()
                if size > 0:
                    produced.nbytes += size
                    produced.records += count_batches(r, size)
                if flexible:
                    r.skip_tagged_fields()
            if flexible:
                r.skip_tagged_fields()
            summary.topics.append(produced)
    except (struct.error, IndexError, ValueError) as exc:
        raise FrameDecodeError(f"malformed produce v{version} request: {exc}") from exc
    return summary


def _summarize_flexible(data: Chunk, version: int) -> ProduceSummary:
    """`_summarize` of a whole flexible (v9+) request in one piece: the common case, on
    every small produce request, so it reads the bytes directly, with the one-byte
    varints (every length under 127) and empty tagged-field sections inline."""
    end = len(data)
    size = _I16.unpack_from(data, 12)[0]  # client id: a legacy nullable string
    if size >= 0:
        pos = 14 + size
        client_id: str | None = str(data[14:pos], "utf-8", "replace")
    else:
        pos, client_id = 14, None
    pos = skip_tagged_fields(data, pos) if data[pos] else pos + 1  # request header v2
    size = data[pos]
    if size < 0x80:
        pos += 1
    else:
        size, pos = read_uvarint(data, pos)
    transactional_id = None
    if size:
        transactional_id = str(data[pos : pos + size - 1], "utf-8", "replace")
        pos += size - 1
    summary = ProduceSummary(client_id, transactional_id, _I16.unpack_from(data, pos)[0])
    topics = summary.topics
    pos += 6  # acks, timeout_ms
    count, pos = read_uvarint(data, pos)
    for _ in range(count - 1):
        if version >= 13:
            topic: Any = uuid.UUID(bytes=bytes(data[pos : pos + 16]))
            pos += 16
        else:
            size = data[pos]
            if size < 0x80:
                pos += 1
            else:
                size, pos = read_uvarint(data, pos)
            topic = str(data[pos : pos + size - 1], "utf-8", "replace") if size else ""
            pos += max(size - 1, 0)
        produced = TopicProduced(topic)
        partitions = data[pos]
        if partitions < 0x80:
            pos += 1
        else:
            partitions, pos = read_uvarint(data, pos)
        for _ in range(partitions - 1):
            pos += 4  # the partition index
            size = data[pos]
            if size < 0x80:
                pos += 1
            elif data[pos + 1] < 0x80:  # records under 16 KiB: a two-byte length
                size = (size & 0x7F) | data[pos + 1] << 7
                pos += 2
            else:
                size, pos = read_uvarint(data, pos)
            size -= 1
            if size > 0:
                if pos + size > end:
                    raise ValueError("records run past the end of the request")
                produced.nbytes += size
                produced.records += _count_flat(data, pos, size)
                pos += size
            pos = skip_tagged_fields(data, pos) if data[pos] else pos + 1
        pos = skip_tagged_fields(data, pos) if data[pos] else pos + 1
        topics.append(produced)
    if pos > end:
        raise ValueError("the request ends early")
    return summary


def _count_flat(data: Chunk, pos: int, size: int) -> int:
    """`count_batches` over `size` bytes of record batches at `pos` of one buffer."""
    total = 0
    while size >= _LEGACY_HEAD:
        if size < _BATCH_HEAD:
            return total
        length = _I32.unpack_from(data, pos + 8)[0]
        whole = 12 + length
        if length <= 0 or whole > size:
            return total  # a partial batch
        total += _I32.unpack_from(data, pos + 57)[0] if data[pos + 16] >= 2 else 1
        pos += whole
        size -= whole
    return total


@dataclass(slots=True)
class ProduceResult:
    """What a Produce response says, as the audit reads it: per topic (name, or id from
    v13), the first partition error code (0 if none)."""

    codes: dict[Any, int]


def summarize_produce_response(frame: Chunk, version: int) -> ProduceResult | None:
    """The error codes of a whole Produce response frame (size prefix included), read in
    place; None when it carries tagged fields (v10+ new-leader endpoints, which must be
    rewritten: the caller decodes it instead). FrameDecodeError if malformed."""
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise FrameDecodeError(f"produce v{version} is not summarised here")
    flexible = version >= 9
    data = frame
    try:
        pos = 8
        if flexible:
            if data[pos]:
                return None
            pos += 1
            count, pos = read_uvarint(data, pos)
            count -= 1
        else:
            count = _I32.unpack_from(data, pos)[0]
            pos += 4
        codes: dict[Any, int] = {}
        # A partition's fixed fields: index, error code, base offset, log append time
        # (v2+), log start offset (v5+).
        fixed = 6 + 8 + (8 if version >= 2 else 0) + (8 if version >= 5 else 0)
        for _ in range(count):
            if version >= 13:
                topic: Any = uuid.UUID(bytes=bytes(data[pos : pos + 16]))
                pos += 16
            elif flexible:
                size = data[pos]
                if size < 0x80:  # every topic name under 127 bytes: a one-byte length
                    pos += 1
                else:
                    size, pos = read_uvarint(data, pos)
                topic = str(data[pos : pos + size - 1], "utf-8", "replace") if size else ""
                pos += max(size - 1, 0)
            else:
                size = _I16.unpack_from(data, pos)[0]
                topic = str(data[pos + 2 : pos + 2 + max(size, 0)], "utf-8", "replace")
                pos += 2 + max(size, 0)
            if flexible:
                partitions, pos = read_uvarint(data, pos)
                partitions -= 1
            else:
                partitions = _I32.unpack_from(data, pos)[0]
                pos += 4
            code = 0
            for _ in range(partitions):
                error = _I16.unpack_from(data, pos + 4)[0]  # after the partition index
                code = code or error
                pos += fixed
                if flexible and data[pos : pos + 3] == _NOTHING_MORE:
                    pos += 3  # the common case, read at once
                    continue
                if version >= 8:
                    pos = _skip_record_errors(data, pos, flexible)
                    pos = _skip_string(data, pos, flexible)  # error_message
                if flexible:
                    if data[pos]:
                        return None  # current_leader: a new leader to rewrite
                    pos += 1
            if flexible:
                pos = skip_tagged_fields(data, pos)
            codes[topic] = code
        pos += 4  # throttle_time_ms
        if flexible and data[pos]:
            return None  # node_endpoints
        if pos + (1 if flexible else 0) != len(data):
            raise ValueError("the response does not end where its fields do")
    except (struct.error, IndexError, ValueError) as exc:
        raise FrameDecodeError(f"malformed produce v{version} response: {exc}") from exc
    return ProduceResult(codes)


def _skip_string(data: Chunk, pos: int, flexible: bool) -> int:
    if flexible:
        size, pos = read_uvarint(data, pos)
        return pos + max(size - 1, 0)
    legacy: int = _I16.unpack_from(data, pos)[0]
    return pos + 2 + max(legacy, 0)


def _skip_record_errors(data: Chunk, pos: int, flexible: bool) -> int:
    if flexible:
        count, pos = read_uvarint(data, pos)
        count -= 1
    else:
        count = _I32.unpack_from(data, pos)[0]
        pos += 4
    for _ in range(count):
        pos = _skip_string(data, pos + 4, flexible)  # batch index, then its message
        if flexible:
            pos = skip_tagged_fields(data, pos)
    return pos
