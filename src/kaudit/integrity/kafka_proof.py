"""Proofs from a Kafka log: `prove_kafka_inclusion` / `prove_kafka_consistency` make the
proofs of integrity/proof.py in the tree of one writer stream, against the stream's
checkpoints on the companion topic, checked by `verify_proof` like a local log's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kaudit.config.model import KafkaConnection
from kaudit.integrity.checkpoint import parse_signed
from kaudit.integrity.kafka_streams import checkpoint_topic, read_checkpoint_topic, stream_items
from kaudit.integrity.keys import KeyRing
from kaudit.integrity.merkle import leaf_hash
from kaudit.integrity.merkle import root as merkle_root
from kaudit.integrity.proof import ProofError, consistency_document, inclusion_document
from kaudit.integrity.store import StoredCheckpoint
from kaudit.log.kafka import KafkaLogReader


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
    for seq, line in stream_items(connection, topic, frozenset({stream}), partitions):
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
