"""The writer's integrity step: the HMAC chain on each line and, over the same lines,
the RFC 6962 Merkle tree whose signed checkpoints are kept beside the log.

Built from `audit.integrity`; the recorder calls it in sequence order on its single
writer thread, so it needs no locking. The local log's tree is kept by a follower
process (kaudit.integrity.follower) that the sealer tells what became durable; when
checkpoints are due is `kaudit.integrity.checkpointer`'s business.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from kaudit.config.model import Integrity
from kaudit.errors import LogError
from kaudit.integrity.chain import HmacChain, signing_key, split_sealed
from kaudit.integrity.follower import FollowerProcess
from kaudit.integrity.keys import load_signer
from kaudit.integrity.settings import check_log_settings
from kaudit.log.segments import SegmentLog


class StreamCheckpoints(Protocol):
    """Who keeps a log stream's Merkle tree and writes its checkpoints."""

    def appended(self, lines: Sequence[bytes]) -> None: ...

    def tick(self) -> None: ...

    def close(self, *, checkpoint: bool) -> None:
        """Stop; with `checkpoint`, after the final (closed) checkpoint."""


class LocalCheckpoints:
    """The local log's checkpoints, kept by its follower process (kaudit.integrity.follower)."""

    def __init__(self, follower: FollowerProcess) -> None:
        self.follower = follower

    def appended(self, lines: Sequence[bytes]) -> None:
        self.follower.appended()  # it reads the lines back from the segments

    def tick(self) -> None:
        self.follower.tick()

    def close(self, *, checkpoint: bool) -> None:
        self.follower.close(checkpoint=checkpoint)


class IntegritySealer:
    """Seals lines with the HMAC chain and tells the checkpoints what became durable."""

    def __init__(self, chain: HmacChain | None, checkpoints: StreamCheckpoints | None) -> None:
        self.chain = chain
        self.checkpoints = checkpoints
        self.seals = chain is not None

    def seal(self, line: bytes) -> bytes:
        return self.chain.seal(line) if self.chain is not None else line

    def seal_heads(self, heads: Sequence[bytes]) -> list[bytes]:
        if self.chain is None:
            raise ValueError("this sealer does not sign: hand it whole lines")
        return self.chain.seal_heads(heads)

    def appended(self, lines: Sequence[bytes]) -> None:
        if self.checkpoints is not None:
            self.checkpoints.appended(lines)

    def tick(self) -> None:
        if self.checkpoints is not None:
            self.checkpoints.tick()

    def close(self, *, checkpoint: bool = True) -> None:
        """Stop; with `checkpoint`, after the final (closed) checkpoint."""
        if self.checkpoints is not None:
            self.checkpoints.close(checkpoint=checkpoint)


def default_origin(cluster_id: str | None) -> str:
    return f"kaudit/{cluster_id or socket.gethostname()}"


def build_sealer(
    integrity: Integrity, sink: object, cluster_id: str | None = None
) -> IntegritySealer | None:
    """The sealer for this configuration, continuing the chain and tree of the log;
    refused (IntegrityMismatchError) when a local log was written with other settings."""
    if isinstance(sink, SegmentLog):
        check_log_settings(sink.dir, integrity, data_dir=sink.dir.parent)
    chain: HmacChain | None = None
    if integrity.signing.enabled:
        previous = None
        last_line = getattr(sink, "last_line", None)
        if last_line is not None and integrity.chain.enabled:
            try:
                _, previous, _ = split_sealed(last_line)
            except ValueError:
                previous = None  # the log so far was not signed: the chain starts here
        key = signing_key(integrity.signing)
        chain = HmacChain(key, chained=integrity.chain.enabled, previous=previous)
    checkpoints: StreamCheckpoints | None = None
    settings = integrity.checkpoints
    if settings.enabled:
        assert settings.key_file is not None  # the config model requires it
        if not isinstance(sink, SegmentLog):
            from kaudit.integrity.kafka_checkpoints import KafkaCheckpoints
            from kaudit.log.kafka import KafkaLogSink

            if not isinstance(sink, KafkaLogSink):
                raise LogError(f"integrity.checkpoints cannot be kept for {type(sink).__name__}")
            if settings.anchor_path:
                raise LogError(
                    "integrity.checkpoints.anchor_path is for the local log; the Kafka log "
                    "keeps its checkpoints on its companion topic <topic>.checkpoints"
                )
            checkpoints = KafkaCheckpoints(
                sink,
                load_signer(Path(settings.key_file).expanduser()),
                settings.origin or default_origin(cluster_id),
                every_events=settings.every_events,
                every_seconds=settings.every_seconds,
            )
            return IntegritySealer(chain, checkpoints)
        checkpoints = LocalCheckpoints(
            FollowerProcess(
                sink,
                str(Path(settings.key_file).expanduser()),
                settings.origin or default_origin(cluster_id),
                every_events=settings.every_events,
                every_seconds=settings.every_seconds,
                anchor=Path(settings.anchor_path).expanduser() if settings.anchor_path else None,
            )
        )
    if chain is None and checkpoints is None:
        return None
    return IntegritySealer(chain, checkpoints)
