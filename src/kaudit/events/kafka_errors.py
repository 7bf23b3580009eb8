"""Kafka's error codes as audit records name and judge them.

`error_name` gives the protocol's own name of a code (`TOPIC_AUTHORIZATION_FAILED`, not
29), from kio's table of Kafka's errors. `AUTHORIZATION_ERRORS` are the codes that mean
"not authorized" (a `denied` result). `routine_error` tells the codes that are a step of
the protocol, not a failure of what the user asked for: a consumer's first JoinGroup is
answered MEMBER_ID_REQUIRED by design, a coordinator that is moving or loading answers
COORDINATOR_NOT_AVAILABLE / NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS and the client
asks again, and a member's Heartbeat or SyncGroup answered REBALANCE_IN_PROGRESS is how it
learns to re-join; an OffsetFetch that waits for a transaction's offsets is answered
UNSTABLE_OFFSET_COMMIT until they settle; a client opens with ApiVersions at the newest
version it knows and, answered UNSUPPORTED_VERSION, asks again at one offered (KIP-511).
Records of such answers are successes that name the step in their details (`routine`), so
a search for failures finds only real ones. A commit refused with REBALANCE_IN_PROGRESS
did fail (the offsets were not stored) and stays a failure.
"""

from __future__ import annotations

from collections.abc import Mapping

from kio.schema.errors import ErrorCode

AUTHORIZATION_ERRORS: Mapping[int, str] = {
    29: "TOPIC_AUTHORIZATION_FAILED",
    30: "GROUP_AUTHORIZATION_FAILED",
    31: "CLUSTER_AUTHORIZATION_FAILED",
    53: "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
    65: "DELEGATION_TOKEN_AUTHORIZATION_FAILED",
}

ERROR_NAMES: Mapping[int, str] = {int(e): e.name.upper() for e in ErrorCode}
"""Every error code Kafka's protocol defines → its name."""


def error_name(code: int) -> str:
    """Kafka's name of an error code; a code the protocol does not define (a newer
    broker's) is shown as `UNKNOWN_ERROR_<code>`."""
    return ERROR_NAMES.get(code) or f"UNKNOWN_ERROR_{code}"


_COORDINATOR_MOVING = frozenset(
    {
        int(ErrorCode.coordinator_load_in_progress),
        int(ErrorCode.coordinator_not_available),
        int(ErrorCode.not_coordinator),
    }
)
_REBALANCING = frozenset({int(ErrorCode.rebalance_in_progress)})

ROUTINE_ERRORS: Mapping[str, frozenset[int]] = {
    # A client newer than the gateway asks at a version it was not offered, gets
    # UNSUPPORTED_VERSION with the versions offered, and asks again: a negotiation.
    "ApiVersions": frozenset({int(ErrorCode.unsupported_version)}),
    "FindCoordinator": _COORDINATOR_MOVING,
    "JoinGroup": _COORDINATOR_MOVING | _REBALANCING | {int(ErrorCode.member_id_required)},
    "SyncGroup": _COORDINATOR_MOVING | _REBALANCING,
    "Heartbeat": _COORDINATOR_MOVING | _REBALANCING,
    "LeaveGroup": _COORDINATOR_MOVING,
    "OffsetCommit": _COORDINATOR_MOVING,
    "OffsetFetch": _COORDINATOR_MOVING | {int(ErrorCode.unstable_offset_commit)},
    "DescribeGroups": _COORDINATOR_MOVING,
    "ConsumerGroupHeartbeat": _COORDINATOR_MOVING,
    "ConsumerGroupDescribe": _COORDINATOR_MOVING,
    "InitProducerId": _COORDINATOR_MOVING,
    "AddPartitionsToTxn": _COORDINATOR_MOVING,
    "AddOffsetsToTxn": _COORDINATOR_MOVING,
    "EndTxn": _COORDINATOR_MOVING,
    "TxnOffsetCommit": _COORDINATOR_MOVING,
}
"""API name → the error codes that are routine steps of that API's protocol."""


def routine_error(api: str, code: int) -> bool:
    """Whether `code` in an answer to API `api` is a routine protocol step (the client
    retries as designed), not a failure of the user's action."""
    return code in ROUTINE_ERRORS.get(api, ())
