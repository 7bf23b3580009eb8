"""Bypass detection: client requests a broker authorized that no kaudit gateway recorded.

`BypassDetector` reads the audit log behind a cursor of its own, as an exporter does, and
holds the broker auditor's events (``context.source: broker``) until it has seen the
gateway's record of the same request, or until it stops waiting and records an
``access.bypassed_gateway`` event with the client's principal and address.

What ties the two records of one request together: the gateway opens one broker
connection per client connection and passes the client's correlation id and client id
through untouched, and the broker authorizes the principal the client logged in as. So
a broker decision matches a gateway request with the same principal, API key, client id
and correlation id, at most `window_seconds` apart, that names the decision's resource.
Resources are compared in one form, ``(type, name)``: the gateway's ``topic:orders`` and
the resources of its authorization checks, the broker's pattern ``Topic:LITERAL:orders``.
A decision on the cluster (``CREATE`` on the cluster for CreateTopics, ``ALTER`` for
CreateAcls, a broker's configs) matches any gateway request of the same key; the
gateway's own resources that Kafka authorizes on the cluster (``acl``, ``broker``...)
count as the cluster. Each gateway request covers at most as many decisions as it names
resources (one cluster decision at least), so one seen request cannot hide a second, direct
one that mirrors it: fresh connections with the same client id start at the same
correlation id. The gateway's events of one request are consecutive in the log; they are
taken as one request until one names a resource again. The client address cannot be
compared — the broker sees the gateway's — but when `gateway_addresses` lists the
addresses gateways connect from, a decision from any other address is a bypass at once.
A listed address is necessary, not sufficient: behind NAT (Kubernetes SNAT gives every pod
on a node the node's address) a direct client can share it, so a decision from a gateway's
address must still match a gateway event.

Produce and fetch counts have no correlation id: they are matched by principal, type,
topic and client id, and by magnitude (`kaudit.brokeraudit.counts`); what a broker counted
beyond the gateway's counts and their tolerance is a bypass of the difference
(``details.unmatched_requests``).

Only gateway events that are intact lines of a writer stream count as evidence
(`kaudit.brokeraudit.evidence`: the stream header, sequence numbers, and the HMAC
signature and chain when the key is configured); a line that merely says it is the
gateway's is counted, logged and recorded as ``audit.degraded``, and matches nothing.

The cursor is saved before the oldest broker event still waiting, and before the gateway
events it could still match (those at most a window older), so after a restart nothing
waiting is forgotten and no request is reported for want of a gateway event read before
the restart; an event reported twice then has the same id (derived from the broker
event's), so readers drop the copy. It reads the local segment log or
the Kafka log topic (`kaudit.brokeraudit.logsources`).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from kaudit.brokeraudit.counts import AGGREGATED, GatewayCounts
from kaudit.brokeraudit.decisions import SOURCE, event_id, iso
from kaudit.brokeraudit.evidence import DUPLICATE, GatewayEvidence
from kaudit.brokeraudit.logsources import LogSource
from kaudit.config.model import BypassConfig
from kaudit.events.codec import from_dict
from kaudit.events.model import Action, Actor, AuditEvent, Context, Resource
from kaudit.recorder.core import Recorder

EVENT_TYPE = "access.bypassed_gateway"
# How far apart the gateway's events of one request may be stamped.
_SAME_REQUEST_MS = 1000
_IGNORED = frozenset({"access.denied", "audit.degraded", EVENT_TYPE})

_RequestKey = tuple[str, int, str | None, str]
_ResourceKey = tuple[str, str]
CLUSTER: _ResourceKey = ("cluster", "kafka-cluster")
# Kafka's resource types other than the cluster: any other gateway resource (acl, broker,
# client quota...) is one Kafka authorizes on the cluster.
_RESOURCE_TYPES = frozenset({"topic", "group", "transactional_id", "delegation_token", "user"})


@dataclass
class _GatewayRequest:
    """One request the gateway recorded: when, and the resources its decisions may name,
    each as many times as it is left unclaimed by a broker decision."""

    at_ms: int
    named: set[_ResourceKey]
    # Every request may give one decision on the cluster, whatever it names.
    resources: Counter[_ResourceKey] = field(default_factory=lambda: Counter({CLUSTER: 1}))

    def add(self, named: set[_ResourceKey]) -> None:
        for resource in named:
            if resource == CLUSTER and CLUSTER not in self.named:
                continue  # the request's own cluster decision
            self.resources[resource] += 1
        self.named |= named

    def claim(self, resource: _ResourceKey) -> bool:
        if self.resources[resource] > 0:
            self.resources[resource] -= 1
            return True
        return False


@dataclass
class _Waiting:
    event: dict[str, Any]
    before: object
    """Where the log stood before this event: the cursor goes no further while it waits."""
    at_ms: int
    deadline_ms: int
    key: _RequestKey | None
    resource: _ResourceKey | None
    counted: bool
    """A produce/fetch count (matched by `GatewayCounts`), not one request."""
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
        hmac_key: bytes | None = None,
    ) -> None:
        self.source = source
        self.recorder = recorder
        self.settings = settings
        self.clock = clock
        self._requests: dict[_RequestKey, list[_GatewayRequest]] = {}
        self._last_gateway_key: _RequestKey | None = None
        self._counts = GatewayCounts(settings)
        self._waiting: list[_Waiting] = []
        # Per lane of the log (a Kafka partition), where each gateway event read was, in
        # log order: the cursor stays before those a waiting decision could still match.
        self._gateway_places: dict[object, deque[tuple[int, object]]] = {}
        self._gateways = frozenset(settings.gateway_addresses)
        self.evidence = GatewayEvidence(hmac_key)
        self._rejected_reported = 0
        self.matched = 0
        self.reported = 0

    def poll(self) -> int:
        """Read what the log gained, settle what can be settled, save the cursor; returns
        the bypass events recorded."""
        for line, before, stream in self.source.lines():
            self._take(line, before, stream)
        now_ms = int(self.clock() * 1000)
        reported = self._settle(now_ms)
        untrusted = self._note_untrusted(now_ms)
        if reported or untrusted:
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

    def _take(self, line: bytes, before: object, stream: str | None) -> None:
        event = orjson.loads(line)
        source = (event.get("context") or {}).get("source")
        event_type = event.get("event_type")
        lane = self.source.lane(before)
        untrusted = self.evidence.note(line, stream, lane)
        if event_type in _IGNORED:
            return
        if source == "gateway":
            if untrusted is not None:
                if untrusted != DUPLICATE:
                    self.evidence.reject(untrusted, before)
                return
            self._remember_gateway(event)
            self._gateway_places.setdefault(lane, deque()).append((_ms(event["timestamp"]), before))
        elif source == SOURCE:
            self._wait_for(event, before)

    def _remember_gateway(self, event: dict[str, Any]) -> None:
        at = _ms(event["timestamp"])
        key = _request_key(event)
        previous, self._last_gateway_key = self._last_gateway_key, key
        if key is not None:
            named = _gateway_resources(event)
            requests = self._requests.setdefault(key, [])
            last = requests[-1] if requests else None
            if (
                previous == key
                and last is not None
                and not (named & last.named)
                and abs(at - last.at_ms) <= _SAME_REQUEST_MS
            ):
                last.add(named)
            else:
                fresh = _GatewayRequest(at, set())
                fresh.add(named)
                requests.append(fresh)
        elif event["event_type"] in AGGREGATED:
            details = event.get("details") or {}
            span = (
                _ms(details.get("first_seen") or event["timestamp"]),
                _ms(details.get("last_seen") or event["timestamp"]),
            )
            self._counts.add(event, span)

    def _wait_for(self, event: dict[str, Any], before: object) -> None:
        at = _ms(event["timestamp"])
        key = _request_key(event)
        window_ms = int(self.settings.window_seconds * 1000)
        if key is not None:
            self._waiting.append(
                _Waiting(event, before, at, at + window_ms, key, _broker_resource(event), False,
                         (at, at))
            )  # fmt: skip
        elif event["event_type"] in AGGREGATED:
            details = event.get("details") or {}
            span = (_ms(details.get("first_seen") or event["timestamp"]), at)
            deadline = span[1] + int(self.settings.aggregate_wait_seconds * 1000)
            self._waiting.append(_Waiting(event, before, at, deadline, None, None, True, span))

    def _settle(self, now_ms: int) -> int:
        window_ms = int(self.settings.window_seconds * 1000)
        still: list[_Waiting] = []
        reported = 0
        for item in self._waiting:
            address = (item.event.get("actor") or {}).get("ip_address")
            if self._gateways and address not in self._gateways:
                self._report(item, "the client address is not one of the gateways'")
                reported += 1
            elif self._seen_by_gateway(item, window_ms):
                # A gateway's address alone proves nothing: behind NAT a direct client
                # shares it. The request must match a gateway event too.
                self.matched += 1
            elif now_ms >= item.deadline_ms:
                if item.counted:
                    self._report(item, *self._counts.shortfall(item.event, item.span, window_ms))
                else:
                    self._report(item, "no gateway recorded this request")
                reported += 1
            else:
                still.append(item)
        self._waiting = still
        self._forget_before(now_ms - 2 * max(window_ms, self._aggregate_wait_ms()))
        return reported

    def _seen_by_gateway(self, item: _Waiting, window_ms: int) -> bool:
        if item.key is not None:
            near = sorted(
                (
                    r
                    for r in self._requests.get(item.key, ())
                    if abs(r.at_ms - item.at_ms) <= window_ms
                ),
                key=lambda r: abs(r.at_ms - item.at_ms),
            )
            resource = item.resource
            if resource == CLUSTER:
                # A cluster decision covers the request, whatever it names.
                return any(r.claim(CLUSTER) for r in near)
            return resource is not None and any(r.claim(resource) for r in near)
        return item.counted and self._counts.cover(item.event, item.span, window_ms)

    def _aggregate_wait_ms(self) -> int:
        return int(self.settings.aggregate_wait_seconds * 1000)

    def _forget_before(self, limit_ms: int) -> None:
        for key in [k for k, v in self._requests.items() if max(r.at_ms for r in v) < limit_ms]:
            del self._requests[key]
        self._counts.forget_before(limit_ms)

    def _report(self, item: _Waiting, reason: str, more: dict[str, Any] | None = None) -> None:
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
                    **(more or {}),
                },
            )
        )
        self.reported += 1

    def _note_untrusted(self, now_ms: int) -> int:
        """Record ``audit.degraded`` when gateway events were refused as evidence since
        the last time; returns the events recorded (0 or 1)."""
        total = sum(self.evidence.rejected.values())
        if total == self._rejected_reported:
            return 0
        fresh, self._rejected_reported = total - self._rejected_reported, total
        self.recorder.record(
            AuditEvent(
                timestamp=iso(now_ms),
                event_type="audit.degraded",
                event_id=event_id(f"bypass-untrusted/{total}", now_ms, 0),
                actor=Actor(type="system", id="kaudit-bypass-detector"),
                resource=Resource(type="audit_log", id="gateway-evidence"),
                action=Action(
                    operation="record",
                    result="failure",
                    error="gateway events in the audit log not trusted as evidence",
                ),
                context=Context(source=SOURCE),
                details={"untrusted": fresh, "by_reason": dict(self.evidence.rejected)},
            )
        )
        return 1

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


def _resource(resource_type: str, name: str) -> _ResourceKey:
    kind = resource_type.lower()
    return (kind, name) if kind in _RESOURCE_TYPES else CLUSTER


def _pattern_resource(pattern: str) -> _ResourceKey | None:
    """``Topic:LITERAL:orders`` as ``("topic", "orders")``; None for a prefixed pattern."""
    kind, _, rest = pattern.partition(":")
    pattern_type, _, name = rest.partition(":")
    return _resource(kind, name) if pattern_type.upper() == "LITERAL" else None


def _checks(event: dict[str, Any]) -> list[dict[str, Any]]:
    return list((event.get("authorization") or {}).get("checks") or ())


def _gateway_resources(event: dict[str, Any]) -> set[_ResourceKey]:
    """The resources a gateway event names, as broker decisions name them: its resource
    and those of its checks."""
    resource = event.get("resource") or {}
    named = {_resource(str(resource.get("type")), str(resource.get("id")))}
    for check in _checks(event):
        found = _pattern_resource(str(check.get("resource", "")))
        if found is not None:
            named.add(found)
    return named


def _broker_resource(event: dict[str, Any]) -> _ResourceKey | None:
    """The resource of a broker decision, from its one authorization check."""
    for check in _checks(event):
        return _pattern_resource(str(check.get("resource", "")))
    resource = event.get("resource") or {}
    return _resource(str(resource.get("type")), str(resource.get("id")))


def _ms(timestamp: str) -> int:
    return int(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() * 1000)
