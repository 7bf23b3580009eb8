"""Metadata responses rewritten in place, and read for topic names only when needed.

A Metadata response for a large cluster is megabytes of partitions (30,000 partitions:
1.3 MB), and decoding and re-encoding it with kio took 600 ms. Only its broker list
must change: `patch_metadata` reads the header and the brokers, and splices the gateway's
addresses in their place, leaving the rest of the frame as it came (a single copy; no
partition is read). Broker addresses come before the topics in every version.

What else the gateway learns from Metadata is topic ids' names (v10+: Fetch v13+ and
others name topics by id only). Reading them means walking every partition, so
`TopicNames` keeps the latest few v10+ responses unread and walks them only when a
topic id it has not seen is asked for: once per new topic, not once per response.
"""

from __future__ import annotations

import struct
import uuid
from collections import deque
from typing import Any

from kaudit.gateway.codec import FrameDecodeError
from kaudit.gateway.rewrite import BrokerMap
from kaudit.gateway.varint import read_uvarint, skip_tagged_fields

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_FIXED_PARTITION_BYTES = 14  # error code, partition index, leader id, leader epoch (v7+)

_KEEP_RESPONSES = 8
_KEEP_BYTES = 64 * 1024 * 1024


def _string(data: bytes, pos: int, flexible: bool) -> tuple[str | None, int]:
    if flexible:
        size, pos = read_uvarint(data, pos)
        size -= 1
    else:
        size = _I16.unpack_from(data, pos)[0]
        pos += 2
    if size < 0:
        return None, pos
    end = pos + size
    if end > len(data):
        raise FrameDecodeError("a string runs past the end of a metadata response")
    return data[pos:end].decode("utf-8", "replace"), end


def _encode_string(value: str, flexible: bool) -> bytes:
    raw = value.encode()
    if not flexible:
        return _I16.pack(len(raw)) + raw
    size, head = len(raw) + 1, bytearray()
    while size >= 0x80:
        head.append((size & 0x7F) | 0x80)
        size >>= 7
    head.append(size)
    return bytes(head) + raw


def _brokers_start(frame: bytes, version: int) -> int:
    """Where the brokers array (its length included) starts in a response frame."""
    pos = 8  # size prefix, correlation id
    if version >= 9:
        pos = skip_tagged_fields(frame, pos)  # response header v1
    if version >= 3:
        pos += 4  # throttle_time_ms
    return pos


def asks_all_topics(request: Any, version: int) -> bool:
    """Whether a decoded Metadata request asks for every topic (v0: an empty list; v1+:
    null), which the broker answers with only the topics the client may describe."""
    topics = getattr(request, "topics", ())
    return topics is None or (version == 0 and not topics)


def patch_metadata(frame: bytes, version: int, brokers: BrokerMap) -> bytes:
    """The Metadata response `frame` (size prefix included) with each broker's host and
    port replaced by the gateway's for that node (learning the real ones on the way);
    FrameDecodeError if the brokers cannot be read."""
    flexible = version >= 9
    try:
        pos = _brokers_start(frame, version)
        if flexible:
            count, pos = read_uvarint(frame, pos)
            count -= 1
        else:
            count = _I32.unpack_from(frame, pos)[0]
            pos += 4
        start = pos
        out: list[bytes] = []
        for _ in range(max(count, 0)):
            node_id = _I32.unpack_from(frame, pos)[0]
            host, pos = _string(frame, pos + 4, flexible)
            port = _I32.unpack_from(frame, pos)[0]
            pos += 4
            rest = pos
            if version >= 1:
                _, pos = _string(frame, pos, flexible)  # rack
            if flexible:
                pos = skip_tagged_fields(frame, pos)
            new_host, new_port = brokers.learn(node_id, host or "", port)
            out += (
                _I32.pack(node_id),
                _encode_string(new_host, flexible),
                _I32.pack(new_port),
                frame[rest:pos],
            )
        if pos > len(frame):
            raise FrameDecodeError("the brokers run past the end of a metadata response")
    except (struct.error, IndexError, ValueError) as exc:
        raise FrameDecodeError(f"malformed metadata v{version} response: {exc}") from exc
    body = b"".join((frame[4:start], *out, memoryview(frame)[pos:]))
    return _I32.pack(len(body)) + body


def topic_ids(frame: bytes, version: int) -> dict[uuid.UUID, str]:
    """Topic id -> name in a Metadata v10+ response frame (every partition walked)."""
    if version < 10:
        return {}
    data = frame
    try:
        pos = _brokers_start(data, version)
        count, pos = read_uvarint(data, pos)
        for _ in range(count - 1):
            pos += 4
            _, pos = _string(data, pos, True)  # host
            pos += 4
            _, pos = _string(data, pos, True)  # rack
            pos = skip_tagged_fields(data, pos)
        _, pos = _string(data, pos, True)  # cluster id
        pos += 4  # controller id
        names: dict[uuid.UUID, str] = {}
        topics, pos = read_uvarint(data, pos)
        for _ in range(topics - 1):
            name, pos = _string(data, pos + 2, True)  # after the error code
            topic_id = uuid.UUID(bytes=data[pos : pos + 16])
            pos += 17  # topic id, is_internal
            partitions, pos = read_uvarint(data, pos)
            for _ in range(partitions - 1):
                pos += _FIXED_PARTITION_BYTES
                for _ in range(3):  # replica, isr and offline replica node ids
                    n = data[pos]
                    if n & 0x80:
                        n, pos = read_uvarint(data, pos)
                    else:
                        pos += 1
                    if n:
                        pos += (n - 1) << 2
                if data[pos]:
                    pos = skip_tagged_fields(data, pos)
                else:
                    pos += 1
            pos += 4  # topic_authorized_operations
            pos = skip_tagged_fields(data, pos)
            if name and topic_id.int:
                names[topic_id] = name
    except (struct.error, IndexError, ValueError) as exc:
        raise FrameDecodeError(f"malformed metadata v{version} response: {exc}") from exc
    return names


class TopicNames:
    """Topic id -> name, learned from Metadata responses kept unread until a topic id
    they may name is asked for."""

    def __init__(self) -> None:
        self._names: dict[Any, str] = {}
        self._unread: deque[tuple[bytes, int]] = deque()
        self._unread_bytes = 0

    def keep(self, frame: bytes, version: int) -> None:
        """A Metadata response (as received) to read if a topic id is not known."""
        if version < 10:
            return
        self._unread.append((frame, version))
        self._unread_bytes += len(frame)
        while len(self._unread) > _KEEP_RESPONSES or self._unread_bytes > _KEEP_BYTES:
            old, _ = self._unread.popleft()
            self._unread_bytes -= len(old)

    def learn(self, topic_id: uuid.UUID, name: str) -> None:
        self._names[topic_id] = name

    def get(self, topic_id: Any) -> str | None:
        name = self._names.get(topic_id)
        while name is None and self._unread:
            frame, version = self._unread.pop()  # the newest first
            self._unread_bytes -= len(frame)
            try:
                self._names.update(topic_ids(frame, version))
            except FrameDecodeError:
                continue
            name = self._names.get(topic_id)
        return name
