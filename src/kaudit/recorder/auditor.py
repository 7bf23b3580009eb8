"""The recorder as a KIP-567 auditor: the default entry of `auditors:`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kaudit.auditor import AuthInfo, RequestContext, RequestEvent, to_audit_events
from kaudit.recorder.core import Recorder


class RecorderAuditor:
    """Turns each audit call into records (one per resource) and hands them to a recorder."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def configure(self, configs: Mapping[str, Any]) -> None:
        """Nothing to configure: the recorder is configured by the `audit:` section."""

    def start(self) -> None:
        """The recorder's writer is already running."""

    def audit(
        self, event: RequestEvent | None, ctx: RequestContext, auth: Sequence[AuthInfo]
    ) -> None:
        self.recorder.record_many(to_audit_events(event, ctx, auth))

    def close(self) -> None:
        """The recorder is closed by whoever opened it."""
