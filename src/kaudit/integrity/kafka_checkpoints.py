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

This module is the writer's side. Reading the topics back is kafka_streams.py; the
verifier is `kaudit.integrity.verify.kafka.verify_kafka`, the proofs are kafka_proof.py.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import orjson
from confluent_kafka import KafkaError, Producer

from kaudit.errors import LogError
from kaudit.files import open_private
from kaudit.integrity.checkpointer import Checkpointer, resumable_tree
from kaudit.integrity.kafka_streams import checkpoint_topic
from kaudit.integrity.keys import Signer
from kaudit.integrity.merkle import MerkleTree, leaf_hashes
from kaudit.log.kafka import (
    ErrorTracker,
    KafkaLogReader,
    KafkaLogSink,
    client_base,
    ensure_topic,
    error_text,
)

__all__ = [
    "KafkaCheckpoints",
    "checkpoint_topic",
]

log = logging.getLogger("kaudit.integrity")

_PUBLISH_TIMEOUT_S = 30.0


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
        with open_private(tmp) as f:
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
