"""Matching the broker's produce/fetch counts with the gateway's, by key and by magnitude.

Produce and fetch are counted, not recorded one by one, on both sides, and counts carry no
correlation id. A broker count is matched with the gateway's counts of the same principal,
type, topic and client id (`count_key`; not the address: the broker sees the gateway's,
the gateway the client's own) whose windows overlap it, at most a window apart. Each
gateway count is a budget of requests that the broker counts it overlaps draw on, so one
gateway count cannot cover a second client that borrows the principal (and even the
client id) from another host, nor the same direct traffic counted by several brokers.

A broker count may exceed what it draws by `count_tolerance` (a fraction: retries,
requests either side of a window's edge) plus `count_slack` requests, and a fetch count by
`idle_fetches_per_second` over its span: both sides count every poll, records or not, and
a consumer polls several times a second, so fetch counts drift most at windows' edges.
Beyond that, the difference is a bypass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kaudit.config.model import BypassConfig

CountKey = tuple[str, str, str, str | None]
AGGREGATED = frozenset({"records.produced", "records.consumed"})


@dataclass
class _GatewayCount:
    """A gateway's count: its span, and the requests it has left to cover."""

    start_ms: int
    end_ms: int
    left: int


class GatewayCounts:
    """The gateway's produce/fetch counts read so far, and what they still cover."""

    def __init__(self, settings: BypassConfig) -> None:
        self.settings = settings
        self._counts: dict[CountKey, list[_GatewayCount]] = {}

    def add(self, event: dict[str, Any], span: tuple[int, int]) -> None:
        count = _GatewayCount(span[0], span[1], requests_of(event))
        self._counts.setdefault(count_key(event), []).append(count)

    def cover(self, event: dict[str, Any], span: tuple[int, int], window_ms: int) -> bool:
        """Whether the gateway's counts cover broker count `event` over `span`; if so,
        the requests it needs are drawn from them (nearest first)."""
        overlapping = self._overlapping(event, span, window_ms)
        if not overlapping or self._beyond(event, span, overlapping) > 0:
            return False
        need = max(0, requests_of(event) - self._allowance(event, span))
        for count in sorted(overlapping, key=lambda c: abs(c.end_ms - span[1])):
            taken = min(count.left, need)
            count.left -= taken
            need -= taken
        return True

    def shortfall(
        self, event: dict[str, Any], span: tuple[int, int], window_ms: int
    ) -> tuple[str, dict[str, Any]]:
        """Why broker count `event` is a bypass, and its figures for the event's details."""
        budget = sum(c.left for c in self._overlapping(event, span, window_ms))
        requests = requests_of(event)
        figures = {
            "broker_requests": requests,
            "gateway_requests": budget,
            "unmatched_requests": requests - budget,
        }
        if budget == 0:
            return "no gateway recorded this request", figures
        return "the broker counted more requests than the gateways did", figures

    def forget_before(self, limit_ms: int) -> None:
        for key in [k for k, v in self._counts.items() if max(c.end_ms for c in v) < limit_ms]:
            del self._counts[key]

    def _overlapping(
        self, event: dict[str, Any], span: tuple[int, int], window_ms: int
    ) -> list[_GatewayCount]:
        first, last = span
        return [
            count
            for count in self._counts.get(count_key(event), ())
            if count.start_ms <= last + window_ms and count.end_ms >= first - window_ms
        ]

    def _allowance(self, event: dict[str, Any], span: tuple[int, int]) -> int:
        """Requests a broker count may have beyond the gateway's in any case: the slack,
        and for a fetch count the polls that fell on the other side of a window's edge."""
        allowance = float(self.settings.count_slack)
        if event.get("event_type") == "records.consumed":
            seconds = (span[1] - span[0]) / 1000 + 1
            allowance += self.settings.idle_fetches_per_second * seconds
        return int(allowance)

    def _beyond(
        self, event: dict[str, Any], span: tuple[int, int], overlapping: list[_GatewayCount]
    ) -> int:
        """How many of a broker count's requests the overlapping gateway counts (with the
        tolerance and the allowance) do not cover."""
        budget = sum(c.left for c in overlapping)
        covered = budget * (1 + self.settings.count_tolerance) + self._allowance(event, span)
        return max(0, requests_of(event) - int(covered))


def count_key(event: dict[str, Any]) -> CountKey:
    """Who counted what: principal, type, topic and client id."""
    resource = event.get("resource") or {}
    actor = event.get("actor") or {}
    return (
        str(actor.get("id")),
        event["event_type"],
        str(resource.get("id")),
        actor.get("client_id"),
    )


def requests_of(event: dict[str, Any]) -> int:
    """The requests a produce/fetch count stands for (one when it does not say)."""
    value = (event.get("details") or {}).get("requests")
    return int(value) if isinstance(value, int) else 1
