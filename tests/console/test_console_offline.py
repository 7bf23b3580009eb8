"""When Kafka cannot be reached, the console still decides and records: a refused action
is recorded as denied, an allowed one as a failure with Kafka's (absent) answer, and the
person gets a clear error instead of a hang."""

from __future__ import annotations

from pathlib import Path

from support.console import SEED_POLICY, console_config, harness, local_user


def test_actions_on_an_unreachable_cluster_are_still_recorded(tmp_path: Path) -> None:
    config = console_config(
        tmp_path,
        clusters=[{"name": "gone", "bootstrap_servers": ["127.0.0.1:9"], "timeout_seconds": 1}],
        users=[local_user("alice", "dev")],
        rbac={"policies": [SEED_POLICY]},
    )
    for console in harness(config):
        client = console.login("alice")
        denied = client.post("/api/v1/clusters/gone/topics", json={"name": "t"})
        assert denied.status_code == 403
        event = console.event_for(denied)
        assert event["action"]["result"] == "denied"
        assert event["context"]["cluster_id"] == "gone"  # no id from Kafka: the name

        failed = client.patch(
            "/api/v1/clusters/gone/topics/t/configs", json={"configs": {"retention.ms": "1"}}
        )
        assert failed.status_code == 502
        assert failed.json()["error"] == "kafka"
        event = console.event_for(failed)
        assert event["action"]["result"] == "failure"
        assert event["authorization"]["allowed"] is True
        assert event["details"]["outcome"]["error_code"]
