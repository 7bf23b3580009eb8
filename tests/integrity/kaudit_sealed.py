"""A sealed local log for the integrity tests: the keys that sign its checkpoints, the
`audit` settings of a log with the HMAC chain and Merkle checkpoints on 1 MiB segments,
and events written into it in small batches, so that checkpoints and segment rolls fall
between them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kaudit
from kaudit.integrity.keys import KeyFiles, generate


@dataclass(frozen=True)
class Keys:
    signer: KeyFiles
    other: KeyFiles


def signer_and_other(root: Path, name: str) -> Keys:
    """The signer's key pair and another one of the same name, a different key: a log
    signed by someone else."""
    return Keys(generate(root / "audit", name), generate(root / "other", name))


def sealed_audit(
    key_file: Path,
    hmac_env: str,
    *,
    every_events: int,
    every_seconds: float = 60,
    anchor: Path | None = None,
) -> dict[str, Any]:
    """The `audit` section (fail_closed, local log, chain and checkpoints)."""
    return {
        "failure_policy": "fail_closed",
        "log": {"type": "local", "segment_max_mb": 1},
        "integrity": {
            "signing": {"enabled": True, "key_env_var": hmac_env},
            "chain": {"enabled": True},
            "checkpoints": {
                "enabled": True,
                "key_file": str(key_file),
                "every_events": every_events,
                "every_seconds": every_seconds,
                "anchor_path": str(anchor) if anchor else None,
            },
        },
    }


def emit_topics(session: kaudit.AuditSession, start: int, count: int, *, pad: int) -> None:
    """`topic.created` events t<start>... of about `pad` bytes each, flushed every 50."""
    for i in range(start, start + count):
        session.emit(
            "topic.created",
            actor="User:alice",
            resource=f"topic:t{i}",
            details={"i": i, "pad": "p" * pad},
        )
        if i % 50 == 49:
            session.flush()
