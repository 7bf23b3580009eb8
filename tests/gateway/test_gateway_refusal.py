"""The APIs whose unreadable requests the gateway refuses (codec.MUST_DECODE), and the
answer it refuses them with (exchange.refusal_answer)."""

from __future__ import annotations

import pytest

from kaudit.gateway.codec import (
    API_KEYS,
    API_NAMES,
    AUTHENTICATES,
    CHANGES_STATE,
    MUST_DECODE,
    NAMES_BROKERS,
    READ_ONLY,
    decode_response,
    parsable_versions,
)
from kaudit.gateway.exchange import refusal_answer
from kaudit.gateway.rewrite import ADDRESSES

# Every API kio knows that only reads: a new one fails this test until it is classified.
EXPECTED_READ_ONLY = {
    "ApiVersions", "ConsumerGroupDescribe", "DescribeAcls", "DescribeClientQuotas",
    "DescribeConfigs", "DescribeDelegationToken", "DescribeGroups", "DescribeLogDirs",
    "DescribeProducers", "DescribeQuorum", "DescribeShareGroupOffsets",
    "DescribeTopicPartitions", "DescribeTransactions", "DescribeUserScramCredentials",
    "Fetch", "FetchSnapshot", "GetTelemetrySubscriptions", "ListConfigResources",
    "ListGroups", "ListOffsets", "ListPartitionReassignments", "ListTransactions",
    "OffsetFetch", "OffsetForLeaderEpoch", "PushTelemetry", "ReadShareGroupState",
    "ReadShareGroupStateSummary", "ShareGroupDescribe", "StreamsGroupDescribe",
}  # fmt: skip


def test_every_api_kio_knows_is_either_refused_unread_or_read_only() -> None:
    assert {API_NAMES[k] for k in READ_ONLY} == EXPECTED_READ_ONLY
    assert set(API_NAMES) == MUST_DECODE | READ_ONLY
    assert not MUST_DECODE & READ_ONLY


@pytest.mark.parametrize(
    "name",
    [
        "Produce", "CreateTopics", "DeleteTopics", "CreatePartitions", "AlterConfigs",
        "IncrementalAlterConfigs", "CreateAcls", "DeleteAcls", "DeleteRecords",
        "DeleteGroups", "OffsetCommit", "OffsetDelete", "AlterPartitionReassignments",
        "ElectLeaders", "AlterUserScramCredentials", "CreateDelegationToken",
        "RenewDelegationToken", "ExpireDelegationToken", "AlterClientQuotas",
        "AlterReplicaLogDirs", "InitProducerId", "AddPartitionsToTxn", "AddOffsetsToTxn",
        "EndTxn", "TxnOffsetCommit", "UpdateFeatures", "WriteTxnMarkers",
    ],
)  # fmt: skip
def test_state_changing_apis_are_refused_unread(name: str) -> None:
    assert API_KEYS[name] in CHANGES_STATE
    assert API_KEYS[name] in MUST_DECODE


def test_logins_and_broker_addresses_are_refused_unread_and_fetch_is_not() -> None:
    assert {API_NAMES[k] for k in AUTHENTICATES} == {"SaslHandshake", "SaslAuthenticate"}
    assert NAMES_BROKERS == ADDRESSES
    assert AUTHENTICATES | NAMES_BROKERS <= MUST_DECODE
    for name in ("Fetch", "ListOffsets", "DescribeConfigs", "DescribeAcls", "ApiVersions"):
        assert API_KEYS[name] not in MUST_DECODE


def test_a_refusal_is_the_apis_own_response_with_the_error_at_every_version() -> None:
    for key in sorted(MUST_DECODE):
        versions = parsable_versions(key)
        assert versions is not None
        for version in range(versions[0], versions[1] + 1):
            frame = refusal_answer(key, version, 77, 42, "refused")
            assert frame is not None, (API_NAMES[key], version)
            header, body = decode_response(key, version, frame[4:])
            assert int(header.correlation_id) == 77
            assert 42 in _error_codes(body), (API_NAMES[key], version, body)


def test_a_per_resource_error_is_carried_by_one_unnamed_entry() -> None:
    frame = refusal_answer(API_KEYS["DeleteTopics"], 6, 1, 42, "refused")
    assert frame is not None
    _, body = decode_response(API_KEYS["DeleteTopics"], 6, frame[4:])
    [result] = body.responses
    assert (int(result.error_code), result.error_message) == (42, "refused")


def test_a_version_kio_does_not_know_has_no_refusal_to_write() -> None:
    assert refusal_answer(API_KEYS["DeleteTopics"], 99, 1, 35, "refused") is None


def _error_codes(value: object) -> list[int]:
    if isinstance(value, tuple):
        return [c for v in value for c in _error_codes(v)]
    fields = getattr(value, "__dataclass_fields__", None)
    if fields is None:
        return []
    codes: list[int] = []
    for name, field in fields.items():
        item = getattr(value, name)
        if field.metadata.get("kafka_type") == "error_code":
            codes.append(int(item))
        else:
            codes.extend(_error_codes(item))
    return codes
