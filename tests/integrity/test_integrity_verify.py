"""`verify_log` / `verify_jsonl` on real logs written by kaudit, untouched and tampered.

The log is written through `kaudit.open` with the HMAC chain and Merkle checkpoints on
(1 MB segments, a checkpoint every 200 events), then its files are edited by hand as an
attacker with write access would. Each tampering is verified with the public key only,
the HMAC key only, and both, and must be reported with the right kind and sequence
numbers.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import kaudit_tamper as tamper
import orjson
import pytest
from kaudit_sealed import Keys, emit_topics, sealed_audit, signer_and_other

import kaudit
from kaudit.config import Config
from kaudit.errors import KauditError
from kaudit.integrity.keys import KeyRing
from kaudit.integrity.verify import (
    FindingKind,
    VerifyReport,
    VerifyUsageError,
    verify_jsonl,
    verify_log,
)
from kaudit.log.segments import list_segments

HMAC_ENV = "KAUDIT_TEST_VERIFY_HMAC"
HMAC = "verify-test-hmac-key-0123456789ab"
EVENTS = 3000
TARGET = 1234  # an event in the middle of the second segment
MODES = ["public_key", "hmac", "both"]


def _config(
    data_dir: Path, key_file: Path, *, every_seconds: float = 60, anchor: Path | None = None
) -> Config:
    audit = sealed_audit(
        key_file, HMAC_ENV, every_events=200, every_seconds=every_seconds, anchor=anchor
    )
    return Config.model_validate({"data_dir": str(data_dir), "audit": audit})


def _emit(session: kaudit.AuditSession, start: int, count: int) -> None:
    emit_topics(session, start, count, pad=600)  # checkpoints land every 200 events


@dataclass(frozen=True)
class Pristine:
    data: Path
    keys: Keys


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return signer_and_other(tmp_path_factory.mktemp("keys"), "kaudit-test")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Pristine:
    data = tmp_path_factory.mktemp("pristine") / "data"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(HMAC_ENV, HMAC)
        with kaudit.open(_config(data, keys.signer.private)) as session:
            _emit(session, 0, EVENTS)
    return Pristine(data, keys)


@pytest.fixture
def log(pristine: Pristine, tmp_path: Path) -> Path:
    """A fresh copy of the pristine log to tamper with."""
    shutil.copytree(pristine.data, tmp_path / "data")
    return tmp_path / "data" / "log"


@pytest.fixture(autouse=True)
def _hmac_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HMAC_ENV, HMAC)


def _verify(log_dir: Path, keys: Keys, mode: str, **kw: object) -> VerifyReport:
    ring = KeyRing([keys.signer.verifier]) if mode in ("public_key", "both") else None
    hmac_key = HMAC.encode() if mode in ("hmac", "both") else None
    return verify_log(log_dir, verifiers=ring, hmac_key=hmac_key, **kw)  # type: ignore[arg-type]


def _kinds(report: VerifyReport) -> list[str]:
    return [str(f.kind) for f in report.findings]


def _show(report: VerifyReport) -> str:
    return "\n".join(f"{f.kind}: {f.message}" for f in report.findings) or "no findings"


# ----------------------------------------------------------------------------- clean logs


@pytest.mark.parametrize("mode", MODES)
def test_an_untouched_log_over_several_segments_verifies_clean(
    pristine: Pristine, mode: str
) -> None:
    log_dir = pristine.data / "log"
    assert len(list_segments(log_dir)) >= 3
    seen: list[int] = []
    report = _verify(log_dir, pristine.keys, mode, progress=seen.append)
    assert report.ok, _show(report)
    assert (report.events, report.first_sequence, report.last_sequence) == (0 + EVENTS, 0, 2999)
    assert seen and seen[-1] == EVENTS
    assert report.covered.first_event is not None and report.covered.last_event is not None
    assert report.covered.first_event <= report.covered.last_event
    if mode == "hmac":
        assert report.checks == ("hmac_chain", "sequence")
        assert report.checkpoints_checked == 0
        assert any("cannot be seen without the checkpoints" in n for n in report.notes)
    else:
        assert "checkpoints" in report.checks
        assert report.checkpoints_checked >= EVENTS // 200
        assert report.covered.verified_through == EVENTS - 1
        assert report.covered.last_checkpoint is not None


def test_the_report_serialises_to_json(pristine: Pristine) -> None:
    report = _verify(pristine.data / "log", pristine.keys, "both")
    data = orjson.loads(orjson.dumps(report.to_dict()))
    assert data["ok"] is True and data["events"] == EVENTS
    assert data["covered"]["verified_through"] == EVENTS - 1
    assert data["requested"] == {"start": None, "end": None}


def test_neither_key_is_a_usage_error(pristine: Pristine) -> None:
    with pytest.raises(VerifyUsageError, match="nothing to verify with") as info:
        verify_log(pristine.data / "log", verifiers=None)
    assert isinstance(info.value, KauditError)
    with pytest.raises(VerifyUsageError):
        verify_log(pristine.data / "log", verifiers=KeyRing())
    with pytest.raises(VerifyUsageError, match="no such log directory"):
        verify_log(pristine.data / "nowhere", verifiers=None, hmac_key=b"k" * 32)


# -------------------------------------------------------------------------------- tamper


@pytest.mark.parametrize("mode", MODES)
def test_one_changed_byte_is_modified(log: Path, keys: Keys, mode: str) -> None:
    tamper.change_byte(log, TARGET)
    report = _verify(log, keys, mode)
    assert not report.ok
    assert _kinds(report) == ["modified"], _show(report)
    found = report.findings[0]
    assert found.segment is not None
    if mode == "public_key":
        # Narrowed down to the events between the two checkpoints around it.
        assert found.sequence_from is not None and found.sequence_to is not None
        assert found.sequence_from <= TARGET <= found.sequence_to
        sizes = tamper.checkpoint_sizes(log)
        assert found.sequence_from in sizes and found.sequence_to + 1 in sizes
        assert found.sequence_to - found.sequence_from < 300
    else:
        assert (found.sequence_from, found.sequence_to) == (TARGET, TARGET)
        assert "HMAC" in found.message
        assert f"byte {tamper.offset_of(log, TARGET)})" in found.message


@pytest.mark.parametrize("mode", MODES)
def test_a_deleted_event_is_missing(log: Path, keys: Keys, mode: str) -> None:
    tamper.delete_event(log, TARGET)
    report = _verify(log, keys, mode)
    assert _kinds(report) == ["missing"], _show(report)
    assert (report.findings[0].sequence_from, report.findings[0].sequence_to) == (TARGET, TARGET)
    if mode != "hmac":
        # The checkpoint after the gap cannot be compared; the report says which events.
        assert any("could not be compared with a checkpoint" in n for n in report.notes)
        assert report.covered.verified_through == EVENTS - 1


@pytest.mark.parametrize("before", [False, True], ids=["after", "before"])
@pytest.mark.parametrize("mode", MODES)
def test_a_forged_copy_with_a_new_event_id_is_inserted(
    log: Path, keys: Keys, mode: str, before: bool
) -> None:
    tamper.insert_forged_copy(log, TARGET, before=before)
    report = _verify(log, keys, mode)
    assert _kinds(report) == ["inserted"], _show(report)
    found = report.findings[0]
    assert (found.sequence_from, found.sequence_to) == (TARGET, TARGET)


@pytest.mark.parametrize("mode", MODES)
def test_two_swapped_events_are_reordered(log: Path, keys: Keys, mode: str) -> None:
    tamper.swap(log, TARGET)
    report = _verify(log, keys, mode)
    assert _kinds(report) == ["reordered"], _show(report)
    assert (report.findings[0].sequence_from, report.findings[0].sequence_to) == (
        TARGET,
        TARGET + 1,
    )


@pytest.mark.parametrize("mode", ["public_key", "both"])
def test_cut_off_last_events_are_truncated(log: Path, keys: Keys, mode: str) -> None:
    first_cut = tamper.cut_tail(log, 10)
    report = _verify(log, keys, mode)
    assert _kinds(report) == ["truncated"], _show(report)
    assert (report.findings[0].sequence_from, report.findings[0].sequence_to) == (
        first_cut,
        EVENTS - 1,
    )


def test_the_hmac_chain_alone_cannot_see_a_cut_off_tail_and_says_so(log: Path, keys: Keys) -> None:
    tamper.cut_tail(log, 10)
    report = _verify(log, keys, "hmac")
    assert report.ok
    assert any("events cut off the end" in n for n in report.notes)


@pytest.mark.parametrize("mode", MODES)
def test_a_deleted_segment_is_missing_with_its_range(log: Path, keys: Keys, mode: str) -> None:
    name, first, last = tamper.delete_segment(log, 1)
    report = _verify(log, keys, mode)
    assert _kinds(report) == ["missing"], _show(report)
    found = report.findings[0]
    assert (found.sequence_from, found.sequence_to, found.segment) == (first, last, name)
    assert "is gone" in found.message
    # Later checkpoints still vouch for the segments after the gap.
    if mode != "hmac":
        assert report.covered.verified_through == EVENTS - 1


def test_a_deleted_last_segment_shows_once_the_heartbeat_is_overdue(log: Path, keys: Keys) -> None:
    _, first, _ = tamper.delete_segment(log, -1)
    soon = _verify(log, keys, "public_key")
    assert soon.ok, _show(soon)  # as a writer still running would look
    assert soon.covered.last_checkpoint is not None
    report = _verify(log, keys, "public_key", now=soon.covered.last_checkpoint + timedelta(hours=1))
    assert _kinds(report) == ["truncated"], _show(report)
    assert report.findings[0].sequence_from is not None
    assert report.findings[0].sequence_from <= first


def _forge_line(log: Path) -> None:
    tamper.insert_line(log, TARGET, b'{"not":"an event"}')


def _forge_far_ahead(log: Path) -> None:
    path, i = tamper.locate(log, TARGET)
    copy = (
        path.read_bytes()
        .splitlines()[i]
        .replace(b'"sequence_number":%d,' % TARGET, b'"sequence_number":999999,')
    )
    tamper.insert_line(log, TARGET, copy)


@pytest.mark.parametrize(
    ("tampering", "expected"),
    [
        (lambda log: tamper.renumber(log, TARGET, TARGET + 5), [("modified", TARGET, TARGET)]),
        (_forge_line, [("inserted", TARGET - 1, TARGET)]),
        (_forge_far_ahead, [("inserted", 999999, 999999)]),
        (lambda log: tamper.swap(log, 999), [("reordered", 999, 1000)]),
        (lambda log: tamper.delete_event(log, 1000), [("missing", 1000, 1000)]),
        (
            lambda log: (tamper.delete_event(log, 500), tamper.swap(log, 2500)),
            [("missing", 500, 500), ("reordered", 2500, 2501)],
        ),
    ],
    ids=[
        "sequence-number-changed",
        "line-that-is-no-event",
        "forged-sequence-far-ahead",
        "swap-across-checkpoint",
        "deleted-at-checkpoint",
        "two-at-once",
    ],
)
@pytest.mark.parametrize("mode", MODES)
def test_more_tampering_is_classified(
    log: Path, keys: Keys, mode: str, tampering: object, expected: list[tuple[str, int, int]]
) -> None:
    assert 1000 in tamper.checkpoint_sizes(log)  # the boundary cases above sit on one
    tampering(log)  # type: ignore[operator]
    report = _verify(log, keys, mode)
    got = [(str(f.kind), f.sequence_from, f.sequence_to) for f in report.findings]
    assert got == expected, _show(report)


@pytest.mark.parametrize("with_hmac", [False, True])
def test_a_log_signed_with_another_key_is_unknown_key(
    pristine: Pristine, keys: Keys, with_hmac: bool
) -> None:
    report = verify_log(
        pristine.data / "log",
        verifiers=KeyRing([keys.other.verifier]),
        hmac_key=HMAC.encode() if with_hmac else None,
    )
    assert not report.ok
    assert _kinds(report) == ["unknown_key"], _show(report)
    assert keys.signer.verifier.key_id_hex in report.findings[0].message
    assert report.checkpoints_checked == 0


def test_rotation_keeps_old_public_keys_usable(pristine: Pristine, keys: Keys) -> None:
    ring = KeyRing([keys.other.verifier, keys.signer.verifier])
    assert verify_log(pristine.data / "log", verifiers=ring).ok


def test_a_changed_checkpoint_note_is_a_bad_signature(log: Path, keys: Keys) -> None:
    size = tamper.alter_checkpoint_note(log)
    report = _verify(log, keys, "public_key")
    assert "bad_signature" in _kinds(report), _show(report)
    bad = report.by_kind(FindingKind.BAD_SIGNATURE)[0]
    assert bad.sequence_to == size - 1


def test_a_wrong_hmac_key_is_one_bad_signature_finding(pristine: Pristine) -> None:
    report = verify_log(pristine.data / "log", verifiers=None, hmac_key=b"w" * 32)
    assert _kinds(report) == ["bad_signature"], _show(report)
    assert "wrong" in report.findings[0].message


def test_checkpoints_that_stop_before_the_heartbeat_promise_are_truncated(
    log: Path, keys: Keys
) -> None:
    """The last checkpoints (the closing one among them) and the events after the one
    before are cut: within its heartbeat that looks like a writer still running, after
    it like a log cut off."""
    tamper.drop_checkpoints_from(log, EVENTS)
    sizes = tamper.checkpoint_sizes(log)
    tamper.cut_tail(log, EVENTS - sizes[-1])
    soon = _verify(log, keys, "public_key")
    assert soon.ok, _show(soon)
    assert soon.covered.last_checkpoint is not None
    later = soon.covered.last_checkpoint + timedelta(minutes=5)
    report = _verify(log, keys, "public_key", now=later)
    assert _kinds(report) == ["truncated"], _show(report)
    assert "checkpoints stopped at" in report.findings[0].message
    assert "heartbeat promised one by" in report.findings[0].message
    assert report.findings[0].sequence_from == sizes[-1]


def test_an_external_anchor_shows_a_log_cut_back_with_its_checkpoints(
    tmp_path: Path, keys: Keys
) -> None:
    """Cut the tail and every checkpoint beside the log that covered it: the log alone
    looks like a writer still running; the anchor kept elsewhere shows the cut."""
    data, anchor = tmp_path / "data", tmp_path / "worm" / "anchor.jsonl"
    with kaudit.open(_config(data, keys.signer.private, anchor=anchor)) as session:
        _emit(session, 0, 700)
    log_dir = data / "log"
    ring = KeyRing([keys.signer.verifier])
    assert verify_log(log_dir, verifiers=ring, anchors=[anchor]).ok
    keep = tamper.checkpoint_sizes(log_dir)[-3]
    tamper.drop_checkpoints_from(log_dir, keep + 1)
    tamper.cut_tail(log_dir, 700 - keep)
    assert verify_log(log_dir, verifiers=ring).ok  # undetectable from the log alone
    report = verify_log(log_dir, verifiers=ring, anchors=[anchor])
    assert _kinds(report) == ["truncated"], _show(report)
    assert (report.findings[0].sequence_from, report.findings[0].sequence_to) == (keep, 699)
    with pytest.raises(VerifyUsageError, match="anchor"):
        verify_log(log_dir, verifiers=ring, anchors=[tmp_path / "nope.jsonl"])


# ------------------------------------------------------------------ restarts, kill -9


def test_restarts_and_rolls_verify_clean_and_since_until_bound_the_range(
    tmp_path: Path, keys: Keys
) -> None:
    data = tmp_path / "data"
    per_run = 900
    for run in range(3):
        if run:
            time.sleep(1.1)  # checkpoint times are whole seconds: keep the runs apart
        with kaudit.open(_config(data, keys.signer.private)) as session:
            _emit(session, run * per_run, per_run)
    log_dir = data / "log"
    assert len(list_segments(log_dir)) >= 3
    for mode in MODES:
        report = _verify(log_dir, keys, mode)
        assert report.ok, (mode, _show(report))
        assert report.events == 3 * per_run
        assert not any("stopped without closing" in n for n in report.notes)
    full = _verify(log_dir, keys, "both")
    assert full.covered.first_event is not None and full.covered.last_event is not None
    middle = full.covered.first_event + (full.covered.last_event - full.covered.first_event) / 2
    until = _verify(log_dir, keys, "both", until=middle)
    assert until.ok, _show(until)
    assert 0 < until.events < 3 * per_run
    assert until.requested.end == middle
    assert until.covered.last_checkpoint is not None and until.covered.last_checkpoint >= middle
    since = _verify(log_dir, keys, "both", since=middle)
    assert since.ok, _show(since)
    assert 0 < since.events < 3 * per_run
    assert since.first_sequence is not None and since.first_sequence > 0
    assert since.last_sequence == 3 * per_run - 1


_WRITER = textwrap.dedent(
    """
    import sys, time
    import kaudit
    from kaudit.config import Config

    config = Config.model_validate({
        "data_dir": sys.argv[1],
        "audit": {
            "log": {"segment_max_mb": 1},
            "integrity": {
                "signing": {"enabled": True, "key_env_var": sys.argv[3]},
                "chain": {"enabled": True},
                "checkpoints": {"enabled": True, "key_file": sys.argv[2], "every_events": 200},
            },
        },
    })
    with kaudit.open(config) as session:
        session.flush()
        print("ready", flush=True)
        i = 0
        while True:
            kaudit.emit("records.produced", actor="User:crash", resource="topic:orders",
                        details={"i": i, "pad": "p" * 300})
            i += 1
            if i % 100 == 0:
                time.sleep(0.002)
    """
)


def _run_and_kill(data: Path, key_file: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(data), str(key_file), HMAC_ENV],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline().strip()
        assert line == "ready", child.stderr.read() if child.stderr else ""
        time.sleep(0.6)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL


def test_kill_9_mid_stream_then_reopen_verifies_clean(tmp_path: Path, keys: Keys) -> None:
    data = tmp_path / "data"
    log_dir = data / "log"
    _run_and_kill(data, keys.signer.private)
    # A write cut short (as by power loss): half an event line at the tail. The kill may
    # have come right after a roll, leaving the last segment empty.
    whole = list(_all_lines(log_dir))[-1]
    with open(tamper.segments(log_dir)[-1], "ab") as f:
        f.write(whole[: len(whole) // 2])

    # Killed and not restarted: fine within the heartbeat, cut off after it.
    now = _verify(log_dir, keys, "public_key")
    assert now.ok, _show(now)
    assert any("partial line" in n for n in now.notes)
    assert now.covered.last_checkpoint is not None
    stale = _verify(
        log_dir, keys, "public_key", now=now.covered.last_checkpoint + timedelta(hours=1)
    )
    assert _kinds(stale) == ["truncated"], _show(stale)

    # Reopening cuts the torn tail, says so in the log, and continues chain and tree.
    with kaudit.open(_config(data, keys.signer.private)) as session:
        _emit(session, 0, 120)
    degraded = [
        orjson.loads(line)
        for line in _all_lines(log_dir)
        if b'"event_type":"audit.degraded"' in line
    ]
    assert degraded and degraded[0]["details"]["torn_lines_cut"] >= 1
    for mode in MODES:
        report = _verify(log_dir, keys, mode)
        assert report.ok, (mode, _show(report))
        assert report.events > 120


def _all_lines(log_dir: Path) -> Iterator[bytes]:
    for path in tamper.segments(log_dir):
        yield from path.read_bytes().splitlines()


# -------------------------------------------------------------------------- JSON Lines


def _export(log_dir: Path, out: Path) -> list[bytes]:
    lines = [line + b"\n" for line in _all_lines(log_dir)]
    out.write_bytes(b"".join(lines))
    return lines


def test_a_jsonl_export_is_checked_by_chain_and_sequence(
    pristine: Pristine, tmp_path: Path
) -> None:
    out = tmp_path / "audit.log"
    lines = _export(pristine.data / "log", out)
    key = HMAC.encode()
    report = verify_jsonl(out, hmac_key=key)
    assert report.ok, _show(report)
    assert report.checks == ("hmac_chain", "sequence")
    assert any("carries no checkpoints" in n for n in report.notes)

    # At-least-once delivery repeats events: a repeat is a note, not a finding.
    out.write_bytes(b"".join([*lines[:101], lines[100], *lines[101:]]))
    repeated = verify_jsonl(out, hmac_key=key)
    assert repeated.ok and any("repeat" in n for n in repeated.notes)

    changed = [*lines]
    changed[TARGET] = changed[TARGET].replace(b"User:alice", b"User:blice")
    out.write_bytes(b"".join(changed))
    report = verify_jsonl(out, hmac_key=key)
    assert _kinds(report) == ["modified"], _show(report)
    assert report.findings[0].sequence_from == TARGET == report.findings[0].sequence_to

    out.write_bytes(b"".join(lines[:TARGET] + lines[TARGET + 1 :]))
    for hmac_key in (key, None):
        ring = None if hmac_key else KeyRing([pristine.keys.signer.verifier])
        report = verify_jsonl(out, verifiers=ring, hmac_key=hmac_key)
        assert _kinds(report) == ["missing"], _show(report)
    assert report.checks == ("sequence",)
    assert any("only the sequence numbers" in n for n in report.notes)


def test_a_jsonl_export_may_start_mid_stream(pristine: Pristine, tmp_path: Path) -> None:
    out = tmp_path / "audit.log"
    lines = _export(pristine.data / "log", out)
    out.write_bytes(b"".join(lines[500:]))
    report = verify_jsonl(out, hmac_key=HMAC.encode())
    assert report.ok, _show(report)
    assert report.first_sequence == 500


def test_verify_jsonl_needs_a_key_and_a_file(tmp_path: Path) -> None:
    with pytest.raises(VerifyUsageError):
        verify_jsonl(tmp_path / "x.jsonl")
    with pytest.raises(VerifyUsageError, match="no such file"):
        verify_jsonl(tmp_path / "x.jsonl", hmac_key=b"k" * 32)


def test_naive_times_are_a_usage_error(pristine: Pristine) -> None:
    with pytest.raises(VerifyUsageError, match="timezone-aware"):
        verify_log(
            pristine.data / "log", verifiers=None, hmac_key=b"k" * 32, since=datetime(2026, 1, 1)
        )
    aware = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(VerifyUsageError, match="after until"):
        verify_log(
            pristine.data / "log",
            verifiers=None,
            hmac_key=b"k" * 32,
            since=aware,
            until=aware - timedelta(days=1),
        )
