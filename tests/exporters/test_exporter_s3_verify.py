"""`kaudit verify s3://…`: the S3 destination's copy of a real log, with the writer's signed
checkpoints uploaded beside its objects, checked with the public key alone (and with the
HMAC key) against moto's S3 API server in its own process.

The log is written through `kaudit.open` (HMAC chain, a checkpoint every 100 events,
1 MB segments), exported with the real exporter runner in batches of 250 (several
objects), then the objects are edited in the bucket as an attacker with write access to
it would. Each tampering must be reported with the right kind and sequence numbers.
"""

from __future__ import annotations

import gzip
import itertools
import re
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from kaudit_destination_helpers import drain
from kaudit_destination_servers import MotoServer
from kaudit_sealed import Keys, emit_topics, sealed_audit, signer_and_other

import kaudit
from kaudit.cli import main
from kaudit.config import Config
from kaudit.config.model import AwsAccess
from kaudit.exporters.export_verify import verify_s3
from kaudit.exporters.records import batch_key
from kaudit.integrity.keys import KeyRing
from kaudit.integrity.verify import VerifyReport, VerifyUsageError
from kaudit.log.segments import list_segments

HMAC_ENV = "KAUDIT_TEST_S3_VERIFY_HMAC"
HMAC = "s3-verify-test-hmac-key-0123456789"
EVENTS = 1500
BATCH = 250
TARGET = 777  # an event in the middle of the fourth object
BUCKET = "audit-logs"
PREFIX = "kafka-backup/"
MODES = ["public_key", "both"]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return signer_and_other(tmp_path_factory.mktemp("keys"), "kaudit-s3")


def _settings(data: Path, key_file: Path, moto: MotoServer | None) -> dict[str, Any]:
    destination: dict[str, Any] = {
        "type": "s3",
        "bucket": BUCKET,
        "prefix": PREFIX,
        "batch_size": BATCH,
        "batch_interval_secs": 0,
    }
    if moto is not None:
        destination.update(moto.access())
    audit = sealed_audit(key_file, HMAC_ENV, every_events=100)
    return {"data_dir": str(data), "audit": {**audit, "destinations": [destination]}}


def _emit(session: kaudit.AuditSession, start: int, count: int) -> None:
    emit_topics(session, start, count, pad=900)  # checkpoints land every 100 events


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Path:
    """A data directory holding a sealed log of EVENTS events, not yet exported."""
    data = tmp_path_factory.mktemp("pristine") / "data"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(HMAC_ENV, HMAC)
        config = Config.model_validate(_settings(data, keys.signer.private, None))
        half = EVENTS // 2
        with kaudit.open(config) as session:
            _emit(session, 0, half)
        time.sleep(1.1)  # checkpoint times are whole seconds: keep the two runs apart
        with kaudit.open(config) as session:
            _emit(session, half, EVENTS - half)
    assert len(list_segments(data / "log")) >= 2
    return data


@pytest.fixture(autouse=True)
def _hmac_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HMAC_ENV, HMAC)


@dataclass
class Export:
    """A copy of the pristine log exported to a fresh bucket, and how to reach it."""

    config: Config
    config_file: Path
    moto: MotoServer
    keys: Keys

    @property
    def s3(self) -> Any:
        return self.moto.client("s3")

    def keys_under(self, under: str = "") -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=BUCKET, Prefix=PREFIX + under
        )
        return [item["Key"] for page in pages for item in page.get("Contents", ())]

    def data_keys(self) -> list[str]:
        return sorted(k for k in self.keys_under() if k.endswith(".jsonl.gz"))

    def checkpoint_keys(self) -> list[str]:
        return sorted(self.keys_under("checkpoints/"))

    def lines(self, key: str) -> list[bytes]:
        body = self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        return gzip.decompress(body).splitlines(keepends=True)

    def put(self, key: str, lines: list[bytes]) -> None:
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=gzip.compress(b"".join(lines)))

    def locate(self, seq: int) -> tuple[str, int, list[bytes]]:
        for key in self.data_keys():
            lines = self.lines(key)
            for i, line in enumerate(lines):
                if orjson.loads(line)["integrity"]["sequence_number"] == seq:
                    return key, i, lines
        raise LookupError(seq)

    def verify(self, mode: str = "public_key", **kw: Any) -> VerifyReport:
        ring = KeyRing([self.keys.signer.verifier]) if mode in ("public_key", "both") else None
        access = AwsAccess.model_validate(self.moto.access())
        return verify_s3(
            access,
            BUCKET,
            PREFIX,
            verifiers=ring,
            hmac_key=HMAC.encode() if mode in ("hmac", "both") else None,
            **kw,
        )


@pytest.fixture
def export(pristine: Path, keys: Keys, moto: MotoServer, tmp_path: Path) -> Export:
    data = tmp_path / "data"
    shutil.copytree(pristine, data)
    settings = _settings(data, keys.signer.private, moto)
    config_file = tmp_path / "kaudit.yaml"
    config_file.write_bytes(orjson.dumps(settings))  # JSON is YAML
    config = Config.model_validate(settings)
    moto.client("s3").create_bucket(Bucket=BUCKET)
    runner = drain(config)
    assert runner.metrics.sent == EVENTS and runner.metrics.failed == 0
    return Export(config, config_file, moto, keys)


def _kinds(report: VerifyReport) -> list[str]:
    return [str(f.kind) for f in report.findings]


def _show(report: VerifyReport) -> str:
    return "\n".join(f"{f.kind}: {f.message}" for f in report.findings) or "no findings"


def _range(key: str) -> tuple[int, int]:
    low, high, _ = key.rsplit("/", 1)[1].removesuffix(".jsonl.gz").split("-")
    return int(low), int(high)


# ----------------------------------------------------------------------------- intact


@pytest.mark.parametrize("mode", ["public_key", "hmac", "both"])
def test_an_untouched_export_verifies_clean(export: Export, mode: str) -> None:
    ranges = [_range(k) for k in export.data_keys()]
    # Batches of at most BATCH (a segment's end also ends one), one after the other.
    assert len(ranges) >= EVENTS // BATCH and ranges[0][0] == 0 and ranges[-1][1] == EVENTS - 1
    assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(ranges))
    assert all(hi - lo < BATCH for lo, hi in ranges)
    # Checkpoints went up beside the objects, every one the log holds, the closing one too.
    records = [
        orjson.loads(line)
        for key in export.checkpoint_keys()
        for line in export.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().splitlines()
    ]
    local = [
        orjson.loads(line)
        for path in sorted(export.config.log_dir.glob("*.checkpoints.jsonl"))
        for line in path.read_bytes().splitlines()
    ]
    assert records == local and max(r["size"] for r in records) == EVENTS
    seen: list[int] = []
    report = export.verify(mode, progress=seen.append)
    assert report.ok, _show(report)
    assert (report.events, report.first_sequence, report.last_sequence) == (
        EVENTS,
        0,
        EVENTS - 1,
    )
    assert seen[-1] == EVENTS
    assert report.source == f"s3://{BUCKET}/{PREFIX}"
    if mode == "hmac":
        assert report.checkpoints_checked == 0
        assert any("cannot be seen without the checkpoints" in n for n in report.notes)
    else:
        assert report.checkpoints_checked >= EVENTS // 100
        assert report.covered.verified_through == EVENTS - 1


def test_a_batch_delivered_twice_is_no_finding(export: Export) -> None:
    # After a crash the runner sends the last batch again; with another batch size it
    # lands in an object of another name whose range overlaps the first.
    key = export.data_keys()[2]
    low, high = _range(key)
    lines = export.lines(key) + export.lines(export.data_keys()[3])[:10]
    digest = batch_key(lines)  # the exporter names an object by the lines it holds
    again = key.rsplit("/", 1)[0] + f"/{low:012d}-{high + 10:012d}-{digest}.jsonl.gz"
    export.put(again, lines)
    report = export.verify("both")
    assert report.ok, _show(report)
    assert report.events == EVENTS
    assert any(f"{len(lines)} line(s) repeat events" in n for n in report.notes), report.notes


# ----------------------------------------------------------------------------- tamper


def test_a_copy_of_an_object_under_another_name_is_found(export: Export) -> None:
    """Intact events under a name the exporter did not give them (another digest, or the
    same one under another stream) would be counted twice by query engines."""
    key = export.data_keys()[2]
    lines = export.lines(key)
    stream, name = key.removeprefix(PREFIX).split("/")
    renamed = f"{PREFIX}{stream}/{name[:26]}{'0' * 16}.jsonl.gz"
    export.put(renamed, lines)
    export.put(f"{PREFIX}other/{name}", lines)
    report = export.verify("both")
    assert not report.ok
    messages = [f.message for f in report.findings]
    assert _kinds(report) == ["inserted", "inserted"], _show(report)
    same = [m for m in messages if "the same content as" in m]  # either may be the copy
    assert len(same) == 1 and f"other/{name}" in same[0] and key.removeprefix(PREFIX) in same[0]
    assert any(
        m.startswith(f"{renamed.removeprefix(PREFIX)}: the digest in its name") for m in messages
    ), messages


@pytest.mark.parametrize("mode", MODES)
def test_one_changed_byte_in_one_object_is_modified(export: Export, mode: str) -> None:
    key, i, lines = export.locate(TARGET)
    assert b"User:alice" in lines[i]
    lines[i] = lines[i].replace(b"User:alice", b"User:blice", 1)
    export.put(key, lines)
    report = export.verify(mode)
    assert _kinds(report) == ["modified"], _show(report)
    found = report.findings[0]
    assert found.sequence_from is not None and found.sequence_to is not None
    if mode == "public_key":
        # Narrowed down to the events between the two checkpoints around it.
        assert found.sequence_from <= TARGET <= found.sequence_to
        assert found.sequence_to - found.sequence_from < 100
    else:
        assert (found.sequence_from, found.sequence_to) == (TARGET, TARGET)
        assert found.segment == key.removeprefix(PREFIX)  # the HMAC names the object


@pytest.mark.parametrize("mode", MODES)
def test_a_deleted_event_is_missing(export: Export, mode: str) -> None:
    key, i, lines = export.locate(TARGET)
    del lines[i]
    export.put(key, lines)
    report = export.verify(mode)
    assert _kinds(report) == ["missing"], _show(report)
    assert (report.findings[0].sequence_from, report.findings[0].sequence_to) == (TARGET, TARGET)


@pytest.mark.parametrize("mode", MODES)
def test_a_forged_event_is_inserted(export: Export, mode: str) -> None:
    key, i, lines = export.locate(TARGET)
    forged = re.sub(
        rb'"event_id":"evt_[0-9A-Z]+"', b'"event_id":"evt_FORGED0000000000000000000000"', lines[i]
    )
    assert forged != lines[i]
    lines.insert(i + 1, forged)
    export.put(key, lines)
    report = export.verify(mode)
    assert _kinds(report) == ["inserted"], _show(report)
    assert (report.findings[0].sequence_from, report.findings[0].sequence_to) == (TARGET, TARGET)


@pytest.mark.parametrize("mode", MODES)
def test_two_swapped_events_are_reordered(export: Export, mode: str) -> None:
    key, i, lines = export.locate(TARGET)
    lines[i], lines[i + 1] = lines[i + 1], lines[i]
    export.put(key, lines)
    report = export.verify(mode)
    assert _kinds(report) == ["reordered"], _show(report)
    found = report.findings[0]
    assert (found.sequence_from, found.sequence_to) == (TARGET, TARGET + 1)


@pytest.mark.parametrize("mode", MODES)
def test_a_deleted_last_object_is_truncated(export: Export, mode: str) -> None:
    last = export.data_keys()[-1]
    low, _ = _range(last)
    export.s3.delete_object(Bucket=BUCKET, Key=last)
    report = export.verify(mode)
    assert _kinds(report) == ["truncated"], _show(report)
    found = report.findings[0]
    assert (found.sequence_from, found.sequence_to) == (low, EVENTS - 1)


def test_a_deleted_last_object_with_its_checkpoints_shows_once_the_heartbeat_is_overdue(
    export: Export,
) -> None:
    last = export.data_keys()[-1]
    low, _ = _range(last)
    export.s3.delete_object(Bucket=BUCKET, Key=last)
    vouched = 0  # the events the checkpoints left still vouch for
    for key in export.checkpoint_keys():
        body = export.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        kept = [ln for ln in body.splitlines(keepends=True) if orjson.loads(ln)["size"] <= low]
        vouched = max([vouched, *(orjson.loads(ln)["size"] for ln in kept)])
        if kept:
            export.s3.put_object(Bucket=BUCKET, Key=key, Body=b"".join(kept))
        else:
            export.s3.delete_object(Bucket=BUCKET, Key=key)
    soon = export.verify()
    assert soon.ok, _show(soon)  # as an export still under way would look
    assert soon.covered.last_checkpoint is not None
    report = export.verify(now=soon.covered.last_checkpoint + timedelta(hours=1))
    assert _kinds(report) == ["truncated"], _show(report)
    # From the last checkpoint left: the last object need not start at a checkpoint
    # (objects end where segments do, and segments roll by size).
    assert report.findings[0].sequence_from == vouched <= low


@pytest.mark.parametrize("mode", [*MODES, "hmac"])
def test_a_deleted_middle_object_is_missing_with_its_range(export: Export, mode: str) -> None:
    middle = export.data_keys()[2]
    low, high = _range(middle)
    export.s3.delete_object(Bucket=BUCKET, Key=middle)
    report = export.verify(mode)
    assert _kinds(report) == ["missing"], _show(report)
    found = report.findings[0]
    assert (found.sequence_from, found.sequence_to) == (low, high)
    assert "object holding them" in found.message and "is gone" in found.message
    if mode != "hmac":
        # Later checkpoints still vouch for the objects after the gap.
        assert report.covered.verified_through == EVENTS - 1


@pytest.mark.parametrize("with_hmac", [False, True])
def test_a_log_signed_with_another_key_is_unknown_key(export: Export, with_hmac: bool) -> None:
    access = AwsAccess.model_validate(export.moto.access())
    report = verify_s3(
        access,
        BUCKET,
        PREFIX,
        verifiers=KeyRing([export.keys.other.verifier]),
        hmac_key=HMAC.encode() if with_hmac else None,
    )
    assert _kinds(report) == ["unknown_key"], _show(report)
    assert export.keys.signer.verifier.key_id_hex in report.findings[0].message
    assert report.checkpoints_checked == 0


def test_a_changed_checkpoint_object_is_a_bad_signature(export: Export) -> None:
    key = export.checkpoint_keys()[1]
    body = export.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    record = orjson.loads(body.splitlines()[0])
    note_lines = record["note"].split("\n")
    root = note_lines[2]  # origin, tree size, root hash (base64), ...
    note_lines[2] = ("B" if root[0] == "A" else "A") + root[1:]
    record["note"] = "\n".join(note_lines)
    rest = body.split(b"\n", 1)[1]
    export.s3.put_object(Bucket=BUCKET, Key=key, Body=orjson.dumps(record) + b"\n" + rest)
    report = export.verify()
    assert "bad_signature" in _kinds(report), _show(report)


# ------------------------------------------------------------------------ since / until


def test_since_and_until_report_the_requested_range_against_the_covered_one(
    export: Export,
) -> None:
    full = export.verify("both")
    assert full.covered.first_event is not None and full.covered.last_event is not None
    # Between the pristine log's two writer runs (1.1 s apart): checkpoint times are
    # whole seconds, so a point in the middle of the events could fall in the same
    # second as the second run's last checkpoint and look later than it.
    _, i, lines = export.locate(EVENTS // 2 - 1)
    end_of_first = datetime.fromisoformat(orjson.loads(lines[i])["timestamp"])
    middle = end_of_first + timedelta(milliseconds=50)
    since = export.verify("both", since=middle)
    assert since.ok, _show(since)
    assert since.requested.start == middle and since.requested.end is None
    assert any("started at event" in n for n in since.notes)
    # The objects before the checkpoint it started from were not read.
    assert since.first_sequence is not None and 0 < since.first_sequence < EVENTS
    assert since.events == EVENTS - since.first_sequence
    assert since.last_sequence == EVENTS - 1
    until = export.verify("both", until=middle)
    assert until.ok, _show(until)
    assert until.requested.end == middle
    assert 0 < until.events < EVENTS
    assert until.covered.last_checkpoint is not None and until.covered.last_checkpoint >= middle


# -------------------------------------------------------------------- checkpoints shipped


def test_heartbeat_checkpoints_follow_when_the_destination_is_idle(
    export: Export, keys: Keys
) -> None:
    before = export.checkpoint_keys()
    # The writer starts and stops again without events: two checkpoints of the same size.
    with kaudit.open(export.config):
        pass
    runner = drain(export.config)
    assert runner.metrics.sent == 0
    after = export.checkpoint_keys()
    assert len(after) == len(before) + 1
    (new,) = set(after) - set(before)
    body = export.s3.get_object(Bucket=BUCKET, Key=new)["Body"].read()
    assert [orjson.loads(ln)["size"] for ln in body.splitlines()] == [EVENTS, EVENTS]
    report = export.verify()
    assert report.ok, _show(report)
    assert report.covered.last_checkpoint is not None


def test_a_destination_exporting_another_format_uploads_no_checkpoints(
    pristine: Path, keys: Keys, moto: MotoServer, tmp_path: Path
) -> None:
    shutil.copytree(pristine, tmp_path / "data")
    settings = _settings(tmp_path / "data", keys.signer.private, moto)
    settings["audit"]["destinations"][0]["format"] = "cloudevents"
    moto.client("s3").create_bucket(Bucket=BUCKET)
    drain(Config.model_validate(settings))
    keys_found = [
        item["Key"] for item in moto.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]
    ]
    assert keys_found and not [k for k in keys_found if "checkpoints/" in k]


# ------------------------------------------------------------------------------ the CLI


def _cli(args: list[str], **env: str | None) -> Any:
    return CliRunner().invoke(main, ["verify", *args], env=env)


def test_cli_with_the_config_file_exits_0_and_1(export: Export) -> None:
    pub = str(export.keys.signer.public)
    source = f"s3://{BUCKET}/{PREFIX}"
    ok = _cli([source, "--public-key", pub, "-c", str(export.config_file)])
    assert ok.exit_code == 0, ok.output
    assert "INTACT" in ok.output and f"{EVENTS:,} events" in ok.output
    export.s3.delete_object(Bucket=BUCKET, Key=export.data_keys()[-1])
    bad = _cli([source, "--public-key", pub, "-c", str(export.config_file), "--json"])
    assert bad.exit_code == 1, bad.output
    body = orjson.loads(bad.output)
    assert body["ok"] is False
    assert [f["kind"] for f in body["findings"]] == ["truncated"]
    assert body["requested"] == {"start": None, "end": None}


def test_cli_with_endpoint_url_and_environment_credentials(export: Export) -> None:
    creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    args = [f"s3://{BUCKET}/{PREFIX}", "--hmac-key-env", HMAC_ENV, "--json"]
    by_option = _cli([*args, "--endpoint-url", export.moto.url], **creds)
    assert by_option.exit_code == 0, by_option.output
    assert orjson.loads(by_option.output)["events"] == EVENTS
    by_env = _cli(args, AWS_ENDPOINT_URL=export.moto.url, **creds)
    assert by_env.exit_code == 0, by_env.output


def test_cli_errors_reaching_the_bucket_exit_2_with_a_clear_message(export: Export) -> None:
    pub = str(export.keys.signer.public)
    creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    url = ["--endpoint-url", export.moto.url]
    missing = _cli(["s3://no-such-bucket/x", "--public-key", pub, *url], **creds)
    assert missing.exit_code == 2, missing.output
    assert "NoSuchBucket" in missing.output
    empty = _cli([f"s3://{BUCKET}/nothing-here/", "--public-key", pub, *url], **creds)
    assert empty.exit_code == 2 and "holds no objects" in empty.output
    no_creds = _cli(
        [f"s3://{BUCKET}/{PREFIX}", "--public-key", pub, *url],
        AWS_ACCESS_KEY_ID=None,
        AWS_SECRET_ACCESS_KEY=None,
        AWS_SESSION_TOKEN=None,
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
        AWS_CONFIG_FILE="/nonexistent",
        AWS_EC2_METADATA_DISABLED="true",
    )
    assert no_creds.exit_code == 2, no_creds.output
    assert "no AWS credentials" in no_creds.output
    other = _cli([f"s3://{BUCKET}/{PREFIX}", "--public-key", pub, "-c", str(export.config_file)])
    assert other.exit_code == 0
    wrong = _cli(["s3://another-bucket/", "--public-key", pub, "-c", str(export.config_file)])
    assert wrong.exit_code == 2 and "no s3 destination for bucket another-bucket" in wrong.output


def test_verify_s3_needs_a_key(export: Export) -> None:
    access = AwsAccess.model_validate(export.moto.access())
    with pytest.raises(VerifyUsageError, match="nothing to verify with"):
        verify_s3(access, BUCKET, PREFIX, verifiers=None)
