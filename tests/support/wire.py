"""Raw Kafka frames over a plain socket, for tests that send what no client library
would (hostile or unreadable requests) to the gateway or the broker."""

from __future__ import annotations

import socket


def recv_exactly(conn: socket.socket, n: int) -> bytes:
    """`n` bytes from `conn`; fails the test if the peer closes first."""
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        assert chunk, f"connection closed after {len(data)} of {n} bytes"
        data += chunk
    return data
