"""Authorization failures found inside answers (audit_map.denied_in_response), on kio's
own response types: each refused resource once, named from the entries around the error.
End to end (a producer refused in a Metadata answer) in
tests/integration/test_gateway_semantics.py."""

from __future__ import annotations

import uuid
from datetime import timedelta

from kio.schema.errors import ErrorCode
from kio.schema.list_offsets.v7 import response as list_offsets
from kio.schema.metadata.v12 import response as metadata
from kio.schema.types import BrokerId, TopicName
from kio.static.primitive import i32, i32Timedelta

from kaudit.auditor import AuthInfo
from kaudit.gateway.audit_map import denied_in_response, merge_denied

NO_WAIT = i32Timedelta.parse(timedelta(0))


def _topic(name: str, error: ErrorCode, partitions: int) -> metadata.MetadataResponseTopic:
    return metadata.MetadataResponseTopic(
        error_code=error,
        name=TopicName(name),
        topic_id=uuid.uuid4(),
        partitions=tuple(
            metadata.MetadataResponsePartition(
                error_code=ErrorCode.none,
                partition_index=i32(p),
                leader_id=BrokerId(1),
                replica_nodes=(BrokerId(1),),
                isr_nodes=(BrokerId(1),),
                offline_replicas=(),
            )
            for p in range(partitions)
        ),
    )


def test_topics_refused_in_a_metadata_answer_are_denied_once_each() -> None:
    answer = metadata.MetadataResponse(
        throttle_time=NO_WAIT,
        brokers=(),
        cluster_id="c",
        controller_id=BrokerId(1),
        topics=(
            _topic("open", ErrorCode.none, 3),
            _topic("secret", ErrorCode.topic_authorization_failed, 0),
            _topic("gone", ErrorCode.unknown_topic_or_partition, 0),
        ),
    )
    assert denied_in_response("Metadata", None, answer, str) == (
        AuthInfo("DESCRIBE", "TOPIC", "secret", allowed=False, error_code=29),
    )


def test_a_partition_level_refusal_is_named_by_its_topic() -> None:
    def partition(index: int, error: ErrorCode) -> list_offsets.ListOffsetsPartitionResponse:
        return list_offsets.ListOffsetsPartitionResponse(
            partition_index=i32(index), error_code=error
        )

    answer = list_offsets.ListOffsetsResponse(
        throttle_time=NO_WAIT,
        topics=(
            list_offsets.ListOffsetsTopicResponse(
                name=TopicName("orders"),
                partitions=tuple(
                    partition(i, ErrorCode.topic_authorization_failed) for i in range(3)
                ),
            ),
            list_offsets.ListOffsetsTopicResponse(
                name=TopicName("audit"), partitions=(partition(0, ErrorCode.none),)
            ),
        ),
    )
    denied = denied_in_response("ListOffsets", None, answer, str)
    assert [(d.resource_type, d.resource_name, d.allowed) for d in denied] == [
        ("TOPIC", "orders", False)
    ]
    # A generic record that already names the refusal does not name it twice.
    assert merge_denied(denied, denied) == denied
    cluster = (AuthInfo("REQUEST", "CLUSTER", "kafka-cluster"),)
    assert merge_denied(cluster, denied) == cluster + denied
