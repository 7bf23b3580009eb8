"""fail_closed before the broker: no change reaches it while the log cannot record it.

Under `failure_policy: fail_closed`, while the recorder says the audit log cannot take
records (`unavailable_reason`: the log is failing, the queue is full), a request that
changes the cluster (codec.CHANGES_STATE) and would be recorded — Produce, an API with
record types of its own, one recorded as `kafka.request` — is not forwarded. It is
answered, in its turn, with its API's own error, a retriable one, so that clients try
again once the log is back instead of believing the change failed for good:

- Produce: NOT_ENOUGH_REPLICAS (the write cannot be made as durable as asked; producers,
  idempotent ones included, retry the same batch without a metadata refresh);
- group and transaction APIs (offset commits, group membership and deletion,
  InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn): COORDINATOR_NOT_AVAILABLE
  (clients look the coordinator up again and retry);
- every other change (topics, configs, ACLs, quotas, credentials, tokens, records
  deletion): REQUEST_TIMED_OUT (what the broker answers when the controller has not
  completed a change in time).

The answer names the resources the request named (exchange.refusal_answer), and its
error message says why. Nothing is recorded for it: nothing happened, and the log could
not take the record anyway (the refusal is counted in `refused`). An acks=0 Produce has
no answer to carry an error, so its connection is closed, as a broker closes one when it
cannot take an acks=0 write. A request that was forwarded before the log failed is the
broker's to answer, and its record waits for the log (recording).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kaudit.gateway.audit_apis import MAPPERS
from kaudit.gateway.codec import (
    API_KEYS,
    CHANGES_STATE,
    PRODUCE,
    FrameDecodeError,
    api_name,
    decode_request,
)
from kaudit.gateway.exchange import Pending, refusal_answer
from kaudit.gateway.refusal import RefusingConnection, answer_refused

log = logging.getLogger("kaudit.gateway")

REQUEST_TIMED_OUT = 7
COORDINATOR_NOT_AVAILABLE = 15
NOT_ENOUGH_REPLICAS = 19

_COORDINATED = frozenset(
    API_KEYS[name]
    for name in (
        "OffsetCommit", "TxnOffsetCommit", "OffsetDelete", "DeleteGroups", "JoinGroup",
        "SyncGroup", "Heartbeat", "LeaveGroup", "ConsumerGroupHeartbeat",
        "ShareGroupHeartbeat", "StreamsGroupHeartbeat", "AlterShareGroupOffsets",
        "DeleteShareGroupOffsets", "InitProducerId", "AddPartitionsToTxn",
        "AddOffsetsToTxn", "EndTxn",
    )
    if name in API_KEYS
)  # fmt: skip
"""APIs a group or transaction coordinator answers."""

MESSAGE = "kaudit: the audit log cannot take records now (failure_policy: fail_closed); retry"


def refusal_error(key: int) -> int:
    """The retriable error a change of API `key` is refused with while the log is down."""
    if key == PRODUCE:
        return NOT_ENOUGH_REPLICAS
    if key in _COORDINATED:
        return COORDINATOR_NOT_AVAILABLE
    return REQUEST_TIMED_OUT


def would_record(conn: RefusingConnection, key: int) -> bool:
    """Whether a request of API `key` changes the cluster and makes records."""
    if key not in CHANGES_STATE:
        return False
    if key == PRODUCE:
        return conn.recording.selects("records.produced")
    return key in MAPPERS or conn.shared.records_generic(key)


def refuse_while_unavailable(
    conn: RefusingConnection,
    frame: bytes,
    pending: Pending,
    request: Any,
    expect_response: bool,
) -> bool:
    """Under fail_closed, refuse (answer in turn, never forward) a change the log cannot
    record now; False when the request may go on to the broker. `request` is the decoded
    body (a produce request is decoded here, only when refused)."""
    key = pending.api_key
    if not conn.shared.fail_closed or not would_record(conn, key):
        return False
    reason = conn.recording.unavailable()
    if reason is None:
        return False
    conn.shared.metrics.refused += 1
    conn.shared.metrics.ended(key, "refused")
    what = f"{api_name(key)} v{pending.api_version}"
    log.warning("%s: %s refused, not forwarded: %s", conn.peer, what, reason)
    if not expect_response:
        conn.close(f"acks=0 produce while the audit log cannot take records: {reason}")
        return True
    if key == PRODUCE:
        try:
            request = decode_request(memoryview(frame)[4:]).body  # type: ignore[arg-type]
        except FrameDecodeError:
            request = None  # answered with one unnamed partition instead
    code = refusal_error(key)
    pending.refused = True
    pending.unrecorded = True
    pending.started = pending.started or time.perf_counter()
    pending.answer = refusal_answer(
        key, pending.api_version, pending.correlation_id, code, MESSAGE, request
    )
    conn.pending.append(pending)
    answer_refused(conn)
    return True
