"""Readiness probe: one Kafka MetadataRequest over a plain socket.

It owns deciding "the broker answers clients". A listener's port accepting a TCP
connection is not enough (the controller port opens long before the broker serves), so
the probe sends what every Kafka client sends first, a MetadataRequest, and parses the
answer. It is written against the wire protocol directly so that `kaudit local-kafka`
works with kaudit's base install, which has no Kafka client library.

Version 4 of Metadata is used: Kafka 4 removed versions 0 to 3 of several APIs
(KIP-896), version 4 is the newest one without "flexible" (tagged-field) encoding, and
its response carries the cluster id, which tells our broker apart from another one on
a reused port.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from kaudit.dev.errors import LocalKafkaError

_METADATA_API_KEY = 3
_METADATA_VERSION = 4
_CLIENT_ID = b"kaudit-probe"
_CORRELATION_ID = 0x6B61  # any value; checked on the way back
_MAX_RESPONSE = 1 << 20


class ProbeError(LocalKafkaError):
    """The endpoint did not answer a MetadataRequest like a Kafka broker."""


@dataclass(frozen=True)
class BrokerMetadata:
    """What the probe learned: the cluster id, the brokers (node id, host, port), the controller."""

    cluster_id: str | None
    brokers: tuple[tuple[int, str, int], ...]
    controller_id: int


def probe_metadata(host: str, port: int, timeout: float = 2.0) -> BrokerMetadata:
    """Send a MetadataRequest (no topics) to `host:port` and return the parsed answer."""
    header = struct.pack(
        ">hhih", _METADATA_API_KEY, _METADATA_VERSION, _CORRELATION_ID, len(_CLIENT_ID)
    )
    # Body v4: topics = empty array (ask for none), allow_auto_topic_creation = false.
    body = struct.pack(">ib", 0, 0)
    request = header + _CLIENT_ID + body
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(request)) + request)
            (size,) = struct.unpack(">i", _recv_exact(sock, 4))
            if not 4 <= size <= _MAX_RESPONSE:
                raise ProbeError(f"implausible response size {size}")
            payload = _recv_exact(sock, size)
    except OSError as exc:
        raise ProbeError(f"{host}:{port}: {exc}") from exc
    return _parse_response(payload)


def _parse_response(payload: bytes) -> BrokerMetadata:
    reader = _Reader(payload)
    if reader.int32() != _CORRELATION_ID:
        raise ProbeError("response correlation id does not match the request")
    reader.int32()  # throttle_time_ms
    brokers = []
    for _ in range(reader.int32()):
        node_id = reader.int32()
        host = reader.string() or ""
        port = reader.int32()
        reader.string()  # rack
        brokers.append((node_id, host, port))
    cluster_id = reader.string()
    controller_id = reader.int32()
    return BrokerMetadata(
        cluster_id=cluster_id, brokers=tuple(brokers), controller_id=controller_id
    )


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def _take(self, count: int) -> bytes:
        end = self._pos + count
        if end > len(self._data):
            raise ProbeError("truncated MetadataResponse")
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def int32(self) -> int:
        value: int = struct.unpack(">i", self._take(4))[0]
        return value

    def string(self) -> str | None:
        (length,) = struct.unpack(">h", self._take(2))
        if length < 0:
            return None
        return self._take(length).decode("utf-8", "replace")


def _recv_exact(sock: socket.socket, count: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < count:
        chunk = sock.recv(count - len(chunks))
        if not chunk:
            raise ProbeError("connection closed before a full response arrived")
        chunks += chunk
    return bytes(chunks)
