"""Auditor plugins for tests/test_auditor.py, loaded by `module:Class` import path
(`kaudit_probe_auditors:CollectingAuditor`) the way a third-party plugin would be."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from kaudit.auditor import AuthInfo, RequestContext, RequestEvent


class CollectingAuditor:
    """Remembers its lifecycle and every audit call, in `CollectingAuditor.instances`."""

    instances: ClassVar[list[CollectingAuditor]] = []

    def __init__(self) -> None:
        self.steps: list[str] = []
        self.configs: Mapping[str, Any] = {}
        self.calls: list[tuple[RequestEvent | None, RequestContext, list[AuthInfo]]] = []
        CollectingAuditor.instances.append(self)

    def configure(self, configs: Mapping[str, Any]) -> None:
        self.steps.append("configure")
        self.configs = dict(configs)

    def start(self) -> None:
        self.steps.append("start")

    def audit(
        self, event: RequestEvent | None, ctx: RequestContext, auth: Sequence[AuthInfo]
    ) -> None:
        self.calls.append((event, ctx, list(auth)))

    def close(self) -> None:
        self.steps.append("close")


class NotAnAuditor:
    """A class without the Auditor methods."""

    def audit(self) -> None:
        pass


class NeedsArguments:
    """An auditor class that cannot be built with no arguments."""

    def __init__(self, required: str) -> None:
        self.required = required

    def configure(self, configs: Mapping[str, Any]) -> None: ...

    def start(self) -> None: ...

    def audit(
        self, event: RequestEvent | None, ctx: RequestContext, auth: Sequence[AuthInfo]
    ) -> None: ...

    def close(self) -> None: ...


class FailingAuditor:
    """An auditor plugin with a bug: every audit call raises."""

    calls = 0

    def configure(self, configs: Mapping[str, Any]) -> None: ...

    def start(self) -> None: ...

    def audit(
        self, event: RequestEvent | None, ctx: RequestContext, auth: Sequence[AuthInfo]
    ) -> None:
        FailingAuditor.calls += 1
        raise RuntimeError("a bug in a third-party auditor")

    def close(self) -> None: ...
