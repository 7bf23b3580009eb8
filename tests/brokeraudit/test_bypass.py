"""The bypass detector over a real local log: a broker decision matched by a gateway event
(principal, API, client id, correlation id, time) is no bypass; an unmatched one is,
once its wait is over, or at once from an address that is not a gateway's; waiting
decisions survive a restart of the detector."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from kaudit.brokeraudit import BypassDetector
from kaudit.brokeraudit.decisions import parse, to_events
from kaudit.brokeraudit.logsources import LocalLogSource
from kaudit.config import load_config_text
from kaudit.config.model import BypassConfig
from kaudit.events.model import Action, Actor, ApiRef, AuditEvent, Context, Resource
from kaudit.integrity.chain import HmacChain
from kaudit.log.cursor import Cursor
from kaudit.log.segments import LogReader, list_segments, segment_name
from kaudit.session import AuditSession

T0 = 1_796_658_475_000


@pytest.fixture
def session(tmp_path: Path) -> Iterator[AuditSession]:
    config = load_config_text(
        yaml.safe_dump({"data_dir": str(tmp_path / "audit")}), source="test", env={}
    )
    with AuditSession(config, source="broker") as opened:
        yield opened


def broker_event(
    correlation_id: int,
    address: str = "10.0.0.1",
    at: int = T0,
    topic: str | None = None,
    record: str = "",
    resource_type: str = "TOPIC",
) -> AuditEvent:
    raw = orjson.dumps(
        {"kind": "decision", "id": f"1-r-{correlation_id}{record}", "node": 1, "time_ms": at,
         "correlation_id": correlation_id, "principal": "User:alice", "client_address": address,
         "client_id": "app", "api_key": 19, "api_version": 7, "operation": "CREATE",
         "resource_type": resource_type, "resource_name": topic or f"t{correlation_id}",
         "allowed": True}
    )  # fmt: skip
    (event,) = to_events(parse(raw))
    return event


def gateway_event(correlation_id: int, at: int = T0 + 40, topic: str | None = None) -> AuditEvent:
    stamp = broker_event(correlation_id, at=at)
    return AuditEvent(
        timestamp=stamp.timestamp,
        event_type="topic.created",
        event_id="",
        actor=Actor(type="user", id="User:alice", ip_address="192.0.2.7", client_id="app"),
        resource=Resource("topic", topic or f"t{correlation_id}"),
        action=Action("create"),
        context=Context(
            correlation_id=str(correlation_id), source="gateway", api=ApiRef(19, "CreateTopics", 7)
        ),
    )


def detector(
    session: AuditSession, now_ms: int, hmac_key: bytes | None = None, **settings: Any
) -> BypassDetector:
    cursor = Cursor(session.config.data_path / "bypass.json")
    return BypassDetector(
        LocalLogSource(session.config.log_dir, cursor),
        session.recorder,
        BypassConfig(window_seconds=5, **settings),
        clock=lambda: now_ms / 1000,
        hmac_key=hmac_key,
    )


def bypasses(session: AuditSession) -> list[dict[str, Any]]:
    session.flush()
    lines = [orjson.loads(line) for _, line in LogReader(session.config.log_dir).iter_lines()]
    return [e for e in lines if e["event_type"] == "access.bypassed_gateway"]


def test_a_matched_decision_is_no_bypass_and_an_unmatched_one_is_after_the_window(
    session: AuditSession,
) -> None:
    session.record(broker_event(1))
    session.record(broker_event(2))
    session.record(gateway_event(1))
    session.flush()
    waiting = detector(session, T0 + 1000)
    assert waiting.poll() == 0
    assert waiting.matched == 1 and waiting.waiting == 1
    assert detector(session, T0 + 6000).poll() == 1  # a fresh detector, from the cursor
    (found,) = bypasses(session)
    assert found["resource"]["id"] == "t2"
    assert found["actor"]["ip_address"] == "10.0.0.1"
    assert found["context"]["correlation_id"] == "2"
    assert found["details"]["broker_event_type"] == "topic.created"


def test_a_decision_from_an_address_that_is_no_gateways_is_a_bypass_at_once(
    session: AuditSession,
) -> None:
    session.record(broker_event(1, address="10.0.0.1"))
    session.record(broker_event(2, address="10.9.9.9"))
    session.flush()
    found = detector(session, T0, gateway_addresses=["10.0.0.1"])
    assert found.poll() == 1
    (event,) = bypasses(session)
    assert event["actor"]["ip_address"] == "10.9.9.9"
    assert event["details"]["reason"] == "the client address is not one of the gateways'"


def test_a_gateway_event_too_far_from_the_decision_does_not_match(
    session: AuditSession,
) -> None:
    session.record(broker_event(3))
    session.record(gateway_event(3, at=T0 + 60_000))
    session.flush()
    assert detector(session, T0 + 120_000).poll() == 1


def test_after_a_restart_a_gateway_event_read_before_the_waiting_decision_still_matches(
    session: AuditSession,
) -> None:
    """The gateway's record of request 2 comes before the still-waiting decision 1 in the
    log: the cursor stays before it, so a fresh detector does not call 2 a bypass."""
    session.record(gateway_event(2))
    session.record(broker_event(1))
    session.record(broker_event(2))
    session.flush()
    first = detector(session, T0 + 1000)
    assert first.poll() == 0 and first.matched == 1 and first.waiting == 1
    assert detector(session, T0 + 6000).poll() == 1
    assert [e["resource"]["id"] for e in bypasses(session)] == ["t1"]


def test_a_direct_request_mirroring_a_gateway_request_on_another_topic_is_a_bypass(
    session: AuditSession,
) -> None:
    """Same principal, API, client id and correlation id (a fresh connection starts where
    the gateway's did), another topic: the gateway event does not hide it."""
    session.record(gateway_event(1, topic="orders"))
    session.record(broker_event(1, topic="orders"))
    session.record(broker_event(1, at=T0 + 100, topic="payroll", record="direct"))
    session.flush()
    found = detector(session, T0 + 6000)
    assert found.poll() == 1 and found.matched == 1
    (event,) = bypasses(session)
    assert event["resource"]["id"] == "payroll"


def test_one_gateway_request_covers_one_decision_per_resource(session: AuditSession) -> None:
    """The same request sent once more, straight to the broker: one gateway event cannot
    cover two decisions on the same topic."""
    session.record(gateway_event(1, topic="orders"))
    session.record(broker_event(1, topic="orders"))
    session.record(broker_event(1, at=T0 + 100, topic="orders", record="again"))
    session.flush()
    found = detector(session, T0 + 6000)
    assert found.poll() == 1 and found.matched == 1
    (event,) = bypasses(session)
    assert event["details"]["broker_event_id"] != ""


def test_a_request_on_several_topics_matches_each_decision_once_and_one_cluster_decision(
    session: AuditSession,
) -> None:
    """A gateway request naming two topics covers the broker's decision on each and one
    decision on the cluster (Kafka's CREATE on the cluster for CreateTopics), no more."""
    session.record(gateway_event(1, topic="a"))
    session.record(gateway_event(1, topic="b"))
    session.record(broker_event(1, topic="a"))
    session.record(broker_event(1, topic="b", record="b"))
    session.record(broker_event(1, topic="kafka-cluster", record="c", resource_type="CLUSTER"))
    session.record(
        broker_event(1, at=T0 + 100, topic="kafka-cluster", record="d", resource_type="CLUSTER")
    )
    session.flush()
    found = detector(session, T0 + 6000)
    assert found.poll() == 1 and found.matched == 3
    (event,) = bypasses(session)
    assert (event["resource"]["type"], event["resource"]["id"]) == ("cluster", "kafka-cluster")


def broker_count(
    requests: int,
    *,
    client_id: str = "billing-app",
    address: str = "10.0.0.1",
    at: int = T0,
    record: str = "",
) -> AuditEvent:
    """The broker's count of User:billing's fetches of `payments` over one second."""
    raw = orjson.dumps(
        {"kind": "aggregate", "id": f"1-r-count{record}", "node": 1, "time_ms": at + 1000,
         "principal": "User:billing", "client_address": address, "client_id": client_id,
         "api_key": 1, "api_version": 13, "operation": "READ", "resource_type": "TOPIC",
         "resource_name": "payments", "allowed": True, "count": requests, "first_ms": at,
         "last_ms": at + 1000}
    )  # fmt: skip
    (event,) = to_events(parse(raw))
    assert event.event_type == "records.consumed"
    return event


def gateway_count(requests: int, at: int = T0) -> AuditEvent:
    """The gateway's count of the billing app's fetches of `payments`."""
    stamp = broker_count(1, at=at + 1000)
    return AuditEvent(
        timestamp=stamp.timestamp,
        event_type="records.consumed",
        event_id="",
        actor=Actor(
            type="user", id="User:billing", ip_address="192.0.2.7", client_id="billing-app"
        ),
        resource=Resource("topic", "payments"),
        action=Action("consume"),
        context=Context(source="gateway", api=ApiRef(1, "Fetch", 13)),
        details={"topic": "payments", "count": requests * 10, "requests": requests,
                 "first_seen": broker_count(1, at=at).timestamp, "last_seen": stamp.timestamp},
    )  # fmt: skip


def test_a_stolen_credential_fetching_directly_does_not_hide_behind_the_apps_traffic(
    session: AuditSession,
) -> None:
    """The billing app fetches through the gateway (3 requests); a stolen User:billing
    credential fetches `payments` directly from another host, with its own client id and
    with the app's: neither is covered by the app's count, each is a bypass of what the
    gateway did not see."""
    session.record(gateway_count(3))
    session.record(broker_count(3, record="app"))
    session.record(broker_count(50_000, client_id="thief", address="10.6.6.6", record="a"))
    session.record(broker_count(50_000, client_id="billing-app", address="10.6.6.6", record="b"))
    session.flush()
    found = detector(session, T0 + 1_000_000)
    assert found.poll() == 2 and found.matched == 1
    mimic, thief = sorted(bypasses(session), key=lambda e: e["actor"]["client_id"])
    assert thief["actor"]["client_id"] == "thief"
    assert thief["details"]["reason"] == "no gateway recorded this request"
    assert thief["details"]["unmatched_requests"] == 50_000
    assert mimic["actor"]["ip_address"] == "10.6.6.6"
    assert mimic["details"]["reason"] == "the broker counted more requests than the gateways did"
    assert mimic["details"]["broker_requests"] == 50_000
    assert mimic["details"]["gateway_requests"] == 3
    assert mimic["details"]["unmatched_requests"] == 49_997


def test_retries_within_the_tolerance_are_no_bypass(session: AuditSession) -> None:
    """The broker counts a few requests more than the gateway did (retries, window
    edges): within `count_tolerance` and `count_slack`, no bypass."""
    session.record(gateway_count(1000))
    session.record(broker_count(1100 + 10))  # 10 % and the slack of 10, idle polls aside
    session.flush()
    found = detector(session, T0 + 1_000_000, idle_fetches_per_second=0)
    assert found.poll() == 0 and found.matched == 1
    assert bypasses(session) == []


def test_a_count_just_beyond_the_tolerance_is_a_bypass_of_the_difference(
    session: AuditSession,
) -> None:
    session.record(gateway_count(1000))
    session.record(broker_count(1200))
    session.flush()
    found = detector(session, T0 + 1_000_000, idle_fetches_per_second=0)
    assert found.poll() == 1
    (event,) = bypasses(session)
    assert event["details"]["gateway_requests"] == 1000
    assert event["details"]["unmatched_requests"] == 200


def test_behind_snat_a_gateways_address_is_not_enough(session: AuditSession) -> None:
    """With gateway_addresses set to the nodes' addresses (Kubernetes SNAT), a pod on a
    gateway's node reaches the broker from that address: unmatched, it is still a bypass."""
    session.record(gateway_event(1))
    session.record(broker_event(1, address="10.0.0.1"))
    session.record(broker_event(2, address="10.0.0.1"))
    session.record(broker_count(500, address="10.0.0.1"))
    session.flush()
    waiting = detector(session, T0 + 1000, gateway_addresses=["10.0.0.1"])
    assert waiting.poll() == 0 and waiting.matched == 1 and waiting.waiting == 2
    assert detector(session, T0 + 1_000_000, gateway_addresses=["10.0.0.1"]).poll() == 2
    assert sorted(e["resource"]["id"] for e in bypasses(session)) == ["payments", "t2"]


HMAC_KEY = "k" * 32


@pytest.fixture
def signed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AuditSession]:
    """A session whose log is signed and chained with HMAC_KEY."""
    monkeypatch.setenv("KAUDIT_BYPASS_HMAC", HMAC_KEY)
    integrity = {"signing": {"enabled": True, "key_env_var": "KAUDIT_BYPASS_HMAC"},
                 "chain": {"enabled": True}}  # fmt: skip
    config = load_config_text(
        yaml.safe_dump({"data_dir": str(tmp_path / "audit"), "audit": {"integrity": integrity}}),
        source="test",
        env={},
    )
    with AuditSession(config, source="broker") as opened:
        yield opened


def inject(session: AuditSession, line: bytes) -> None:
    """Append `line` to the local log by hand, as a writer other than kaudit would."""
    last = max(list_segments(session.config.log_dir))
    with (session.config.log_dir / segment_name(last)).open("ab") as f:
        f.write(line.rstrip(b"\n") + b"\n")


def test_an_injected_gateway_line_does_not_cancel_a_bypass(signed: AuditSession) -> None:
    """Forged gateway events for the direct request 2 (unsigned; signed but chained to
    nothing; carrying another line's signature) and a copy of the real gateway line of
    request 1 (replayed to cover a second, direct request 1): none is evidence. Request 2
    and the second request 1 are bypasses; the refused lines are counted and recorded as
    audit.degraded (the copy is only dropped: at-least-once delivery makes copies)."""
    signed.record(broker_event(1))
    signed.record(broker_event(1, at=T0 + 100, record="again"))
    signed.record(broker_event(2))
    signed.record(gateway_event(1))
    signed.flush()
    lines = [line for _, line in LogReader(signed.config.log_dir).iter_lines()]
    real = lines[-1]
    assert b'"source":"gateway"' in real
    seq = orjson.loads(real)["integrity"]["sequence_number"]
    forged = (
        real.replace(b'"correlation_id":"1"', b'"correlation_id":"2"')
        .replace(b'"id":"t1"', b'"id":"t2"')
        .replace(b'"sequence_number":%d' % seq, b'"sequence_number":%d' % (seq + 1))
    )
    assert forged != real and b'"id":"t2"' in forged
    unsigned = forged.split(b'"signature":')[0] + b'"signature":null,"previous_signature":null}}'
    inject(signed, unsigned)
    # Signed with the key, but linked to no line of the stream: the chain refuses it.
    bogus = "sha256:" + "0" * 64
    inject(signed, HmacChain(HMAC_KEY.encode(), chained=True, previous=bogus).seal(unsigned))
    inject(
        signed,
        forged.replace(b'"sequence_number":%d' % (seq + 1), b'"sequence_number":%d' % (seq + 2)),
    )
    inject(signed, real)  # replayed
    found = detector(signed, T0 + 6000, hmac_key=HMAC_KEY.encode())
    assert found.poll() == 2 and found.matched == 1
    assert sorted(e["resource"]["id"] for e in bypasses(signed)) == ["t1", "t2"]
    assert found.evidence.rejected == {
        "not signed": 1,
        "a previous_signature that is not the line before's": 1,
        "a signature that does not verify": 1,
    }
    degraded = [
        orjson.loads(line)
        for _, line in LogReader(signed.config.log_dir).iter_lines()
        if b'"audit.degraded"' in line
    ]
    (note,) = degraded
    assert note["details"]["untrusted"] == 3


def test_without_the_key_an_unsigned_gateway_line_of_the_stream_is_still_taken(
    signed: AuditSession,
) -> None:
    """What the HMAC key adds: without it, a forged line that fits the stream (a later
    sequence number) cannot be told from the writer's, and is taken as evidence."""
    signed.record(broker_event(2))
    signed.record(gateway_event(1))
    signed.flush()
    real = [line for _, line in LogReader(signed.config.log_dir).iter_lines()][-1]
    seq = orjson.loads(real)["integrity"]["sequence_number"]
    inject(
        signed,
        real.replace(b'"correlation_id":"1"', b'"correlation_id":"2"')
        .replace(b'"id":"t1"', b'"id":"t2"')
        .replace(b'"sequence_number":%d' % seq, b'"sequence_number":%d' % (seq + 1)),
    )
    # Another line for a sequence number already read: refused even without the key.
    inject(signed, real.replace(b'"correlation_id":"1"', b'"correlation_id":"3"'))
    found = detector(signed, T0 + 6000)
    assert found.poll() == 0 and found.matched == 1
    assert found.evidence.rejected == {"a second line for a sequence number": 1}


def test_an_unsigned_line_of_another_source_cannot_push_real_gateway_lines_out(
    signed: AuditSession,
) -> None:
    """With the key, every line's signature is checked before its sequence number counts:
    a forged, unsigned line of any source numbered far ahead must not make the writer's
    own later gateway lines look out of order (every real request would be a bypass)."""
    signed.record(broker_event(1))
    signed.flush()
    real = [line for _, line in LogReader(signed.config.log_dir).iter_lines()][-1]
    seq = orjson.loads(real)["integrity"]["sequence_number"]
    ahead = real.replace(b'"source":"broker"', b'"source":"sdk"').replace(
        b'"sequence_number":%d' % seq, b'"sequence_number":%d' % (seq + 1000)
    )
    inject(
        signed, ahead.split(b'"signature":')[0] + b'"signature":null,"previous_signature":null}}'
    )
    signed.record(gateway_event(1))
    signed.flush()
    found = detector(signed, T0 + 6000, hmac_key=HMAC_KEY.encode())
    polled = found.poll()
    assert (polled, found.matched, dict(found.evidence.rejected)) == (0, 1, {})
    assert bypasses(signed) == []
