"""What a Fetch response delivered, read without copying its records.

Fetch responses are the gateway's biggest frames (megabytes per response) and are cut
through to the client as they arrive. For the audit only a few fields matter: per topic,
how many records and bytes, the error codes, and where each partition's batches end (how
far the consumer got: offsets judges commits by it). `summarize_fetch_response` walks the
response's pieces as they came off the socket, reading the small fields and each
record batch's header, and skipping the records themselves — no join, no copy.

Fetch v4–v15 (v12+ flexible, v13+ topic ids). v16+ responses may carry node endpoints the
gateway would have to rewrite; those are decoded with kio instead (see rewrite.offered_versions)
and summed up by `summarize_decoded_fetch`. `count_batches` and `count_records` count the
records of record batches (produce requests too).
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kaudit.gateway.codec import FrameDecodeError
from kaudit.gateway.framing import Chunk

MAX_VERSION = 15
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_BATCH_HEAD = 61  # record batch v2 header; recordsCount at 57, batchLength at 8
_LEGACY_HEAD = 12  # offset(8) + message size(4)


class Pieces:
    """Sequential reads over a list of byte strings (the frame as it arrived)."""

    __slots__ = ("buf", "index", "pieces", "pos")

    def __init__(self, pieces: Sequence[Chunk], start: int) -> None:
        self.pieces = pieces
        self.index = 0
        self.buf = pieces[0] if pieces else b""
        self.pos = 0
        self.skip(start)

    def _advance(self) -> None:
        self.index += 1
        if self.index >= len(self.pieces):
            raise FrameDecodeError("fetch response ends early")
        self.buf = self.pieces[self.index]
        self.pos = 0

    def take(self, n: int) -> Chunk:
        """The next `n` bytes (copied only when they straddle two pieces)."""
        if n < 0:  # a negative slice would move the reader back: a loop a peer controls
            raise FrameDecodeError(f"negative length {n} in fetch response")
        end = self.pos + n
        if end <= len(self.buf):
            out = self.buf[self.pos : end]
            self.pos = end
            return out
        parts = [self.buf[self.pos :]]
        have = len(parts[0])
        while have < n:
            self._advance()
            part = self.buf[: n - have]
            parts.append(part)
            have += len(part)
        self.pos = len(parts[-1])
        return b"".join(parts)

    def skip(self, n: int) -> None:
        if n < 0:
            raise FrameDecodeError(f"negative length {n} in fetch response")
        while self.pos + n > len(self.buf):
            n -= len(self.buf) - self.pos
            self._advance()
        self.pos += n

    def i16(self) -> int:
        return int(_I16.unpack(self.take(2))[0])

    def i32(self) -> int:
        return int(_I32.unpack(self.take(4))[0])

    def uvarint(self) -> int:
        result = shift = 0
        while True:
            byte = self.take(1)[0]
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7
            if shift > 35:
                raise FrameDecodeError("varint too long in fetch response")

    def skip_tagged_fields(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self.skip(self.uvarint())


@dataclass(slots=True)
class TopicFetched:
    topic: Any  # name (str) or topic id (uuid.UUID)
    records: int = 0
    nbytes: int = 0
    error_codes: list[int] = field(default_factory=list)
    ends: dict[int, int] = field(default_factory=dict)
    """Partition → the offset after the last whole record batch delivered of it."""


@dataclass(slots=True)
class FetchSummary:
    error_code: int
    topics: list[TopicFetched]


def count_batches(reader: Pieces, size: int) -> int:
    """Records in `size` bytes of record batches; skips a truncated last batch."""
    return walk_batches(reader, size)[0]


def walk_batches(reader: Pieces, size: int) -> tuple[int, int]:
    """(records, the offset after the last whole batch, or -1 when there is none) in
    `size` bytes of record batches; skips a truncated last batch."""
    total = 0
    end = -1
    while size >= _LEGACY_HEAD:
        if size < _BATCH_HEAD:
            reader.skip(size)
            return total, end
        head = reader.take(_BATCH_HEAD)
        length = int(_I32.unpack_from(head, 8)[0])
        whole = 12 + length
        if length <= 0 or whole > size:
            reader.skip(size - _BATCH_HEAD)  # a partial batch the client will refetch
            return total, end
        if head[16] >= 2:  # v2: baseOffset + lastOffsetDelta; legacy: the (last) offset
            total += int(_I32.unpack_from(head, 57)[0])
            end = int(_I64.unpack_from(head, 0)[0]) + int(_I32.unpack_from(head, 23)[0]) + 1
        else:
            total += 1
            end = int(_I64.unpack_from(head, 0)[0]) + 1
        reader.skip(whole - _BATCH_HEAD)
        size -= whole
    reader.skip(size)
    return total, end


def count_records(records: bytes | None) -> int:
    """Records in a record-batch payload (a truncated last batch is skipped, as
    consumers skip it)."""
    if not records:
        return 0
    return count_batches(Pieces([records], 0), len(records))


def summarize_fetch_response(pieces: Sequence[Chunk], version: int) -> FetchSummary:
    """Records, bytes and error codes per topic of a Fetch response frame given as the
    pieces it arrived in (length prefix included); FrameDecodeError if malformed."""
    if not 4 <= version <= MAX_VERSION:
        raise FrameDecodeError(f"fetch v{version} is not summarised here")
    flexible = version >= 12
    r = Pieces(pieces, 8)  # size prefix and correlation id
    try:
        if flexible:
            r.skip_tagged_fields()  # response header v1
        r.skip(4)  # throttle_time_ms
        top_error = r.i16() if version >= 7 else 0
        if version >= 7:
            r.skip(4)  # session_id
        topics: list[TopicFetched] = []
        for _ in range(r.uvarint() - 1 if flexible else r.i32()):
            if version >= 13:
                topic: Any = uuid.UUID(bytes=bytes(r.take(16)))
            else:
                size = r.uvarint() - 1 if flexible else r.i16()
                topic = str(r.take(size), "utf-8", "replace")
            fetched = TopicFetched(topic)
            for _ in range(r.uvarint() - 1 if flexible else r.i32()):
                partition = r.i32()
                fetched.error_codes.append(r.i16())
                r.skip(8 + 8 + (8 if version >= 5 else 0))  # hw, lso, log start
                aborted = r.uvarint() - 1 if flexible else r.i32()
                for _ in range(max(aborted, 0)):
                    r.skip(16)
                    if flexible:
                        r.skip_tagged_fields()
                if version >= 11:
                    r.skip(4)  # preferred_read_replica
                size = r.uvarint() - 1 if flexible else r.i32()
                if size > 0:
                    fetched.nbytes += size
                    records, end = walk_batches(r, size)
                    fetched.records += records
                    if end >= 0:
                        fetched.ends[partition] = end
                if flexible:
                    r.skip_tagged_fields()
            if flexible:
                r.skip_tagged_fields()
            topics.append(fetched)
    except (struct.error, IndexError, ValueError) as exc:
        raise FrameDecodeError(f"malformed fetch v{version} response: {exc}") from exc
    return FetchSummary(top_error, topics)


def summarize_decoded_fetch(response: Any) -> FetchSummary:
    """A kio-decoded Fetch response (v16+) as the summary the audit reads."""
    topics = []
    for topic in response.responses:
        ident = topic.topic if hasattr(topic, "topic") else topic.topic_id
        fetched = TopicFetched(ident)
        for part in topic.partitions:
            fetched.error_codes.append(int(part.error_code))
            if part.records:
                fetched.nbytes += len(part.records)
                records, end = walk_batches(Pieces([part.records], 0), len(part.records))
                fetched.records += records
                if end >= 0:
                    fetched.ends[int(part.partition_index)] = end
        topics.append(fetched)
    return FetchSummary(int(getattr(response, "error_code", 0)), topics)
