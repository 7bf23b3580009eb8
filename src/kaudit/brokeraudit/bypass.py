"""Bypass detection: client requests a broker authorized that no kaudit gateway recorded.

`BypassDetector` reads the audit log behind a cursor of its own, as an exporter does, and
holds the broker auditor's events (``context.source: broker``) until it has seen the
gateway's record of the same request, or until it stops waiting and records an
``access.bypassed_gateway`` event with the client's principal and address.

What ties the two records of one request together: the gateway opens one broker
connection per client connection and passes the client's correlation id and client id
through untouched, and the broker authorizes the principal the client logged in as. So
a broker decision matches a gateway event with the same principal, API key, client id
and correlation id, at most `window_seconds` apart. The client address cannot be
compared — the broker sees the gateway's — but when `gateway_addresses` lists the
addresses gateways connect from, a decision from any other address is a bypass at once.
Produce and fetch counts have no correlation id: a broker's count matches a gateway's
count of the same principal, type and topic whose window overlaps it.

The cursor is saved before the oldest broker event still waiting, and before the gateway
events it could still match (those at most a window older), so after a restart nothing
waiting is forgotten and no request is reported for want of a gateway event read before
the restart; an event reported twice then has the same id (derived from the broker
event's), so readers drop the copy. It reads the local segment log or
the Kafka log topic (`kaudit.brokeraudit.logsources`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from kaudit.brokeraudit.decisions import SOURCE, event_id
from kaudit.brokeraudit.logsources import LogSource
from kaudit.config.model import BypassConfig
from kaudit.events.codec import from_dict
from kaudit.events.model import AuditEvent, Context
from kaudit.recorder.core import Recorder

EVENT_TYPE = "access.bypassed_gateway"
_AGGREGATED = frozenset({"records.produced", "records.consumed"})
_IGNORED = frozenset({"access.denied", "audit.degraded", EVENT_TYPE})

_RequestKey = tuple[str, int, str | None, str]
_CountKey = tuple[str, str, str]


@dataclass
class _Waiting:
    event: dict[str, Any]
    before: object
    """Where the log stood before this event: the cursor goes no further while it waits."""
    at_ms: int
    deadline_ms: int
    key: _RequestKey | None
    count_key: _CountKey | None
    span: tuple[int, int]


class BypassDetector:
    """Matches broker events with gateway events in the audit log; reports the unmatched."""

    def __init__(
        self,
        source: LogSource,
        recorder: Recorder,
        settings: BypassConfig,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.recorder = recorder
        self.settings = settings
        self.clock = clock
        self._requests: dict[_RequestKey, list[int]] = {}
        self._counts: dict[_CountKey, list[tuple[int, int]]] = {}
        self._waiting: list[_Waiting] = []
        # Per lane of the log (a Kafka partition), where each gateway event read was, in
        # log order: the cursor stays before those a waiting decision could still match.
        self._gateway_places: dict[object, deque[tuple[int, object]]] = {}
        self._gateways = frozenset(settings.gateway_addresses)
        self.matched = 0
        self.reported = 0

    def poll(self) -> int:
        """Read what the log gained, settle what can be settled, save the cursor; returns
        the bypass events recorded."""
        for line, before in self.source.lines():
            self._take(orjson.loads(line), before)
        reported = self._settle(int(self.clock() * 1000))
        if reported:
            self.recorder.flush()
        self.source.save(self._keep_from())
        return reported

    def _keep_from(self) -> list[object]:
        """The places the cursor must stay before: each waiting decision's, and the first
        gateway event of each lane that a waiting decision could still match."""
        if not self._waiting:
            self._gateway_places.clear()
            return []
        margin = max(int(self.settings.window_seconds * 1000), self._aggregate_wait_ms())
        limit = min(min(item.at_ms, item.span[0]) for item in self._waiting) - margin
        places = [item.before for item in self._waiting]
        for lane, seen in list(self._gateway_places.items()):
            while seen and seen[0][0] < limit:
                seen.popleft()
            if seen:
                places.append(seen[0][1])
            else:
                del self._gateway_places[lane]
        return places

    def _take(self, event: dict[str, Any], before: object) -> None:
        source = (event.get("context") or {}).get("source")
        event_type = event.get("event_type")
        if event_type in _IGNORED:
            return
        if source == "gateway":
            self._remember_gateway(event)
            lane = self.source.lane(before)
            self._gateway_places.setdefault(lane, deque()).append((_ms(event["timestamp"]), before))
        elif source == SOURCE:
            self._wait_for(event, before)

    def _remember_gateway(self, event: dict[str, Any]) -> None:
        at = _ms(event["timestamp"])
        key = _request_key(event)
        if key is not None:
            self._requests.setdefault(key, []).append(at)
        elif event["event_type"] in _AGGREGATED:
            details = event.get("details") or {}
            span = (
                _ms(details.get("first_seen") or event["timestamp"]),
                _ms(details.get("last_seen") or event["timestamp"]),
            )
            self._counts.setdefault(_count_key(event), []).append(span)

    def _wait_for(self, event: dict[str, Any], before: object) -> None:
        at = _ms(event["timestamp"])
        key = _request_key(event)
        window_ms = int(self.settings.window_seconds * 1000)
        if key is not None:
            self._waiting.append(_Waiting(event, before, at, at + window_ms, key, None, (at, at)))
        elif event["event_type"] in _AGGREGATED:
            details = event.get("details") or {}
            span = (_ms(details.get("first_seen") or event["timestamp"]), at)
            deadline = span[1] + int(self.settings.aggregate_wait_seconds * 1000)
            self._waiting.append(
                _Waiting(event, before, at, deadline, None, _count_key(event), span)
            )

    def _settle(self, now_ms: int) -> int:
        window_ms = int(self.settings.window_seconds * 1000)
        still: list[_Waiting] = []
        reported = 0
        for item in self._waiting:
            address = (item.event.get("actor") or {}).get("ip_address")
            if self._gateways and address not in self._gateways:
                self._report(item, "the client address is not one of the gateways'")
                reported += 1
            elif self._gateways or self._seen_by_gateway(item, window_ms):
                self.matched += 1
            elif now_ms >= item.deadline_ms:
                self._report(item, "no gateway recorded this request")
                reported += 1
            else:
                still.append(item)
        self._waiting = still
        self._forget_before(now_ms - 2 * max(window_ms, self._aggregate_wait_ms()))
        return reported

    def _seen_by_gateway(self, item: _Waiting, window_ms: int) -> bool:
        if item.key is not None:
            return any(abs(at - item.at_ms) <= window_ms for at in self._requests.get(item.key, ()))
        first, last = item.span
        return any(
            start <= last + window_ms and end >= first - window_ms
            for start, end in self._counts.get(item.count_key or ("", "", ""), ())
        )

    def _aggregate_wait_ms(self) -> int:
        return int(self.settings.aggregate_wait_seconds * 1000)

    def _forget_before(self, limit_ms: int) -> None:
        for key in [k for k, v in self._requests.items() if max(v) < limit_ms]:
            del self._requests[key]
        for count in [k for k, v in self._counts.items() if max(e for _, e in v) < limit_ms]:
            del self._counts[count]

    def _report(self, item: _Waiting, reason: str) -> None:
        broker = from_dict(item.event)
        self.recorder.record(
            AuditEvent(
                timestamp=broker.timestamp,
                event_type=EVENT_TYPE,
                event_id=event_id(broker.event_id, item.at_ms, 1000),
                actor=broker.actor,
                resource=broker.resource,
                action=broker.action,
                authorization=broker.authorization,
                context=Context(
                    correlation_id=broker.context.correlation_id,
                    source=SOURCE,
                    api=broker.context.api,
                ),
                details={
                    "reason": reason,
                    "client_address": broker.actor.ip_address,
                    "broker_event_id": broker.event_id,
                    "broker_event_type": broker.event_type,
                    "window_seconds": self.settings.window_seconds,
                },
            )
        )
        self.reported += 1

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def close(self) -> None:
        self.source.close()


def _request_key(event: dict[str, Any]) -> _RequestKey | None:
    context = event.get("context") or {}
    correlation = context.get("correlation_id")
    api = context.get("api") or {}
    if correlation is None or not api:
        return None
    actor = event.get("actor") or {}
    return (str(actor.get("id")), int(api.get("key", -1)), actor.get("client_id"), str(correlation))


def _count_key(event: dict[str, Any]) -> _CountKey:
    resource = event.get("resource") or {}
    return (str((event.get("actor") or {}).get("id")), event["event_type"], str(resource.get("id")))


def _ms(timestamp: str) -> int:
    return int(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() * 1000)
