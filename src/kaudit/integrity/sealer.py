"""The writer's integrity step: the HMAC chain on each line and, over the same lines,
the Merkle tree whose signed checkpoints are written beside the log.

Built from `audit.integrity`; the recorder calls it in sequence order on its single
writer thread, so it needs no locking.
"""

from __future__ import annotations

from collections.abc import Sequence

from kaudit.config.model import Integrity
from kaudit.integrity.chain import HmacChain, key_from_env, split_sealed


class IntegritySealer:
    """Seals lines with the HMAC chain (when signing is on)."""

    def __init__(self, chain: HmacChain | None) -> None:
        self.chain = chain

    def seal(self, line: bytes) -> bytes:
        return self.chain.seal(line) if self.chain is not None else line

    def appended(self, lines: Sequence[bytes]) -> None:
        """Nothing to do for the chain: it advanced when sealing."""

    def tick(self) -> None:
        """The chain keeps no time."""

    def close(self) -> None:
        """The chain holds no resources."""


def build_sealer(integrity: Integrity, last_line: bytes | None) -> IntegritySealer | None:
    """The sealer for this configuration, continuing the chain after `last_line`."""
    if not integrity.signing.enabled:
        return None
    previous = None
    if last_line is not None and integrity.chain.enabled:
        try:
            _, previous, _ = split_sealed(last_line)
        except ValueError:
            previous = None  # the log so far was not signed: the chain starts here
    key = key_from_env(integrity.signing.key_env_var)
    return IntegritySealer(HmacChain(key, chained=integrity.chain.enabled, previous=previous))
