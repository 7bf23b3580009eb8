"""Per-commit chatter, aggregated: transactions (InitProducerId, AddPartitionsToTxn,
AddOffsetsToTxn, EndTxn, TxnOffsetCommit) and the other APIs a client calls on every
commit or poll, as `gateway.request_events.aggregate_apis` lists them.

An exactly-once application sends several of these per transaction, many times a
second; one `kafka.request` record each would flood the log with what says nothing new.
So, like produce and fetch (aggregate), each such request only adds to a tally keyed by
(API, principal, client id, source address, the resources it acted on, denied, failed),
and when the window closes one `kafka.request` record per key says how many requests
there were, from `first_seen` to `last_seen`. A denied request counts under its own key
and its record yields `access.denied`. A request with a record type of its own (an
offset reset) is never aggregated.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from kaudit.auditor import (
    ActionEvent,
    ActionTarget,
    AuthInfo,
    RequestContext,
    RequestEvent,
)
from kaudit.gateway.audit_apis import auth_info
from kaudit.gateway.audit_map import generic_auth

Audit = Callable[[RequestEvent | None, RequestContext, Sequence[AuthInfo]], object]

TRANSACTION_APIS = frozenset(
    {"InitProducerId", "AddPartitionsToTxn", "AddOffsetsToTxn", "EndTxn", "TxnOffsetCommit"}
)


def first_error(entity: Any) -> int:
    """The first non-zero error code anywhere in a decoded response (0 if none)."""
    for name in ("error_code", "partition_error_code"):
        code = int(getattr(entity, name, 0) or 0)
        if code:
            return code
    if not dataclasses.is_dataclass(entity):
        return 0
    for f in dataclasses.fields(entity):
        value = getattr(entity, f.name)
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            if dataclasses.is_dataclass(item):
                found = first_error(item)
                if found:
                    return found
    return 0


def _transactional_ids(api: str, req: Any) -> list[str]:
    if api == "AddPartitionsToTxn":
        transactions = getattr(req, "transactions", None)
        if transactions is not None:  # v4+: several transactions (brokers only)
            return [str(t.transactional_id) for t in transactions]
        return [str(req.v3_and_below_transactional_id)]
    tid = getattr(req, "transactional_id", None)
    return [str(tid)] if tid else []


def transaction_auth(api: str, req: Any, resp: Any) -> tuple[AuthInfo, ...]:
    """What a transaction request acted on, as the broker authorizes it: WRITE on the
    transactional id (IDEMPOTENT_WRITE on the cluster for an idempotent producer's
    InitProducerId) and READ on the group offsets go to, with the response's error."""
    code = first_error(resp)
    auth = [auth_info("WRITE", "TRANSACTIONAL_ID", t, code) for t in _transactional_ids(api, req)]
    if api == "InitProducerId" and not auth:
        auth.append(auth_info("IDEMPOTENT_WRITE", "CLUSTER", "kafka-cluster", code))
    group = getattr(req, "group_id", None)
    if group:
        auth.append(auth_info("READ", "GROUP", str(group), code))
    return tuple(auth)


_COORDINATOR_KEYS = {0: "GROUP", 1: "TRANSACTIONAL_ID"}


def coordinator_auth(req: Any, resp: Any) -> tuple[AuthInfo, ...]:
    """DESCRIBE on each group or transactional id whose coordinator was looked up."""
    rtype = _COORDINATOR_KEYS.get(int(req.key_type))
    if rtype is None:  # a share-group or other key: the cluster, as generic requests
        return generic_auth("FindCoordinator", req, resp)
    coordinators = getattr(resp, "coordinators", None)
    if coordinators is not None:  # v4+: one answer per key
        return tuple(auth_info("DESCRIBE", rtype, str(c.key), c.error_code) for c in coordinators)
    return (auth_info("DESCRIBE", rtype, str(req.key), resp.error_code),)


def chatter_auth(api: str, req: Any, resp: Any) -> tuple[AuthInfo, ...]:
    """What an aggregated request without a mapper of its own acted on."""
    if api in TRANSACTION_APIS:
        return transaction_auth(api, req, resp)
    if api == "FindCoordinator":
        return coordinator_auth(req, resp)
    return generic_auth(api, req, resp)


@dataclass(slots=True)
class _Tally:
    ctx: RequestContext
    auth: tuple[AuthInfo, ...]
    requests: int = 0
    first_seen: float = 0.0
    last_seen: float = 0.0


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class RequestsAggregator:
    """Counts aggregated requests per key; `flush()` audits one record per key."""

    def __init__(self, audit: Audit, window_seconds: float) -> None:
        self._audit = audit
        self.window_seconds = window_seconds
        self._tallies: dict[tuple[object, ...], _Tally] = {}

    def add(self, ctx: RequestContext, auth: Sequence[AuthInfo], now: float | None = None) -> None:
        """One request, with what it acted on (called on the event loop only)."""
        now = time.time() if now is None else now
        resources = tuple((i.operation, i.resource_type, i.resource_name) for i in auth)
        codes = [i.error_code for i in auth if i.error_code]
        key = (
            ctx.api_name,
            ctx.principal,
            ctx.client_id,
            ctx.client_address,
            resources,
            any(not i.allowed for i in auth),
            bool(codes),
        )
        tally = self._tallies.get(key)
        if tally is None:
            tally = _Tally(ctx, tuple(auth), first_seen=now)
            self._tallies[key] = tally
        tally.requests += 1
        tally.last_seen = now

    def flush(self) -> int:
        """Audit every open tally and start a new window; returns the records made."""
        tallies, self._tallies = self._tallies, {}
        for tally in tallies.values():
            details = {
                "api": tally.ctx.api_name,
                "decoded": True,
                "aggregated": True,
                "requests": tally.requests,
                "first_seen": _iso(tally.first_seen),
                "last_seen": _iso(tally.last_seen),
                "window_seconds": self.window_seconds,
            }
            targets = {
                (i.resource_type.lower(), i.resource_name): ActionTarget(
                    "kafka.request", i.resource_type.lower(), i.resource_name, details
                )
                for i in tally.auth
            } or {("cluster", "kafka-cluster"): ActionTarget(
                "kafka.request", "cluster", "kafka-cluster", details
            )}  # fmt: skip
            ctx = replace(tally.ctx, correlation_id=None, duration_ms=None)
            self._audit(ActionEvent(tally.ctx.api_name, tuple(targets.values())), ctx, tally.auth)
        return len(tallies)

    def __len__(self) -> int:
        return len(self._tallies)
