"""Large frames cut through into pooled buffers: every byte arrives once, in order, and a
buffer is reused only when nothing written from it is still queued."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kaudit_gateway_frames import frame

from kaudit.gateway import framing
from kaudit.gateway.framing import BufferPool, CutThrough, Frames, head_of

AT_LEAST = 64


def relay(stream: bytes, reads: list[int], sink_idle: bool) -> tuple[bytes, list[bytes], int]:
    """Drive Frames and CutThrough the way the gateway's protocols do (`get_buffer` then
    `buffer_updated`), with reads of the given sizes: (bytes passed on, whole frames seen,
    frames cut through)."""
    pool = BufferPool(keep_bytes=1 << 20)
    frames, cut = Frames(max_bytes=1 << 20), CutThrough(pool)
    ordinary = bytearray(256)
    sent: list[bytes] = []
    whole: list[bytes] = []
    cuts = 0
    pos, sizes = 0, iter(reads)
    while pos < len(stream):
        target = cut.buffer() if cut.left else memoryview(ordinary)
        n = min(len(target), len(stream) - pos, next(sizes, 97))
        target[:n] = stream[pos : pos + n]
        pos += n
        if cut.left:
            head = cut.first
            piece, pieces = cut.filled(n)
            sent.append(bytes(piece))
            if pieces is not None:
                assert pieces[0] == head
                whole.append(b"".join(bytes(p) for p in pieces))
                cut.recycle(sink_idle)
            continue
        for f in frames.feed(bytes(ordinary[:n])):
            sent.append(f)
            whole.append(f)
        partial = frames.large_partial(AT_LEAST)
        if partial is not None and frames.buffered >= 8:
            first, size = frames.take_partial()
            cut.start(first, size, sink_idle)
            sent.append(first)
            cuts += 1
    return b"".join(sent), whole, cuts


@settings(max_examples=200)
@given(
    st.lists(st.binary(max_size=600), min_size=1, max_size=12),
    st.lists(st.integers(1, 700), max_size=40),
    st.booleans(),
)
def test_every_byte_passes_once_in_order_however_it_is_read(
    payloads: list[bytes], reads: list[int], sink_idle: bool
) -> None:
    stream = b"".join(frame(p) for p in payloads)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(framing, "SEGMENT_BYTES", 50)  # frames span several segments
        sent, whole, _ = relay(stream, reads, sink_idle)
    assert sent == stream
    assert whole == [frame(p) for p in payloads]


def test_large_frames_are_cut_through_and_small_ones_are_not() -> None:
    payloads = [b"a" * 10, bytes(range(256)) * 8, b"b" * 20, b"c" * 5000]
    stream = b"".join(frame(p) for p in payloads)
    sent, whole, cuts = relay(stream, [100] * 200, sink_idle=True)
    assert sent == stream and whole == [frame(p) for p in payloads]
    assert cuts == 2


def test_a_buffer_is_reused_only_when_nothing_is_queued_from_it() -> None:
    pool = BufferPool(keep_bytes=10_000)
    cut = CutThrough(pool)

    def one_frame(idle_at_start: bool, idle_at_end: bool) -> bytearray:
        cut.start(b"head", 1004, idle_at_start)
        (buffer,) = cut.bufs
        cut.buffer()[:] = b"x" * 1000
        _, pieces = cut.filled(1000)
        assert pieces is not None
        cut.recycle(idle_at_end)
        return buffer

    first = one_frame(True, True)
    assert pool.free == [first]
    # Taken from the pool; the client has not read all of it when the frame ends.
    assert one_frame(True, False) is first
    assert pool.free == []
    # Still queued when the next frame starts: that one gets a new buffer.
    third = one_frame(False, True)
    assert third is not first
    assert pool.free == [third]
    # Queued at the end, drained by the next start: back in the pool and reused.
    assert one_frame(True, False) is third
    assert one_frame(True, True) is third


def test_the_pool_keeps_at_most_its_limit_and_hands_out_the_smallest_fit() -> None:
    pool = BufferPool(keep_bytes=3000)
    small, large = bytearray(1000), bytearray(2000)
    pool.give(large)
    pool.give(small)
    pool.give(bytearray(500))  # over the limit: not kept
    assert pool.kept == 3000
    assert pool.take(900) is small
    assert pool.take(1500) is large
    assert len(pool.take(1500)) == 1500  # none left: a new one
    assert pool.kept == 0


def test_memory_is_taken_as_a_frame_arrives_not_as_announced() -> None:
    pool = BufferPool(keep_bytes=0)
    cut = CutThrough(pool)
    cut.start(b"\x7f\xff\xff\xff", 2**31, sink_idle=True)  # announces 2 GiB
    assert sum(len(b) for b in cut.bufs) == framing.SEGMENT_BYTES
    assert len(cut.buffer()) == framing.SEGMENT_BYTES


def test_a_large_frame_that_is_not_cut_through_is_joined_once_not_on_each_read() -> None:
    # A 32 MiB fetch response under fail_closed is collected whole, while the protocol
    # asks after every read whether it could be cut through. Joined on each read that
    # is some 32 GiB of copying (tens of seconds); joined once, a fraction of a second.
    payload = b"f" * (32 * 1024 * 1024)
    stream = frame(payload)
    frames = Frames(max_bytes=64 * 1024 * 1024)
    read = 16 * 1024
    started = time.perf_counter()
    whole: list[bytes] = []
    for pos in range(0, len(stream), read):
        whole += frames.feed(stream[pos : pos + read])
        arrived = frames.large_partial(AT_LEAST)
        if arrived is not None:
            assert head_of(arrived, 12)[:12] == stream[:12]
    elapsed = time.perf_counter() - started
    assert whole == [stream]
    assert elapsed < 3.0, f"32 MiB collected in {elapsed:.1f}s"
