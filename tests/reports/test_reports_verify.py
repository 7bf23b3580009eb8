"""`kaudit verify` / `kaudit prove` as library calls (kaudit.reports.verify): each SOURCE
goes to its verifier, options that do not fit it are usage errors, and the reports and
proofs are those of the verifiers themselves. The verifiers' own checks are tested in
tests/integrity; Kafka and S3 sources that reach a server in tests/integration and
tests/exporters."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

import kaudit
from kaudit.config import Config
from kaudit.errors import UsageError
from kaudit.integrity.keys import KeyRing, generate, load_verifiers
from kaudit.integrity.proof import verify_proof
from kaudit.integrity.verify import VerifyReport, VerifyUsageError, verify_log
from kaudit.log.segments import list_segments, segment_name
from kaudit.reports.verify import (
    StreamReports,
    prove_source,
    report_json,
    report_text,
    verification_keys,
    verify_source,
)

HMAC_ENV = "KAUDIT_TEST_REPORTS_VERIFY_HMAC"
HMAC = "reports-verify-hmac-key-0123456789"


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A data directory with 100 events written in two runs with the HMAC chain and
    checkpoints on (each close makes one: sizes 50 and 100 among them); (data, .pub)."""
    root = tmp_path_factory.mktemp("sealed")
    keys = generate(root / "audit", "kaudit/reports-verify")
    config = Config.model_validate(
        {
            "data_dir": str(root / "data"),
            "audit": {
                "integrity": {
                    "signing": {"enabled": True, "key_env_var": HMAC_ENV},
                    "chain": {"enabled": True},
                    "checkpoints": {
                        "enabled": True,
                        "key_file": str(keys.private),
                        "every_events": 20,
                    },
                }
            },
        }
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(HMAC_ENV, HMAC)
        for run in range(2):
            with kaudit.open(config) as session:
                for i in range(run * 50, run * 50 + 50):
                    session.emit("topic.deleted", actor="User:a", resource=f"topic:t{i}")
    return root / "data", keys.public


def _export(data: Path, out: Path) -> Path:
    """The log's events in one JSON Lines file, as a `file` destination writes them."""
    log_dir = data / "log"
    out.write_bytes(
        b"".join((log_dir / segment_name(b)).read_bytes() for b in list_segments(log_dir))
    )
    return out


def test_keys_come_from_public_key_files_and_the_environment(
    sealed: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, pub = sealed
    with pytest.raises(VerifyUsageError, match="--public-key"):
        verification_keys([], None)
    with pytest.raises(VerifyUsageError, match=f"{HMAC_ENV} is not set"):
        verification_keys([], HMAC_ENV)
    monkeypatch.setenv(HMAC_ENV, HMAC)
    ring, hmac_key = verification_keys([pub], HMAC_ENV)
    assert ring is not None and len(ring) == 1 and hmac_key == HMAC.encode()
    assert verification_keys([str(pub)], None)[1] is None


def test_a_data_directory_is_verified_as_its_log(sealed: tuple[Path, Path]) -> None:
    data, pub = sealed
    ring = load_verifiers([pub])
    seen: list[int] = []
    report = verify_source(str(data), verifiers=ring, hmac_key=HMAC.encode(), progress=seen.append)
    assert isinstance(report, VerifyReport)
    direct = verify_log(data / "log", verifiers=ring, hmac_key=HMAC.encode())
    assert {**report.to_dict(), "seconds": 0} == {**direct.to_dict(), "seconds": 0}
    assert report.ok and report.events == 100 and seen[-1] == 100
    text = report_text(report)
    assert text.splitlines()[0].startswith(f"{data / 'log'}: INTACT — 100 events (sequence 0–99)")
    assert orjson.loads(report_json(report))["ok"] is True


def test_a_jsonl_file_is_verified_as_an_export(sealed: tuple[Path, Path], tmp_path: Path) -> None:
    data, _ = sealed
    export = _export(data, tmp_path / "audit.jsonl")
    report = verify_source(str(export), verifiers=None, hmac_key=HMAC.encode())
    assert isinstance(report, VerifyReport)
    assert report.ok and report.checks == ("hmac_chain", "sequence")
    assert "note: a JSON Lines export carries no checkpoints" in report_text(report)


def test_a_finding_is_shown_with_its_sequence_numbers(
    sealed: tuple[Path, Path], tmp_path: Path
) -> None:
    data, _ = sealed
    export = _export(data, tmp_path / "audit.jsonl")
    lines = export.read_bytes().splitlines(keepends=True)
    export.write_bytes(b"".join(lines[:40] + lines[43:]))
    report = verify_source(str(export), verifiers=None, hmac_key=HMAC.encode())
    assert not report.ok
    assert "  missing [seq 40–42]: events 40..42 are missing" in report_text(report)


@pytest.mark.parametrize(
    ("source", "options", "message"),
    [
        ("s3://b/p", {"anchors": ["a"]}, "--anchor applies to a log directory, not an S3"),
        ("s3:///p", {}, "s3://bucket/prefix"),
        ("DATA", {"endpoint_url": "http://x"}, "--endpoint-url applies to an s3://"),
        ("kafka://h:1/t", {"anchors": ["a"]}, "--anchor applies to a log directory, not a Kafka"),
        ("EXPORT", {"anchors": ["a"]}, "--anchor applies to a log directory, not a JSONL"),
        ("-", {}, "cannot verify '-'"),
        ("NOWHERE", {}, "does not exist"),
        ("ftp://h/x", {}, "cannot read 'ftp://h/x'"),
    ],
)
def test_options_that_do_not_fit_the_source_are_usage_errors(
    sealed: tuple[Path, Path],
    tmp_path: Path,
    source: str,
    options: dict[str, object],
    message: str,
) -> None:
    data, _ = sealed
    named = {
        "DATA": str(data),
        "EXPORT": str(_export(data, tmp_path / "audit.jsonl")),
        "NOWHERE": str(tmp_path / "nowhere"),
    }
    with pytest.raises(VerifyUsageError, match=message.replace("?", r"\?")):
        verify_source(
            named.get(source, source),
            verifiers=None,
            hmac_key=HMAC.encode(),
            **options,  # type: ignore[arg-type]
        )


def test_an_s3_source_takes_its_destination_from_the_configuration(tmp_path: Path) -> None:
    config = tmp_path / "kaudit.yaml"
    config.write_text("audit:\n  destinations: []\n")
    with pytest.raises(VerifyUsageError, match="has no s3 destination for bucket audit-logs"):
        verify_source("s3://audit-logs/p", verifiers=None, hmac_key=b"k" * 32, config_path=config)


def test_a_kafka_log_reports_each_stream_and_is_ok_when_all_are(
    sealed: tuple[Path, Path], tmp_path: Path
) -> None:
    data, pub = sealed
    good = verify_log(data / "log", verifiers=load_verifiers([pub]))
    bad = verify_log(data / "log", verifiers=KeyRing([generate(tmp_path / "o", "x").verifier]))
    result = StreamReports("kafka://h:1/t", (good, bad))
    assert not result.ok and StreamReports("kafka://h:1/t", (good,)).ok
    body = orjson.loads(report_json(result))
    assert list(body) == ["source", "ok", "streams"] and len(body["streams"]) == 2
    text = report_text(result).splitlines()
    assert sum(line.startswith(f"{good.source}: ") for line in text) == 2


def test_prove_makes_inclusion_and_consistency_proofs_of_a_local_log(
    sealed: tuple[Path, Path],
) -> None:
    data, pub = sealed
    ring = load_verifiers([pub])
    first = orjson.loads((data / "log" / "00000000000000000000.jsonl").read_bytes().split(b"\n")[3])
    proof = prove_source(str(data), event_id=first["event_id"])
    assert proof["type"] == "inclusion" and proof["index"] == 3
    assert "is included at index 3" in verify_proof(orjson.dumps(proof), ring)
    growth = prove_source(str(data / "log"), consistency_from=50)
    assert growth["type"] == "consistency" and growth["old_size"] == 50
    assert "grew from 50 to 100 events" in verify_proof(orjson.dumps(growth), ring)


def test_prove_usage_errors(sealed: tuple[Path, Path], tmp_path: Path) -> None:
    data, _ = sealed
    with pytest.raises(UsageError, match="one of them"):
        prove_source(str(data))
    with pytest.raises(UsageError, match="one of them"):
        prove_source(str(data), event_id="e", consistency_from=1)
    with pytest.raises(UsageError, match="--stream applies to a Kafka log"):
        prove_source(str(data), consistency_from=20, stream="s")
    with pytest.raises(UsageError, match="holds no audit log segments"):
        prove_source(str(tmp_path), event_id="e")
