"""Verifying a Kafka log: `verify_kafka` checks each writer stream of a topic as a local
log is checked, against the stream's checkpoints on the companion topic.

A stream's records are merged from the partitions in sequence order as they are read
(kafka_streams.py) and given to `verify_parts` as one part, so the same walker checks
them; memory does not grow with the topic.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from kaudit.config.model import KafkaConnection
from kaudit.integrity.kafka_streams import (
    checkpoint_topic,
    log_streams,
    read_checkpoint_topic,
    stream_lines,
)
from kaudit.integrity.keys import KeyRing
from kaudit.integrity.verify.findings import VerifyReport, VerifyUsageError
from kaudit.integrity.verify.parts import LogPart, verify_parts

_NO_HEADER = "(no stream header)"


class _LinesReader(io.RawIOBase):
    """Lines from an iterator read as one file of newline-terminated lines."""

    def __init__(self, lines: Iterator[bytes]) -> None:
        self._lines = lines
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        want = len(buffer)
        parts = [self._buffer]
        have = len(self._buffer)
        while have < want:
            line = next(self._lines, None)
            if line is None:
                break
            parts += (line, b"\n")
            have += len(line) + 1
        data = b"".join(parts)
        buffer[: min(want, len(data))] = data[:want]
        self._buffer = data[want:]
        return min(want, len(data))


def verify_kafka(
    connection: KafkaConnection,
    topic: str,
    *,
    verifiers: KeyRing | None,
    hmac_key: bytes | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    progress: Callable[[int], None] | None = None,
    label: str | None = None,
) -> list[VerifyReport]:
    """Verify every writer stream of a Kafka log topic against its checkpoints on the
    companion topic (public keys) and/or its HMAC chain: one report per stream.

    Each stream is streamed into the verifier in sequence order, merged from the
    partitions as they are read (so memory does not grow with the topic); the topic is
    read once to find the streams and once per stream. Records that carry no stream
    header (forged by hand) are checked with the stream when there is only one, else as
    a stream of their own.
    """
    counts, partitions = log_streams(connection, topic)
    if not counts:
        raise VerifyUsageError(f"kafka topic {topic} holds no audit events")
    checkpoints = read_checkpoint_topic(connection, topic)
    named = sorted({*counts, *checkpoints} - {""})
    groups: dict[str, frozenset[str]] = {name: frozenset({name}) for name in named}
    if "" in counts or "" in checkpoints:
        if len(named) == 1:
            groups[named[0]] = frozenset({named[0], ""})
        else:
            groups[_NO_HEADER] = frozenset({""})
    label = label or f"kafka topic {topic}"
    cp_name = checkpoint_topic(topic)
    reports = []
    for name, members in groups.items():
        records = [
            (cp_name, number, item)
            for member in sorted(members)
            for number, item in enumerate(checkpoints.get(member, ()), 1)
        ]

        def open_stream(members: frozenset[str] = members) -> Any:
            lines = stream_lines(connection, topic, members, partitions)
            return io.BufferedReader(_LinesReader(lines), 1 << 20)

        report = verify_parts(
            f"{label} stream {name}",
            [LogPart(f"stream {name}", 0, 2**63 - 1, open_stream)],
            records,
            verifiers=verifiers,
            hmac_key=hmac_key,
            since=since,
            until=until,
            progress=progress,
            noun="stream",
            notes=[
                "the stream's records were read from all partitions and checked in "
                "sequence order (byte positions count in that order)"
            ],
        )
        reports.append(report)
    return reports
