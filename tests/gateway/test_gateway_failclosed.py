"""fail_closed's parts that need no broker: the answer to a refused change names what the
request named, and the journaled window comes back whole after an unclean stop."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from kio.schema.create_topics.v7.request import CreatableTopic, CreateTopicsRequest
from kio.schema.offset_commit.v8.request import (
    OffsetCommitRequest,
    OffsetCommitRequestPartition,
    OffsetCommitRequestTopic,
)
from kio.schema.produce.v9.request import PartitionProduceData, ProduceRequest, TopicProduceData
from kio.static.primitive import i16, i32, i32Timedelta, i64

from kaudit.auditor import RequestContext
from kaudit.gateway import journal as journal_module
from kaudit.gateway.aggregate import RecordsAggregator
from kaudit.gateway.codec import API_KEYS, PRODUCE, decode_response
from kaudit.gateway.exchange import refusal_answer
from kaudit.gateway.failclosed import (
    COORDINATOR_NOT_AVAILABLE,
    NOT_ENOUGH_REPLICAS,
    REQUEST_TIMED_OUT,
    refusal_error,
)
from kaudit.gateway.journal import WindowJournal
from kaudit.gateway.recording import GatewayMetrics, Recording


def answer(key: int, version: int, request: Any) -> Any:
    frame = refusal_answer(key, version, 5, refusal_error(key), "kaudit: refused", request)
    assert frame is not None
    header, body = decode_response(key, version, memoryview(frame)[4:])  # type: ignore[arg-type]
    assert int(header.correlation_id) == 5
    return body


def test_a_refused_produce_names_every_partition_it_carried_with_a_retriable_error() -> None:
    request = ProduceRequest(
        transactional_id=None,
        acks=i16(-1),
        timeout=i32Timedelta.parse(timedelta(seconds=30)),
        topic_data=(
            TopicProduceData(
                name="orders",
                partition_data=(
                    PartitionProduceData(index=i32(3), records=b""),
                    PartitionProduceData(index=i32(5), records=b""),
                ),
            ),
            TopicProduceData(
                name="audit", partition_data=(PartitionProduceData(index=i32(0), records=b""),)
            ),
        ),
    )
    body = answer(PRODUCE, 9, request)
    got = [
        (t.name, int(p.index), int(p.error_code), p.error_message)
        for t in body.responses
        for p in t.partition_responses
    ]
    assert got == [
        ("orders", 3, NOT_ENOUGH_REPLICAS, "kaudit: refused"),
        ("orders", 5, NOT_ENOUGH_REPLICAS, "kaudit: refused"),
        ("audit", 0, NOT_ENOUGH_REPLICAS, "kaudit: refused"),
    ]


def test_refused_admin_and_group_changes_name_their_topics_and_partitions() -> None:
    create = CreateTopicsRequest(
        topics=tuple(
            CreatableTopic(
                name=name,
                num_partitions=i32(1),
                replication_factor=i16(1),
                assignments=(),
                configs=(),
            )
            for name in ("a", "b")
        ),
        timeout=i32Timedelta.parse(timedelta(seconds=30)),
        validate_only=False,
    )
    body = answer(API_KEYS["CreateTopics"], 7, create)
    assert [(t.name, int(t.error_code)) for t in body.topics] == [
        ("a", REQUEST_TIMED_OUT),
        ("b", REQUEST_TIMED_OUT),
    ]
    commit = OffsetCommitRequest(
        group_id="g",
        generation_id_or_member_epoch=i32(-1),
        member_id="",
        group_instance_id=None,
        topics=(
            OffsetCommitRequestTopic(
                name="orders",
                partitions=(
                    OffsetCommitRequestPartition(
                        partition_index=i32(2),
                        committed_offset=i64(10),
                        committed_leader_epoch=i32(-1),
                        committed_metadata=None,
                    ),
                ),
            ),
        ),
    )
    body = answer(API_KEYS["OffsetCommit"], 8, commit)
    assert [
        (t.name, int(p.partition_index), int(p.error_code))
        for t in body.topics
        for p in t.partitions
    ] == [("orders", 2, COORDINATOR_NOT_AVAILABLE)]


def test_journaled_counts_come_back_whole_and_marked_recovered(tmp_path: Path) -> None:
    made: list[Any] = []
    journal = WindowJournal(tmp_path, "gw")
    window = RecordsAggregator(lambda *call: made.append(call), 60)
    window.dirty = set()
    ctx = RequestContext(principal="User:alice", client_id="app", client_address="10.0.0.1")
    window.add("records.produced", ctx, "orders", 10, 1000, 0)
    journal.append(window.window_id, window.journal_lines())
    window.add("records.produced", ctx, "orders", 5, 500, 0)
    window.add("records.consumed", ctx, "orders", 7, 700, 0)
    journal.append(window.window_id, window.journal_lines())
    assert journal.sync_now()
    journal.close()
    # A torn last line (the process died mid-write) is skipped.
    [path] = tmp_path.glob("gw-window-*.jsonl")
    with path.open("ab") as torn:
        torn.write(b'{"key": ["records.produced"')

    again = RecordsAggregator(lambda *call: made.append(call), 60)
    assert again.restore(WindowJournal(tmp_path, "gw").recover()) == 2
    again.flush()
    totals = {
        target.event_type: (target.details["count"], target.details["bytes"])
        for event, _, _ in made
        for target in event.targets
    }
    assert totals == {"records.produced": (15, 1500), "records.consumed": (7, 700)}
    assert all(t.details["recovered"] for event, _, _ in made for t in event.targets)
    assert {ctx.principal for _, ctx, _ in made} == {"User:alice"}


def test_a_window_file_grown_large_is_written_afresh_and_reads_back_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_module, "COMPACT_BYTES", 2000)
    made: list[Any] = []
    recording = Recording(
        lambda *call: made.append(call),
        GatewayMetrics(),
        window_seconds=60,
        fail_closed=True,
        when_durable=lambda done: done(None),
        unavailable=lambda: None,
        journal=WindowJournal(tmp_path, "gw"),
    )
    window = recording.aggregator
    for n in range(200):
        ctx = RequestContext(principal=f"User:u{n % 3}", client_id="app")
        window.add("records.produced", ctx, f"t{n % 5}", 1, 10, 0)
        recording._journal_counts(recording.journal)  # as each answer does
    assert recording.journal is not None and recording.journal.sync_now()
    [path] = tmp_path.glob("gw-window-*.jsonl")
    # Rewritten along the way: at most twice what the 15 counts take, not 200 values.
    assert recording.journal.compactions >= 1
    assert path.stat().st_size < 2 * 15 * 500
    recording.journal.close()
    again = RecordsAggregator(lambda *call: made.append(call), 60)
    again.restore(WindowJournal(tmp_path, "gw").recover())
    again.flush()
    counts = [t.details["count"] for event, _, _ in made for t in event.targets]
    assert sorted(counts) == sorted([14, 13, 13, 14, 13, 13, 13, 14, 13, 14, 13, 13, 14, 13, 13])
    assert sum(counts) == 200
