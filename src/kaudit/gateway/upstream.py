"""The broker end of a client connection: it reads the broker's responses and hands each
whole one to the client end (connection), cutting large fetch responses through to the
client as they arrive, to be audited once whole.

A response cut through is passed on in writes of at least `CUT_WRITE_AT_LEAST` (its
end as it comes): reads from the broker bring what it sent since the last one (125-160
KiB on average, measured; a broker's socket send buffer is 100 KiB by default), and one
write to the client per read cost a system call and a wake-up of the client each. Reads
go on as the bytes come, so the broker is never kept waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol, cast

from kaudit.gateway.framing import Chunk, CutThrough, Frames, ProtocolViolation
from kaudit.gateway.recording import LATENCY_SAMPLE_MASK
from kaudit.gateway.shared import SharedState

log = logging.getLogger("kaudit.gateway")

STREAM_AT_LEAST = 64 * 1024
"""Produce requests and fetch responses at least this much larger than what has arrived
are cut through."""

CUT_WRITE_AT_LEAST = 512 * 1024
"""What of a response being cut through is gathered before it is written to the client;
its last `CUT_WRITE_AT_LEAST` bytes are written as they arrive, so that the response
is complete at the client as soon as it would be without gathering."""


class ClientEnd(Protocol):
    """The client end of the connection, as the broker end hands it responses."""

    shared: SharedState

    def on_response(
        self,
        frame: bytes,
        sent: bool = False,
        pieces: list[Chunk] | None = None,
        tail: bytes | None = None,
    ) -> None: ...

    def send(self, frame: Chunk) -> None: ...

    def can_stream_next(self) -> bool: ...

    def write_idle(self) -> bool: ...

    def gather_writes(self) -> None: ...

    def flush_writes(self) -> None: ...

    def close(self, reason: str, quiet: bool = False) -> None: ...

    def upstream_lost(self, exc: Exception | None) -> None: ...

    def pause_client_reading(self) -> None: ...

    def resume_client_reading(self) -> None: ...


class UpstreamSide(asyncio.BufferedProtocol):
    """The broker end of one client connection."""

    def __init__(self, conn: ClientEnd) -> None:
        self.conn = conn
        self.transport: asyncio.Transport | None = None
        self.frames = Frames(conn.shared.max_frame_bytes)
        self.reading = conn.shared.read_buffer
        # A large fetch response is cut through: sent on as it arrives, audited once whole.
        self.cut = CutThrough(conn.shared.buffers)
        # What has arrived of it and is not yet written to the client (views into its
        # segments, which the cut-through keeps until the response is whole anyway).
        self.unsent: list[Chunk] = []
        self.unsent_bytes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.cut.buffer() if self.cut.left else self.reading

    def buffer_updated(self, nbytes: int) -> None:
        metrics = self.conn.shared.metrics
        metrics.bytes_from_brokers += nbytes
        metrics.broker_reads += 1
        if metrics.broker_reads & LATENCY_SAMPLE_MASK:
            self._responses_arrived(nbytes)
            return
        started = time.perf_counter()  # one read in LATENCY_SAMPLE_MASK + 1 is timed
        self._responses_arrived(nbytes)
        metrics.response_latency.observe(time.perf_counter() - started)

    def _responses_arrived(self, nbytes: int) -> None:
        conn = self.conn
        try:
            if self.cut.left:
                head = self.cut.first
                piece, whole = self.cut.filled(nbytes)
                if whole is None:
                    self.unsent.append(piece)
                    self.unsent_bytes += nbytes
                    # Near its end, written as it comes: what is gathered then would
                    # only be written after the last byte, keeping the client waiting.
                    if (
                        self.unsent_bytes >= CUT_WRITE_AT_LEAST
                        or self.cut.left < CUT_WRITE_AT_LEAST
                    ):
                        self._send_unsent()
                    return
                # Under fail_closed the last byte waits until the response's counts are
                # durable: without it the client cannot read the response.
                tail = bytes(piece[-1:]) if conn.shared.fail_closed else None
                self.unsent.append(piece[:-1] if tail else piece)
                self._send_unsent()
                conn.on_response(head, sent=True, pieces=whole, tail=tail)
                self.cut.recycle(conn.write_idle())
                return
            conn.gather_writes()
            try:
                for frame in self.frames.feed(bytes(self.reading[:nbytes])):
                    conn.on_response(frame)
            finally:
                conn.flush_writes()
            # The first piece must hold the correlation id (checked in on_response).
            if (
                self.frames.large_partial(STREAM_AT_LEAST) is not None
                and self.frames.buffered >= 8
                and conn.can_stream_next()
            ):
                first, size = self.frames.take_partial()
                self.cut.start(first, size, conn.write_idle())
                self.unsent, self.unsent_bytes = [first], len(first)
        except ProtocolViolation as exc:
            conn.close(f"broker broke framing: {exc}")
        except Exception as exc:  # a bug in one response must not take the gateway down
            log.exception("response handling failed")
            conn.close(f"gateway error on a response: {exc!r}")

    def _send_unsent(self) -> None:
        """Write to the client what has arrived of the response being cut through."""
        unsent, self.unsent, self.unsent_bytes = self.unsent, [], 0
        conn = self.conn
        if len(unsent) == 1:
            conn.send(unsent[0])
            return
        conn.gather_writes()
        for piece in unsent:
            conn.send(piece)
        conn.flush_writes()

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.upstream_lost(exc)

    def pause_writing(self) -> None:
        self.conn.pause_client_reading()

    def resume_writing(self) -> None:
        self.conn.resume_client_reading()
