"""Merkle checkpoints of the Kafka log: one tree per writer stream, kept on a companion topic.

Each writer of the Kafka log is one stream with its own sequence numbers, its records
spread over the partitions by resource key; the stream's tree has its events as leaves
in sequence order, the order the writer seals them (the order of records across
partitions means nothing). Its signed checkpoints are produced, acks=all, to
`<log topic>.checkpoints` (one partition, so they stay in order), keyed by stream id,
each value `{"stream", "size", "frontier", "note"}`; the origin in the note is
`<origin>/<stream>`.

To resume after a restart the writer keeps, at each checkpoint, the tree's size,
frontier and signed note and the partition ends seen then in
`<state dir>/<topic>.tree.json`; it rebuilds the tree from there by reading its own
records after those ends back from the topic. A frontier that does not fold to its own
signed root is not built on: the tree is rebuilt from the start of the topic.

`verify_kafka` checks each stream of a topic as the local verifier checks a log, the
stream's records merged from the partitions in sequence order as they are read;
`prove_kafka_inclusion` / `prove_kafka_consistency` make the proofs of integrity/proof.py
from a stream's tree.
"""

from __future__ import annotations

import heapq
import io
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

import orjson
from confluent_kafka import KafkaError, Producer

from kaudit.config.model import KafkaConnection
from kaudit.errors import LogError
from kaudit.integrity.checkpoint import parse_signed
from kaudit.integrity.checkpointer import Checkpointer, resumable_tree
from kaudit.integrity.keys import KeyRing, Signer
from kaudit.integrity.merkle import MerkleTree, leaf_hash, leaf_hashes
from kaudit.integrity.merkle import root as merkle_root
from kaudit.integrity.proof import ProofError, consistency_document, inclusion_document
from kaudit.integrity.store import StoredCheckpoint
from kaudit.integrity.verify import (
    LogPart,
    VerifyReport,
    VerifyUsageError,
    sequence_of,
    verify_parts,
)
from kaudit.log.kafka import (
    ErrorTracker,
    KafkaLogReader,
    KafkaLogSink,
    client_base,
    ensure_topic,
    error_text,
)

log = logging.getLogger("kaudit.integrity")

_PUBLISH_TIMEOUT_S = 30.0


def checkpoint_topic(log_topic: str) -> str:
    """The companion topic that holds the checkpoints of a Kafka log topic."""
    return f"{log_topic}.checkpoints"


class KafkaCheckpoints:
    """The Merkle tree of this writer's stream and its checkpoints on the companion topic."""

    def __init__(
        self,
        sink: KafkaLogSink,
        signer: Signer,
        origin: str,
        *,
        every_events: int,
        every_seconds: float,
    ) -> None:
        self.sink = sink
        self.topic = checkpoint_topic(sink.topic)
        config = sink.config
        if config.create_topic:
            ensure_topic(config.model_copy(update={"topic": self.topic, "partitions": 1}))
        self._tree_path = sink.state_dir / f"{sink.topic}.tree.json"
        self._errors = ErrorTracker()
        self._failure: str | None = None
        self._producer = Producer(
            {
                **client_base(config, self._errors),
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 0,
                "message.timeout.ms": max(config.write_timeout_ms, 1000),
                "on_delivery": self._delivered,
            }
        )
        self.checkpointer = Checkpointer(
            self._resume(),
            signer,
            f"{origin}/{sink.stream}",
            self._publish,
            every_events=every_events,
            every_seconds=every_seconds,
        )
        # A checkpoint at start says where this run begins (also after an unclean stop).
        self.checkpointer.checkpoint()

    # -- the tree after a restart -------------------------------------------------------------

    def _resume(self) -> MerkleTree:
        sink = self.sink
        size, tree, offsets = 0, MerkleTree(), {}
        try:
            saved = orjson.loads(self._tree_path.read_bytes())
        except FileNotFoundError:
            saved = None
        except orjson.JSONDecodeError:
            log.warning("%s is damaged; rebuilding the tree from the topic", self._tree_path)
            saved = None
        if saved is not None and saved.get("stream") == sink.stream:
            frontier = [bytes.fromhex(h) for h in saved["frontier"]]
            size = int(saved["size"])
            if size <= sink.next_sequence and resumable_tree(
                size, frontier, saved["note"].encode()
            ):
                tree = MerkleTree.from_frontier(size, frontier)
                offsets = {int(p): int(o) for p, o in saved["offsets"].items()}
            else:
                log.warning(
                    "the tree frontier in %s does not match its signed root; rebuilding the "
                    "tree of stream %s from the topic",
                    self._tree_path,
                    sink.stream,
                )
        if tree.size < sink.next_sequence:
            lines = self._own_lines(offsets, tree.size, sink.next_sequence)
            tree.extend(leaf_hashes(lines))
        return tree

    def _own_lines(self, offsets: dict[int, int], start: int, end: int) -> list[bytes]:
        """This stream's events `start`..`end - 1`, read back from the log topic."""
        found: dict[int, bytes] = {}
        reader = KafkaLogReader(self.sink.config, group=None)
        try:
            for record in reader.records_from(offsets):
                if record.stream != self.sink.stream:
                    continue
                seq = record.sequence
                if seq is not None and start <= seq < end:
                    found.setdefault(seq, record.line)
        finally:
            reader.close()
        missing = [s for s in range(start, end) if s not in found]
        if missing:
            raise LogError(
                f"kafka audit log {self.sink.topic}: events {missing[0]}..{missing[-1]} of "
                f"stream {self.sink.stream} are not in the topic, so its Merkle tree cannot "
                "be continued: run `kaudit verify` on it"
            )
        return [found[s] for s in range(start, end)]

    # -- checkpoints --------------------------------------------------------------------------

    def _delivered(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            self._failure = error_text(err)

    def _publish(self, size: int, frontier: tuple[bytes, ...], note: bytes) -> None:
        stream = self.sink.stream
        hexes = [h.hex() for h in frontier]
        value = {"stream": stream, "size": size, "frontier": hexes, "note": note.decode()}
        self._failure = None
        self._producer.produce(self.topic, orjson.dumps(value), stream.encode())
        left = self._producer.flush(_PUBLISH_TIMEOUT_S)
        if left or self._failure:
            cause = self._failure or self._errors.last or "no acknowledgement in time"
            raise LogError(f"checkpoint not written to kafka topic {self.topic}: {cause}")
        state = {**value, "offsets": {str(p): o for p, o in self.sink.durable_ends().items()}}
        tmp = self._tree_path.with_suffix(".tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(orjson.dumps(state))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._tree_path)

    def appended(self, lines: Sequence[bytes]) -> None:
        self.checkpointer.extend(leaf_hashes([line.rstrip(b"\n") for line in lines]))
        if self.checkpointer.due:
            self.checkpointer.checkpoint()

    def tick(self) -> None:
        self.checkpointer.tick()

    def close(self, *, checkpoint: bool) -> None:
        try:
            if checkpoint:
                self.checkpointer.checkpoint(closed=True)
        finally:
            self._producer.flush(_PUBLISH_TIMEOUT_S)


# ------------------------------------------------------------------------------ reading

_NO_HEADER = "(no stream header)"
_PREFETCH_KB = 4096
"""What a reader of the whole topic asks the client to hold ahead (its default, 64 MB
per reader, would keep most of a small topic in memory; one reader per partition is
open at once while a stream is merged)."""


def read_checkpoint_topic(
    connection: KafkaConnection, topic: str
) -> dict[str, list[StoredCheckpoint | str]]:
    """The checkpoint records on the companion topic of log `topic`, by stream, in the
    order they were published (unreadable ones as why; an absent topic holds none)."""
    out: dict[str, list[StoredCheckpoint | str]] = {}
    reader = KafkaLogReader(connection, group=None, topic=checkpoint_topic(topic))
    try:
        records = list(reader.records_from({}))
    except LogError:
        records = []  # no checkpoint topic: the streams have no checkpoints
    finally:
        reader.close()
    for record in records:
        try:
            obj = orjson.loads(record.line)
            name = str(obj["stream"])
            item: StoredCheckpoint | str = StoredCheckpoint(
                size=int(obj["size"]),
                segment=0,
                offset=0,
                frontier=tuple(bytes.fromhex(h) for h in obj["frontier"]),
                note=str(obj["note"]).encode(),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            name = record.stream or ""
            item = f"offset {record.offset}: unreadable checkpoint record: {exc}"
        out.setdefault(name, []).append(item)
    return out


def log_streams(connection: KafkaConnection, topic: str) -> tuple[dict[str, int], list[int]]:
    """The writer streams of log `topic` with their record counts ("" for records without
    a stream header), and the topic's partitions. Reads the topic once, keeping nothing."""
    counts: dict[str, int] = {}
    reader = KafkaLogReader(connection, group=None, topic=topic, prefetch_kbytes=_PREFETCH_KB)
    try:
        partitions = reader.partitions()
        for record in reader.records_from({}):
            name = record.stream or ""
            counts[name] = counts.get(name, 0) + 1
    finally:
        reader.close()
    return counts, partitions


def _partition_lines(
    connection: KafkaConnection, topic: str, partition: int, streams: frozenset[str]
) -> Iterator[tuple[int, bytes]]:
    """(sequence number, line) of the records of `streams` in one partition, in the
    order the writer put them there. A line without a readable sequence number keeps
    the place of the one before it (-1 at the start), so it stays where it was found."""
    # One reader per partition is open at once: a small prefetch keeps their sum small.
    reader = KafkaLogReader(connection, group=None, topic=topic, prefetch_kbytes=_PREFETCH_KB)
    try:
        last = -1
        for record in reader.partition_records(partition):
            if (record.stream or "") not in streams:
                continue
            seq = sequence_of(record.line)
            if seq is not None:
                last = seq
            yield last, record.line
    finally:
        reader.close()


def stream_lines(
    connection: KafkaConnection, topic: str, streams: frozenset[str], partitions: Sequence[int]
) -> Iterator[bytes]:
    """The lines of one writer stream (`streams`: its id, and "" to take records without
    a stream header along), merged from all partitions in sequence order as they are
    read, one consumer per partition: each partition holds the stream's records in the
    order they were sealed. A record delivered twice (the same bytes under the same
    sequence number: at-least-once) is yielded once."""
    for _, line in _stream_items(connection, topic, streams, partitions):
        yield line


def _stream_items(
    connection: KafkaConnection, topic: str, streams: frozenset[str], partitions: Sequence[int]
) -> Iterator[tuple[int, bytes]]:
    merged = heapq.merge(
        *(_partition_lines(connection, topic, p, streams) for p in partitions),
        key=lambda item: item[0],
    )
    current: int | None = None
    seen: set[bytes] = set()
    for seq, line in merged:
        if seq != current:
            current, seen = seq, set()
        if line in seen:
            continue
        seen.add(line)
        yield seq, line


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


# ------------------------------------------------------------------------------- proofs


def _find_event(connection: KafkaConnection, topic: str, event_id: str) -> tuple[str, int, bytes]:
    """(stream, sequence number, line) of the first record of `event_id`."""
    needle = f'"event_id":"{event_id}"'.encode()
    reader = KafkaLogReader(connection, group=None, topic=topic)
    try:
        for record in reader.records_from({}):
            if needle in record.line and (seq := record.sequence) is not None:
                return record.stream or "", seq, record.line
    finally:
        reader.close()
    raise ProofError(f"no event {event_id!r} in kafka topic {topic}")


def _stream_leaves(connection: KafkaConnection, topic: str, stream: str, size: int) -> list[bytes]:
    """The leaf hashes of events 0..`size` - 1 of `stream`, in sequence order; ProofError
    when the topic does not hold exactly one version of each (`kaudit verify` says why)."""
    reader = KafkaLogReader(connection, group=None, topic=topic)
    try:
        partitions = reader.partitions()
    finally:
        reader.close()
    leaves: list[bytes] = []
    for seq, line in _stream_items(connection, topic, frozenset({stream}), partitions):
        if seq >= size:
            break
        leaf = leaf_hash(line)
        if seq < len(leaves):
            if seq >= 0 and leaves[seq] != leaf:
                raise ProofError(
                    f"stream {stream} holds two different events {seq}: run `kaudit verify`"
                )
            continue
        if seq > len(leaves):
            raise ProofError(
                f"stream {stream} lacks events {len(leaves)}..{seq - 1}: run `kaudit verify`"
            )
        leaves.append(leaf)
    if len(leaves) < size:
        raise ProofError(
            f"stream {stream} holds {len(leaves)} events but its checkpoint covers {size}: "
            "run `kaudit verify`"
        )
    return leaves


def _stream_checkpoints(
    connection: KafkaConnection, topic: str, stream: str
) -> list[StoredCheckpoint]:
    found = read_checkpoint_topic(connection, topic).get(stream, [])
    checkpoints = [c for c in found if isinstance(c, StoredCheckpoint)]
    if not checkpoints:
        raise ProofError(
            f"stream {stream} of kafka topic {topic} has no checkpoints on "
            f"{checkpoint_topic(topic)} (enable integrity.checkpoints)"
        )
    return checkpoints


def _check_root(leaves: Sequence[bytes], checkpoint: StoredCheckpoint, stream: str) -> None:
    # Checked here (not only by the reader of the proof) so a proof against a tampered
    # stream is refused where it is made, naming what to run.
    signed_root = parse_signed(checkpoint.note, KeyRing()).checkpoint.root
    if merkle_root(leaves[: checkpoint.size]) != signed_root:
        raise ProofError(
            f"the events of stream {stream} do not match its checkpoint of size "
            f"{checkpoint.size}: run `kaudit verify`"
        )


def prove_kafka_inclusion(connection: KafkaConnection, topic: str, event_id: str) -> dict[str, Any]:
    """An inclusion proof of `event_id` in its stream's tree, against the stream's latest
    checkpoint on the companion topic (checked by `verify_proof` like a local one)."""
    stream, seq, event = _find_event(connection, topic, event_id)
    latest = _stream_checkpoints(connection, topic, stream)[-1]
    if seq >= latest.size:
        raise ProofError(
            f"event {event_id} (sequence {seq} of stream {stream}) is newer than the latest "
            f"checkpoint (size {latest.size}); try again after the next checkpoint"
        )
    leaves = _stream_leaves(connection, topic, stream, latest.size)
    _check_root(leaves, latest, stream)
    if leaves[seq] != leaf_hash(event):
        raise ProofError(
            f"the record of {event_id} found first is not the event {seq} the checkpoint "
            "covers (a forged copy?): run `kaudit verify`"
        )
    return inclusion_document(event_id, seq, event, leaves, latest)


def prove_kafka_consistency(
    connection: KafkaConnection, topic: str, old_size: int, stream: str | None = None
) -> dict[str, Any]:
    """A consistency proof from a stream's checkpoint of `old_size` events to its latest
    one. `stream` may be left out when the topic has checkpoints of one stream only."""
    if stream is None:
        named = sorted(n for n, items in read_checkpoint_topic(connection, topic).items() if n)
        if len(named) != 1:
            raise ProofError(
                f"kafka topic {topic} has checkpoints of {len(named)} streams "
                f"({', '.join(named) or 'none'}): say which one"
            )
        stream = named[0]
    checkpoints = _stream_checkpoints(connection, topic, stream)
    old = next((c for c in checkpoints if c.size == old_size), None)
    if old is None:
        sizes = sorted({c.size for c in checkpoints})
        raise ProofError(
            f"stream {stream} has no checkpoint of size {old_size}; sizes: {sizes[-10:]}"
        )
    new = checkpoints[-1]
    leaves = _stream_leaves(connection, topic, stream, new.size)
    _check_root(leaves, new, stream)
    return consistency_document(leaves, old, new)
