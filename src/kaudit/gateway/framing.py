"""Reading one direction of a Kafka connection: frames, and large frames cut through.

Kafka frames are a 4-byte big-endian size and then the frame. `Frames` cuts a byte
stream into whole frames. A large frame the gateway only needs to look at (a fetch
response, a produce request) is instead cut through: passed on piece by piece as it
arrives. `CutThrough` reads the rest of such a frame straight from the socket into
segments of its own (the protocol's `get_buffer`), so the bytes are copied by the kernel
into them and by the kernel out of them, and nowhere else; the frame is then summed up
from its pieces once whole. The segments come from a `BufferPool` shared by the
gateway's connections, because fresh megabytes cost a page fault per 4 KiB touched — as
much as copying the frame would.
"""

from __future__ import annotations

import struct
from typing import TypeAlias, cast

Chunk: TypeAlias = bytes | memoryview
"""A piece of a frame: bytes from an ordinary read, or a view into a cut-through
frame's buffer."""

_INT32 = struct.Struct(">i")

SEGMENT_BYTES = 1024 * 1024
"""What a cut-through frame is read into at a time (see `CutThrough`)."""


class ProtocolViolation(Exception):
    """The peer broke Kafka framing or the request/response order: close the connection."""


class Frames:
    """Cuts a byte stream into Kafka frames (4-byte big-endian size, then the frame).

    A frame that arrives in pieces is kept as a list of chunks and joined once when
    complete, so a 1 MiB frame is copied once, not once per read.
    """

    __slots__ = ("chunks", "have", "limit_name", "max_bytes", "need")

    def __init__(self, max_bytes: int, limit_name: str = "gateway.max_frame_bytes") -> None:
        self.max_bytes = max_bytes
        self.limit_name = limit_name  # the setting that bounds frames now, for the error
        self.chunks: list[bytes] = []
        self.have = 0
        self.need = 0  # bytes of the frame being collected (prefix included); 0: unknown

    @property
    def buffered(self) -> int:
        return self.have

    def feed(self, data: bytes) -> list[bytes]:
        if self.chunks:
            self.chunks.append(data)
            self.have += len(data)
            if not self.need and self.have >= 4:
                head = b"".join(self.chunks)
                self.chunks = [head]
                self.need = 4 + self.frame_size(head, 0)
            if not self.need or self.have < self.need:
                return []
            data = b"".join(self.chunks)
            self.chunks, self.have, self.need = [], 0, 0
        frames: list[bytes] = []
        pos, end = 0, len(data)
        while end - pos >= 4:
            stop = pos + 4 + self.frame_size(data, pos)
            if stop > end:
                self.need = stop - pos
                break
            frames.append(data if pos == 0 and stop == end else data[pos:stop])
            pos = stop
        if pos < end:
            rest = data[pos:] if pos else data
            self.chunks, self.have = [rest], len(rest)
        return frames

    def frame_size(self, data: bytes, pos: int) -> int:
        """The size a frame at `pos` announces; ProtocolViolation if out of bounds."""
        size: int = _INT32.unpack_from(data, pos)[0]
        if size < 0 or size > self.max_bytes:
            raise ProtocolViolation(
                f"frame of {size} bytes; accepted: 0..{self.max_bytes} ({self.limit_name})"
            )
        return size

    def large_partial(self, at_least: int) -> list[bytes] | None:
        """What has arrived of the frame being collected, as the chunks it came in, when
        at least `at_least` more bytes of it are still to come. Never joined here: the
        caller looks at the head, and takes the frame (`take_partial`) only if it cuts
        it through, so a large frame that is not cut through is joined once, when whole,
        not once per read."""
        if not self.need or self.need - self.have < at_least:
            return None
        return self.chunks

    def take_partial(self) -> tuple[bytes, int]:
        """(what has arrived of the frame being collected, joined, its whole size),
        forgotten here: it is cut through instead."""
        first = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        size = self.need
        self.chunks, self.have, self.need = [], 0, 0
        return first, size


def head_of(chunks: list[bytes], size: int) -> bytes:
    """At least the first `size` bytes of a frame given as chunks (fewer if fewer have
    arrived), joining only the chunks that hold them."""
    if chunks and len(chunks[0]) >= size:
        return chunks[0]
    out = bytearray()
    for chunk in chunks:
        out += chunk
        if len(out) >= size:
            break
    return bytes(out)


class BufferPool:
    """Buffers for frames being cut through, shared by a gateway's connections. At most
    `keep_bytes` of free buffers are kept; a frame larger than any free buffer gets a
    new one."""

    __slots__ = ("free", "keep_bytes", "kept")

    def __init__(self, keep_bytes: int) -> None:
        self.keep_bytes = keep_bytes
        self.free: list[bytearray] = []
        self.kept = 0

    def take(self, size: int) -> bytearray:
        """The smallest free buffer of at least `size` bytes, or a new one."""
        fitting = [b for b in self.free if len(b) >= size]
        if not fitting:
            return bytearray(size)
        buf = min(fitting, key=len)
        self.free.remove(buf)
        self.kept -= len(buf)
        return buf

    def give(self, buf: bytearray) -> None:
        """Take back a buffer nothing reads or writes any more (else the memory is
        simply freed when the last reference goes)."""
        if self.kept + len(buf) <= self.keep_bytes:
            self.free.append(buf)
            self.kept += len(buf)


class CutThrough:
    """A large frame passed on as it arrives and kept, as its pieces, to be looked at
    once whole. Its first bytes arrived with an ordinary read; the rest is read directly
    into pooled segments of at most `SEGMENT_BYTES` (`buffer()` is what the protocol's
    `get_buffer` returns while `left`), so reads stop exactly at the frame's end, and
    memory is taken only as the frame's bytes arrive: a peer that announces a huge frame
    and sends nothing holds one segment."""

    __slots__ = ("bufs", "done", "filled_to", "left", "pieces", "pool", "view")

    def __init__(self, pool: BufferPool) -> None:
        self.pool = pool
        self.pieces: list[Chunk] = []  # what has arrived: the first bytes, full segments
        self.bufs: list[bytearray] = []  # this frame's segments
        self.view: memoryview | None = None  # the segment being filled
        self.filled_to = 0
        self.left = 0  # bytes of the frame still to come; 0: no frame being cut through
        # The last frame's segments, until what was written from them has left.
        self.done: list[bytearray] = []

    @property
    def first(self) -> bytes:
        """The frame's first bytes (its size prefix and header)."""
        return cast(bytes, self.pieces[0]) if self.pieces else b""

    def start(self, first: bytes, size: int, sink_idle: bool) -> None:
        """Begin a frame of `size` bytes (size prefix included) of which `first` has
        arrived. `sink_idle`: whether everything written from the last frame's segments
        has gone, so they can be used again."""
        self.recycle(sink_idle)
        self.done = []
        self.pieces, self.bufs = [first], []
        self.left = size - len(first)
        self._next_segment()

    def _next_segment(self) -> None:
        size = min(self.left, SEGMENT_BYTES)
        buf = self.pool.take(size)
        self.bufs.append(buf)
        self.view, self.filled_to = memoryview(buf)[:size], 0

    def buffer(self) -> memoryview:
        """Where the next read goes: the rest of the segment, and no further."""
        assert self.view is not None
        return self.view[self.filled_to :]

    def filled(self, nbytes: int) -> tuple[memoryview, list[Chunk] | None]:
        """(the `nbytes` just read into `buffer()`, the frame's pieces once complete)."""
        view = self.view
        assert view is not None
        start = self.filled_to
        self.filled_to += nbytes
        self.left -= nbytes
        piece = view[start : self.filled_to]
        if self.filled_to == len(view):
            self.pieces.append(view)
            if self.left:
                self._next_segment()
        if self.left:
            return piece, None
        whole, self.pieces, self.view = self.pieces, [], None
        self.done, self.bufs = self.bufs, []
        return piece, whole

    def recycle(self, sink_idle: bool) -> None:
        """Give the last frame's segments back to the pool if nothing is queued from
        them any more (`sink_idle`); called when the frame is complete, and again before
        the next one starts, after which segments still queued are left to the garbage
        collector."""
        if self.done and sink_idle:
            for buf in self.done:
                self.pool.give(buf)
            self.done = []
