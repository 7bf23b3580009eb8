"""Raw Kafka frames over a plain socket, for tests that send what no client library
would (hostile or unreadable requests) to the gateway or the broker."""

from __future__ import annotations

import socket
import subprocess

from support.kafka import wait_for


def recv_exactly(conn: socket.socket, n: int) -> bytes:
    """`n` bytes from `conn`; fails the test if the peer closes first."""
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        assert chunk, f"connection closed after {len(data)} of {n} bytes"
        data += chunk
    return data


def wait_for_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    """Wait until something accepts connections on loopback `port`, while `proc` (which
    should open it) is still running; fails the test with its stderr if it exits."""

    def listening() -> bool:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    wait_for(listening, f"listener on port {port}")
