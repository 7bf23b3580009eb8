"""Free loopback ports for local services the demo, tests and benchmarks start."""

from __future__ import annotations

import socket


def free_port_block(size: int, host: str = "127.0.0.1") -> int:
    """A port P such that P .. P+size-1 are all free on `host` right now (the gateway
    needs its bootstrap port and the broker ports after it)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind((host, 0))
            start = int(probe.getsockname()[1])
        if start + size >= 65536:
            continue
        try:
            for port in range(start + 1, start + size):
                with socket.socket() as taken:
                    taken.bind((host, port))
        except OSError:
            continue
        return start
    raise OSError(f"no block of {size} free ports on {host}")


def port_free(host: str, port: int) -> bool:
    """Whether a server could bind `host:port` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the JVM does for server sockets, so a port in TIME_WAIT counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
