"""The recorder's settings: its failure policy, queue and batch sizes, which event types
it records, what it redacts and the context it adds (built from `audit:` and `cluster:`
by kaudit.session)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FailurePolicy = Literal["fail_open", "fail_closed"]


@dataclass(frozen=True, slots=True)
class RecorderSettings:
    failure_policy: FailurePolicy = "fail_open"
    queue_max_events: int = 100_000
    block_timeout_ms: int = 5000
    batch_max_events: int = 4096
    events: tuple[str, ...] = ("*",)
    exclude_events: tuple[str, ...] = ()
    custom_event_types: tuple[str, ...] = ()
    redact_keys: tuple[str, ...] = ()
    cluster_id: str | None = None
    environment: str | None = None
    host: str | None = None
    source: str = "sdk"
