"""HTTP ingest (`POST /api/v1/events`) into a real recorder writing a real local log."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

import kaudit
from kaudit.config import Config
from kaudit.config.console_auth import IngestSource
from kaudit.console.ingest import FailureLimit, ingest_router
from kaudit.console.sessions import LoginLimiter
from kaudit.events import Action, Actor, AuditEvent, Resource
from kaudit.events.formats.cloudevents import to_cloudevent
from kaudit.log.segments import LogReader
from kaudit.session import AuditSession
from support.asgi_server import serve

BACKUP_TOKEN = "backup-tool-token-0123456789"
BILLING_TOKEN = "billing-svc-token-9876543210"
LIMIT = 16 * 1024


def events_in(log_dir: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for _, line in LogReader(log_dir).iter_lines()]


@pytest.fixture
def session(tmp_path: Path) -> Iterator[AuditSession]:
    config = Config.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "cluster": {"id": "prod-eu", "environment": "production"},
            "audit": {
                "log": {"fsync": "never"},
                "custom_event_types": ["billing.invoice_sent"],
            },
        }
    )
    with kaudit.open(config, source="console") as opened:
        yield opened


SOURCES = [
    IngestSource(name="backup", token=BACKUP_TOKEN, event_types=["backup.*", "restore.*"]),
    IngestSource(name="billing", token=BILLING_TOKEN, event_types=["billing.*"]),
]


@pytest.fixture
def url(session: AuditSession) -> Iterator[str]:
    def record(events: list[AuditEvent]) -> None:
        session.recorder.record_many(events, durable=True)

    app = FastAPI()
    app.include_router(ingest_router(SOURCES, record, LIMIT, catalog=session.recorder.catalog))
    with serve(app) as base:
        yield f"{base}/api/v1/events"


def post(url: str, body: Any, token: str | None = BACKUP_TOKEN, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.post(
        url,
        content=content,
        headers={**headers, "Content-Type": "application/json", **kwargs.pop("headers", {})},
        timeout=30,
        **kwargs,
    )


def backup_completed(**overrides: Any) -> dict[str, Any]:
    """The OSO seed's backup.completed event, as the backup tool would send it."""
    return {
        "timestamp": "2024-12-01T10:15:30.123Z",
        "event_type": "backup.completed",
        "event_id": "evt_abc123def456",
        "version": "1.0",
        "actor": {
            "type": "user",
            "id": "alice@company.com",
            "roles": ["backup-operator"],
            "ip_address": "10.0.0.50",
            "user_agent": "kafka-backup-cli/1.0.0",
        },
        "resource": {"type": "backup", "id": "production-backup-20241201"},
        "action": {"operation": "backup", "result": "success", "duration_ms": 120000},
        "details": {
            "backup_id": "production-backup-20241201",
            "topics": ["orders", "payments", "users"],
            "records_backed_up": 1500000,
        },
        **overrides,
    }


def test_a_native_batch_is_recorded_under_the_sending_source(
    url: str, session: AuditSession
) -> None:
    started = backup_completed(event_type="backup.started", event_id="evt_started_1")
    del started["action"]  # optional: the event type's operation is used
    # Whatever the body claims as its source and integrity is replaced.
    completed = backup_completed(
        context={"source": "gateway", "correlation_id": "run-42"},
        integrity={"sequence_number": 999, "signature": "sha256:forged"},
    )

    answer = post(url, [started, completed])

    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "source": "backup",
        "accepted": [
            {"index": 0, "event_id": "evt_started_1", "event_type": "backup.started"},
            {"index": 1, "event_id": "evt_abc123def456", "event_type": "backup.completed"},
        ],
        "refused": [],
    }
    recorded = events_in(session.log_dir)
    assert [e["event_type"] for e in recorded] == ["backup.started", "backup.completed"]
    first, second = recorded
    assert first["action"] == {
        "operation": "backup",
        "result": "success",
        "duration_ms": None,
        "error": None,
    }
    assert second["event_id"] == "evt_abc123def456"
    assert second["timestamp"] == "2024-12-01T10:15:30.123Z"
    assert second["actor"]["id"] == "alice@company.com"
    assert second["actor"]["roles"] == ["backup-operator"]
    assert second["details"]["records_backed_up"] == 1500000
    assert second["context"]["source"] == "ingest:backup"
    assert second["context"]["correlation_id"] == "run-42"
    assert second["context"]["cluster_id"] == "prod-eu"  # enriched by the recorder
    assert second["integrity"]["sequence_number"] == first["integrity"]["sequence_number"] + 1
    assert second["integrity"]["signature"] != "sha256:forged"


def test_cloudevents_are_recorded_whether_data_is_details_or_a_whole_event(
    url: str, session: AuditSession
) -> None:
    generic = {
        "specversion": "1.0",
        "id": "ce-restore-1",
        "source": "kafka-backup-cli",
        "type": "restore.completed",
        "subject": "backup/production-backup-20241201",
        "time": "2024-12-01T12:00:00Z",
        "datacontenttype": "application/json",
        "data": {"target_cluster": "dr-us-east-1", "records_restored": 1000000},
    }
    native = AuditEvent(
        timestamp="2024-12-01T09:00:00.000Z",
        event_type="backup.failed",
        event_id="evt_failed_7",
        actor=Actor(type="service", id="backup-scheduler"),
        resource=Resource(type="backup", id="nightly"),
        action=Action(operation="backup", result="failure", error="broker unreachable"),
    )

    answer = post(url, [generic, to_cloudevent(native)])

    assert answer.status_code == 200, answer.text
    assert [a["event_id"] for a in answer.json()["accepted"]] == ["ce-restore-1", "evt_failed_7"]
    restore, failed = events_in(session.log_dir)
    assert restore["event_type"] == "restore.completed"
    assert restore["timestamp"] == "2024-12-01T12:00:00Z"
    assert restore["actor"]["id"] == "kafka-backup-cli"
    assert restore["resource"]["type"] == "backup"
    assert restore["resource"]["id"] == "production-backup-20241201"
    assert restore["action"]["operation"] == "restore"
    assert restore["details"] == {"target_cluster": "dr-us-east-1", "records_restored": 1000000}
    assert restore["context"]["source"] == "ingest:backup"
    assert failed["action"]["result"] == "failure"
    assert failed["action"]["error"] == "broker unreachable"
    assert failed["context"]["source"] == "ingest:backup"


def test_each_refused_event_is_listed_with_why_and_the_rest_are_recorded(
    url: str, session: AuditSession
) -> None:
    batch = [
        backup_completed(event_type="backup.complete"),
        backup_completed(event_type="topic.deleted"),
        backup_completed(timestamp="yesterday"),
        {k: v for k, v in backup_completed().items() if k != "actor"},
        "backup.completed",
        backup_completed(event_id="evt_good"),
        {"specversion": "1.0", "id": "ce-1", "source": "x", "type": "io.kaudit.nope.nothing"},
    ]

    answer = post(url, batch)

    assert answer.status_code == 200, answer.text
    reply = answer.json()
    assert [a["index"] for a in reply["accepted"]] == [5]
    reasons = {r["index"]: r["reason"] for r in reply["refused"]}
    assert "unknown event type 'backup.complete'" in reasons[0]
    assert "did you mean backup.completed" in reasons[0]
    assert reasons[1] == (
        "source 'backup' may not send 'topic.deleted' events (its event_types: backup.*, restore.*)"
    )
    assert "timestamp must be an RFC 3339 date-time" in reasons[2]
    assert "actor is missing" in reasons[3]
    assert reasons[4] == "an event must be a JSON object, got a JSON str"
    assert "unknown event type 'nope.nothing'" in reasons[6]
    good, denied = events_in(session.log_dir)
    assert good["event_id"] == "evt_good"
    # Sending a type beyond the token's grant is itself audited, once per request.
    assert denied["event_type"] == "access.denied"
    assert denied["actor"]["id"] == "ingest:backup"
    assert denied["action"]["result"] == "denied"
    assert denied["details"] == {
        "denied_event_types": ["topic.deleted"],
        "allowed_event_types": ["backup.*", "restore.*"],
    }


def test_a_token_sends_only_the_types_its_globs_allow(url: str, session: AuditSession) -> None:
    invoice = {
        "event_type": "billing.invoice_sent",
        "actor": {"type": "service", "id": "billing"},
        "resource": {"type": "invoice", "id": "INV-7"},
    }

    billing_own = post(url, [invoice], token=BILLING_TOKEN)
    billing_backup = post(url, [backup_completed()], token=BILLING_TOKEN)
    backup_invoice = post(url, [invoice], token=BACKUP_TOKEN)

    assert billing_own.status_code == 200, billing_own.text
    assert billing_backup.status_code == 422
    assert billing_backup.json()["refused"][0]["reason"].startswith(
        "source 'billing' may not send 'backup.completed'"
    )
    assert backup_invoice.status_code == 422
    recorded = events_in(session.log_dir)
    assert [(e["event_type"], e["context"]["source"]) for e in recorded] == [
        ("billing.invoice_sent", "ingest:billing"),
        ("access.denied", "ingest:billing"),
        ("access.denied", "ingest:backup"),
    ]
    assert recorded[1]["details"]["denied_event_types"] == ["backup.completed"]
    assert recorded[2]["details"]["denied_event_types"] == ["billing.invoice_sent"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-configured-token-at-all"},
        {"Authorization": f"Basic {BACKUP_TOKEN}"},
        {"Authorization": f"Bearer {BACKUP_TOKEN[:-1]}"},
    ],
)
def test_without_a_valid_bearer_token_only_the_failed_attempt_is_recorded(
    url: str, session: AuditSession, headers: dict[str, str]
) -> None:
    answer = httpx.post(
        url,
        content=orjson.dumps([backup_completed()]),
        headers={**headers, "User-Agent": "kafka-backup-cli/1.0.0"},
    )

    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert "bearer token is required" in answer.json()["error"]
    session.flush()
    [failed] = events_in(session.log_dir)
    assert failed["event_type"] == "auth.failed"
    assert failed["actor"]["ip_address"] == "127.0.0.1"
    assert failed["actor"]["user_agent"] == "kafka-backup-cli/1.0.0"
    assert failed["action"]["result"] == "failure"
    assert failed["resource"] == {"type": "ingest", "id": "/api/v1/events", "path": None}


def test_a_body_over_the_limit_is_refused_with_413(url: str, session: AuditSession) -> None:
    big = [backup_completed(event_id=f"evt_{i}", details={"pad": "x" * 500}) for i in range(40)]
    body = orjson.dumps(big)
    assert len(body) > LIMIT

    declared = post(url, body)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    # Chunked transfer: no Content-Length, so the limit is counted as the body arrives.
    streamed = httpx.post(
        url,
        content=chunks(),
        headers={"Authorization": f"Bearer {BACKUP_TOKEN}"},
        timeout=30,
    )

    for answer in (declared, streamed):
        assert answer.status_code == 413
        assert answer.json()["error"] == (
            f"the body is larger than the limit of {LIMIT} bytes; "
            "send the events in smaller batches"
        )
    session.flush()
    assert events_in(session.log_dir) == []


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b'[{"event_type": "backup.completed",', 400, "the body is not valid JSON: "),
        (b'"backup.completed"', 400, "got a JSON str"),
        (b"[]", 400, "the batch is empty"),
    ],
)
def test_a_body_that_is_not_a_batch_of_events_is_a_400_saying_why(
    url: str, body: bytes, status: int, message: str
) -> None:
    answer = post(url, body)

    assert answer.status_code == status
    assert message in answer.json()["error"]


def test_a_single_event_object_is_a_batch_of_one(url: str, session: AuditSession) -> None:
    answer = post(url, backup_completed())

    assert answer.status_code == 200, answer.text
    assert [e["event_id"] for e in events_in(session.log_dir)] == ["evt_abc123def456"]


def test_events_without_id_or_time_get_them_from_kaudit(url: str, session: AuditSession) -> None:
    event = backup_completed()
    del event["event_id"], event["timestamp"]

    answer = post(url, [event])

    assert answer.status_code == 200, answer.text
    given_id = answer.json()["accepted"][0]["event_id"]
    [recorded] = events_in(session.log_dir)
    assert given_id.startswith("evt_")
    assert recorded["event_id"] == given_id
    assert recorded["timestamp"].endswith("Z")


def test_a_log_that_cannot_take_events_answers_503(session: AuditSession) -> None:
    app = FastAPI()
    app.include_router(
        ingest_router(
            SOURCES, session.recorder.record_many, LIMIT, catalog=session.recorder.catalog
        )
    )
    session.close()
    with serve(app) as base:
        answer = post(f"{base}/api/v1/events", [backup_completed()])

    assert answer.status_code == 503
    assert "retry later" in answer.json()["error"]


def test_the_route_is_in_the_openapi_document_with_its_body_and_answers() -> None:
    app = FastAPI()
    app.include_router(ingest_router(SOURCES[:1], lambda events: None, LIMIT))

    operation = app.openapi()["paths"]["/api/v1/events"]["post"]

    assert operation["requestBody"]["required"] is True
    assert {"200", "400", "401", "413", "422", "503"} <= set(operation["responses"])


def test_a_glob_that_matches_no_event_type_is_refused_when_the_router_is_built() -> None:
    source = IngestSource(name="typo", token=BACKUP_TOKEN, event_types=["bakup.*"])

    with pytest.raises(ValueError, match=re.escape("'bakup.*' matches no event type")):
        ingest_router([source], lambda events: None, LIMIT)
    with pytest.raises(ValueError, match="repeated: backup"):
        ingest_router([SOURCES[0], SOURCES[0]], lambda events: None, LIMIT)
    same_token = IngestSource(name="other", token=BACKUP_TOKEN, event_types=["backup.*"])
    with pytest.raises(ValueError, match="different tokens"):
        ingest_router([SOURCES[0], same_token], lambda events: None, LIMIT)


def test_failed_authentications_past_the_limit_are_refused_without_recording(
    session: AuditSession, caplog: pytest.LogCaptureFixture
) -> None:
    app = FastAPI()
    failures = FailureLimit(LoginLimiter(1, 3, 900.0))
    app.include_router(
        ingest_router(
            SOURCES,
            session.recorder.record_many,
            LIMIT,
            catalog=session.recorder.catalog,
            failures=failures,
        )
    )
    with caplog.at_level(logging.WARNING, "kaudit.console.ingest"), serve(app) as base:
        codes = [post(f"{base}/api/v1/events", [], token="wrong").status_code for _ in range(8)]
        accepted = post(f"{base}/api/v1/events", [backup_completed()])
    assert codes == [401] * 3 + [429] * 5
    assert accepted.status_code == 200  # a valid token is not limited
    session.flush()
    assert [e["event_type"] for e in events_in(session.log_dir)].count("auth.failed") == 3
    assert failures.unrecorded == 5
    warnings = [r.getMessage() for r in caplog.records if "not recorded" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "1 failed authentications not recorded" in warnings[0]
