"""A fetch response cut through waits for large reads (SO_RCVLOWAT) but never for more than
its rest: a broker that sends it in a trickle is still passed on whole, and the socket
wakes on any byte again once the response is done.

The broker end (upstream.UpstreamSide) runs on uvloop over a real TCP connection to a
socket this test writes into; the client end is a stand-in that keeps what it is sent
(the whole gateway needs a broker that can trickle a response, which Kafka cannot)."""

from __future__ import annotations

import asyncio
import socket
from types import SimpleNamespace
from typing import Any

import uvloop
from kaudit_gateway_frames import frame

from kaudit.gateway.framing import BufferPool, Chunk
from kaudit.gateway.recording import GatewayMetrics
from kaudit.gateway.upstream import CUT_READ_AT_LEAST, UpstreamSide


class ClientStandIn:
    """What the broker end hands on: bytes sent, whole responses, the socket's low mark."""

    def __init__(self) -> None:
        self.shared = SimpleNamespace(
            max_frame_bytes=64 << 20,
            read_buffer=memoryview(bytearray(256 * 1024)),
            buffers=BufferPool(64 << 20),
            metrics=GatewayMetrics(),
            fail_closed=False,
            upstream_ssl=None,
        )
        self.sent: list[bytes] = []
        self.responses: list[bytes] = []
        self.lowats: list[int] = []
        self.done = asyncio.Event()
        self.upstream: UpstreamSide | None = None

    def on_response(self, frame: bytes, sent: bool = False, pieces: Any = None,
                    tail: Any = None) -> None:  # fmt: skip
        assert self.upstream is not None and self.upstream.sock is not None
        self.responses.append(b"".join(bytes(p) for p in pieces) if pieces else frame)
        if not sent:
            self.sent.append(bytes(frame))
        self.done.set()

    def send(self, frame: Chunk) -> None:
        self.sent.append(bytes(frame))
        up = self.upstream
        assert up is not None and up.sock is not None
        self.lowats.append(up.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT))

    def can_stream_next(self) -> bool:
        return True

    def write_idle(self) -> bool:
        return True

    def gather_writes(self) -> None:
        pass

    def flush_writes(self) -> None:
        pass

    def close(self, reason: str, quiet: bool = False) -> None:
        raise AssertionError(reason)

    def upstream_lost(self, exc: Exception | None) -> None:
        pass

    def pause_client_reading(self) -> None:
        pass

    def resume_client_reading(self) -> None:
        pass


async def _relay(response: bytes, trickle: list[int]) -> ClientStandIn:
    listener = socket.create_server(("127.0.0.1", 0))
    client = ClientStandIn()
    loop = asyncio.get_running_loop()
    _, client.upstream = await loop.create_connection(
        lambda: UpstreamSide(client),  # type: ignore[arg-type]
        *listener.getsockname(),
    )
    broker, _ = listener.accept()
    listener.close()
    with broker:
        pos = 0
        for size in trickle:
            await loop.sock_sendall(broker, response[pos : pos + size])
            pos += size
            await asyncio.sleep(0.01)  # each piece arrives on its own
        await loop.sock_sendall(broker, response[pos:])
        await asyncio.wait_for(client.done.wait(), 30)
        small = frame(b"next")  # the socket wakes on any byte again
        client.done.clear()
        await loop.sock_sendall(broker, small)
        await asyncio.wait_for(client.done.wait(), 30)
    return client


def test_a_trickled_fetch_response_is_passed_on_whole_and_reads_wait_only_for_its_rest() -> None:
    response = frame(bytes(range(256)) * 8 * 1024)  # 2 MiB and 4 bytes of size
    # Its head, then pieces far below the low mark, with pauses between them.
    trickle = [8 * 1024] + [4 * 1024] * 20
    client = uvloop.run(_relay(response, trickle))
    assert client.responses[0] == response
    assert b"".join(client.sent[: len(client.sent) - 1]) == response
    assert client.responses[1] == frame(b"next")
    # Each piece came with one read, under the low mark of its time (noted as it is sent
    # on): large reads once the response is cut through, never more than its rest.
    pieces = client.sent[:-1]
    assert client.lowats[1] == CUT_READ_AT_LEAST
    for i in range(1, len(pieces) - 1):  # the last one is sent once the mark is back at 1
        rest = len(response) - sum(len(p) for p in pieces[:i])
        assert 1 < client.lowats[i] <= rest
    assert len(pieces) < 2 + len(trickle)  # the trickle was not read piece by piece
    assert client.upstream is not None and client.upstream.lowat == 1
