"""Proofs a third party can check with the public key alone.

- Inclusion: an event is in the log — the event's canonical bytes, its index (sequence
  number), the audit path and the signed checkpoint whose tree it is in.
- Consistency: the log only grew between an older checkpoint and a newer one (RFC 9162),
  so a verifier that once saw the old checkpoint can check nothing was rewritten.

Both are JSON documents (`kaudit prove` writes them, `kaudit verify-proof` checks them).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from kaudit.errors import KauditError
from kaudit.integrity.checkpoint import CheckpointError, parse_signed
from kaudit.integrity.keys import KeyRing
from kaudit.integrity.merkle import (
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from kaudit.integrity.store import StoredCheckpoint, read_checkpoints
from kaudit.log.segments import LogReader


class ProofError(KauditError):
    """A proof cannot be made (unknown event, no checkpoint) or does not hold."""


class NotAProofError(ProofError):
    """The document given to check is not a kaudit proof (a usage error, not a failed
    proof)."""


def _checkpoints(log_dir: Path) -> list[StoredCheckpoint]:
    return [c for _, _, c in read_checkpoints(log_dir) if isinstance(c, StoredCheckpoint)]


def _lines(log_dir: Path) -> Iterator[bytes]:
    for _, line in LogReader(log_dir).iter_lines():
        yield line.rstrip(b"\n")


def prove_inclusion(log_dir: Path, event_id: str) -> dict[str, Any]:
    """An inclusion proof of `event_id` against the newest checkpoint that covers it."""
    checkpoints = _checkpoints(log_dir)
    if not checkpoints:
        raise ProofError(f"{log_dir} has no checkpoints (enable integrity.checkpoints)")
    latest = checkpoints[-1]
    needle = f'"event_id":"{event_id}"'.encode()
    leaves: list[bytes] = []
    index = -1
    event = b""
    for line in _lines(log_dir):
        if index < 0 and needle in line:
            index, event = len(leaves), line
        leaves.append(leaf_hash(line))
        if len(leaves) >= latest.size and index >= 0:
            break
    if index < 0:
        raise ProofError(f"no event {event_id!r} in {log_dir}")
    if index >= latest.size:
        raise ProofError(
            f"event {event_id} (index {index}) is newer than the latest checkpoint (size "
            f"{latest.size}); try again after the next checkpoint"
        )
    if len(leaves) < latest.size:
        raise ProofError(
            f"the log holds {len(leaves)} events but its checkpoint covers {latest.size}: "
            "run `kaudit verify`"
        )
    return inclusion_document(event_id, index, event, leaves, latest)


def inclusion_document(
    event_id: str, index: int, event: bytes, leaves: Sequence[bytes], checkpoint: StoredCheckpoint
) -> dict[str, Any]:
    """The inclusion proof of `event` (canonical bytes) at `index` in the tree of the
    first `checkpoint.size` of `leaves` (leaf hashes in sequence order)."""
    path = inclusion_proof(leaves, index, checkpoint.size)
    return inclusion_path_document(event_id, index, event, path, checkpoint)


def inclusion_path_document(
    event_id: str, index: int, event: bytes, path: Sequence[bytes], checkpoint: StoredCheckpoint
) -> dict[str, Any]:
    """The inclusion proof document of `event` at `index` given its audit path (RFC 9162
    PATH) in the tree of `checkpoint`."""
    return {
        "type": "inclusion",
        "event_id": event_id,
        "index": index,
        "event": event.decode(),
        "leaf_hash": leaf_hash(event).hex(),
        "tree_size": checkpoint.size,
        "proof": [h.hex() for h in path],
        "checkpoint": checkpoint.note.decode(),
    }


def consistency_document(
    leaves: Sequence[bytes], old: StoredCheckpoint, new: StoredCheckpoint
) -> dict[str, Any]:
    """The consistency proof from checkpoint `old` to `new` over `leaves` (leaf hashes in
    sequence order, at least `new.size` of them)."""
    return {
        "type": "consistency",
        "old_size": old.size,
        "new_size": new.size,
        "proof": [h.hex() for h in consistency_proof(leaves, old.size, new.size)],
        "old_checkpoint": old.note.decode(),
        "new_checkpoint": new.note.decode(),
    }


def prove_consistency(log_dir: Path, old_size: int) -> dict[str, Any]:
    """A consistency proof from the checkpoint of `old_size` events to the newest one."""
    checkpoints = _checkpoints(log_dir)
    old = next((c for c in checkpoints if c.size == old_size), None)
    if old is None or not checkpoints:
        sizes = sorted({c.size for c in checkpoints})
        raise ProofError(f"no checkpoint of size {old_size}; sizes: {sizes[-10:]}")
    new = checkpoints[-1]
    leaves = []
    for line in _lines(log_dir):
        leaves.append(leaf_hash(line))
        if len(leaves) >= new.size:
            break
    if len(leaves) < new.size:
        raise ProofError(f"the log holds fewer events ({len(leaves)}) than its checkpoint")
    return consistency_document(leaves, old, new)


def verify_proof(document: bytes, verifiers: KeyRing) -> str:
    """Check a proof with the public keys only; a one-line description when it holds,
    ProofError saying what failed when it does not."""
    try:
        proof = orjson.loads(document)
        kind = proof["type"]
        hashes = [bytes.fromhex(h) for h in proof["proof"]]
        if kind == "inclusion":
            head = parse_signed(proof["checkpoint"], verifiers).require_trusted()
            event = proof["event"].encode()
            index = int(proof["index"])
            if orjson.loads(event).get("event_id") != proof["event_id"]:
                raise ProofError("the event in the proof is not the event it names")
            if head.size != int(proof["tree_size"]):
                raise ProofError("the proof's tree size is not the checkpoint's")
            if not verify_inclusion(leaf_hash(event), index, head.size, hashes, head.root):
                raise ProofError(
                    f"event {proof['event_id']} is NOT included at index {index} in the tree "
                    f"of {head.size} signed by {head.origin}"
                )
            return (
                f"event {proof['event_id']} is included at index {index} in {head.origin} "
                f"(tree size {head.size}, checkpoint signed by a trusted key)"
            )
        if kind == "consistency":
            old = parse_signed(proof["old_checkpoint"], verifiers).require_trusted()
            new = parse_signed(proof["new_checkpoint"], verifiers).require_trusted()
            if old.origin != new.origin:
                raise ProofError(f"checkpoints of two logs: {old.origin} and {new.origin}")
            if not verify_consistency(old.size, new.size, old.root, new.root, hashes):
                raise ProofError(
                    f"the log {new.origin} of size {new.size} does NOT extend its earlier "
                    f"state of size {old.size}: it was rewritten"
                )
            return (
                f"{new.origin} grew from {old.size} to {new.size} events without rewriting "
                "any (both checkpoints signed by a trusted key)"
            )
        raise NotAProofError(f"unknown proof type {kind!r}; accepted: inclusion, consistency")
    except CheckpointError as exc:
        raise ProofError(f"the proof's checkpoint is not trusted: {exc}") from exc
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise NotAProofError(f"not a kaudit proof document (from `kaudit prove`): {exc}") from exc
