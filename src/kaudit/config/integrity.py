"""The `audit.integrity` section: the tamper evidence the writer applies to each event.

This module owns the settings of HMAC signing, the signature chain and signed Merkle
checkpoints, and the rules between them (a chain needs signing, checkpoints need a key).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from kaudit.config.fields import ConfigModel, config_error

__all__ = ["Chain", "Checkpoints", "Integrity", "Signing"]


class Signing(ConfigModel):
    """The OSO seed's HMAC signing of each event; the key comes from the environment, or
    from a file readable by its owner only."""

    enabled: bool = False
    algorithm: Literal["HMAC-SHA256"] = "HMAC-SHA256"
    key_env_var: str = Field(default="AUDIT_SIGNING_KEY", min_length=1)
    key_file: str | None = None
    """The HMAC key in a file (mode 0600; one trailing newline is ignored), instead of
    the environment variable."""


class Chain(ConfigModel):
    """Chain each signature to the previous event's (needs signing)."""

    enabled: bool = False


class Checkpoints(ConfigModel):
    """Signed Merkle checkpoints (RFC 6962 tree, Ed25519 signed notes)."""

    enabled: bool = False
    key_file: str | None = None
    """The Ed25519 private key written by `kaudit keys generate` (PATH.key)."""
    every_events: int = Field(default=10_000, gt=0)
    every_seconds: float = Field(default=60.0, gt=0)
    origin: str | None = None
    """The log's name in checkpoints; default: kaudit/<cluster id or host>."""
    anchor_path: str | None = None
    """Also append every signed checkpoint to this file, kept apart from the log (another
    volume, WORM storage), as an external anchor a log rewrite cannot reach."""

    @model_validator(mode="after")
    def _needs_key(self) -> Checkpoints:
        if self.enabled and not self.key_file:
            raise config_error(
                "checkpoint_key",
                "checkpoints need key_file: the private key from `kaudit keys generate`",
            )
        return self


class Integrity(ConfigModel):
    """Tamper evidence applied once, at the writer."""

    signing: Signing = Signing()
    chain: Chain = Chain()
    checkpoints: Checkpoints = Checkpoints()

    @model_validator(mode="after")
    def _chain_needs_signing(self) -> Integrity:
        if self.chain.enabled and not self.signing.enabled:
            raise config_error(
                "chain", "chain.enabled needs signing.enabled: the chain links signatures"
            )
        return self
