"""The gateway's door to the audit session: the one audit call of each request under the
failure policy, the produce/fetch windows, and the gateway's counters.

Under fail_open an audit call the session cannot take is counted and logged, and the
request goes on. Under fail_closed a call whose records the log cannot take now raises
`AuditRefused` (the connection answers the client with an error), and a response waits
until the session says its records are durable (`when_durable`). Everything here runs on
the gateway's event loop except the session's durability callback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from kaudit.auditor import AuthInfo, RequestContext, RequestEvent, record_types
from kaudit.errors import AuditRefused, AuditUnavailableError
from kaudit.gateway.aggregate import RecordsAggregator
from kaudit.gateway.chatter import RequestsAggregator
from kaudit.gateway.exchange import Held

log = logging.getLogger("kaudit.gateway")

Audit = Callable[[RequestEvent | None, RequestContext, Sequence[AuthInfo]], None]
WhenDurable = Callable[[Callable[[str | None], None]], None]
Unavailable = Callable[[], str | None]


class Holder(Protocol):
    """A connection holding responses until their audit records are durable."""

    def durable(self, held: Held, error: str | None) -> None: ...


@dataclass
class GatewayMetrics:
    """kaudit_gateway_* counters."""

    requests: int = 0
    audit_calls: int = 0
    audit_failures: int = 0
    refused: int = 0
    connections_total: int = 0


class Recording:
    """Audit calls into the session (`audit`), with the failure policy applied."""

    def __init__(
        self,
        audit: Audit,
        metrics: GatewayMetrics,
        *,
        window_seconds: float,
        fail_closed: bool = False,
        selects: Callable[[str], bool] = lambda event_type: True,
        when_durable: WhenDurable | None = None,
        unavailable: Unavailable | None = None,
        durable_timeout: float = 5.0,
    ) -> None:
        if fail_closed and (when_durable is None or unavailable is None):
            raise ValueError("fail_closed needs when_durable and unavailable")
        self._audit_fn = audit
        self.metrics = metrics
        self.fail_closed = fail_closed
        self.selects = selects
        self._when_durable = when_durable
        self._unavailable = unavailable
        self.durable_timeout = durable_timeout
        self.aggregator = RecordsAggregator(self.audit, window_seconds)
        self.chatter = RequestsAggregator(self.audit, window_seconds)

    def audit(
        self, event: RequestEvent | None, ctx: RequestContext, auth: Sequence[AuthInfo]
    ) -> bool:
        """The one audit call of a request; True if it makes records the log keeps (so a
        fail_closed response waits for them)."""
        recorded = any(self.selects(t) for t in record_types(event, auth))
        if recorded:
            self.check_available()
        self.metrics.audit_calls += 1
        try:
            self._audit_fn(event, ctx, auth)
        except AuditUnavailableError as exc:
            self.metrics.audit_failures += 1
            log.error("audit call for %s failed: %s", ctx.api_name, exc)
            if self.fail_closed:
                raise AuditRefused(str(exc)) from exc
        return recorded

    def records(self, event_type: str) -> bool:
        """Whether records of this type are kept; under fail_closed, raises AuditRefused
        when they are but the log cannot take them now."""
        if not self.selects(event_type):
            return False
        self.check_available()
        return True

    def check_available(self) -> None:
        """Under fail_closed, raise AuditRefused when the log cannot take a record now
        (recording would block the event loop, and the record could not be durable)."""
        if self.fail_closed and self._unavailable is not None:
            reason = self._unavailable()
            if reason is not None:
                self.metrics.audit_failures += 1
                raise AuditRefused(reason)

    def flush_records(self) -> None:
        """Close the window: one produce/fetch record per client and topic, one record
        per client, API and resource of the aggregated requests (chatter)."""
        try:
            self.aggregator.flush()
        except AuditRefused as exc:
            log.error("produce/fetch records of this window lost: %s", exc)
        try:
            self.chatter.flush()
        except AuditRefused as exc:
            log.error("aggregated request records of this window lost: %s", exc)

    def when_durable(self, conn: Holder, held: Held) -> None:
        """Tell `conn`, on the running event loop, once the records audited so far are
        durable (error None) or cannot be (why), or are not after `durable_timeout`."""
        assert self._when_durable is not None
        loop = asyncio.get_running_loop()

        def done(error: str | None) -> None:
            loop.call_soon_threadsafe(settle, error)

        def settle(error: str | None) -> None:
            if not held.ready:
                conn.durable(held, error)

        self._when_durable(done)
        loop.call_later(
            self.durable_timeout,
            settle,
            f"not durable after {self.durable_timeout:g}s",
        )
