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

MIN_VERSION, MAX_VERSION = 3, 13


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
