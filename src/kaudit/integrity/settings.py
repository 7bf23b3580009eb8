"""The integrity settings a local log directory was written with, kept beside its
segments in `integrity.json`, so that a log never changes them silently.

A writer with other settings (a gateway started without `-c` next to a signed log, say)
would append unsigned events and `kaudit verify` would then call the log tampered. The
first writer of a log records its settings; each later writer compares its own and
refuses, naming both, unless they match. A change is made deliberately: a new data
directory, or `kaudit rotate-integrity`, which records the change in the file (when,
from what, to what) and then lets writers with the new settings append.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from kaudit.config.model import Integrity
from kaudit.errors import LogError
from kaudit.files import open_private

FILE_NAME = "integrity.json"


class IntegrityMismatchError(LogError):
    """The configuration's integrity settings are not those the log was written with."""


def settings_of(integrity: Integrity) -> dict[str, Any]:
    """What a log's verification depends on: signing and its algorithm, the chain, and
    whether checkpoints are kept (the checkpoint key may rotate: verify takes several)."""
    return {
        "signing": integrity.signing.algorithm if integrity.signing.enabled else None,
        "chain": integrity.chain.enabled,
        "checkpoints": integrity.checkpoints.enabled,
    }


def describe(settings: dict[str, Any]) -> str:
    signing = settings.get("signing")
    return (
        f"signing {signing or 'off'}, chain {'on' if settings.get('chain') else 'off'}, "
        f"checkpoints {'on' if settings.get('checkpoints') else 'off'}"
    )


def _read(log_dir: Path) -> dict[str, Any] | None:
    try:
        record: dict[str, Any] = orjson.loads((log_dir / FILE_NAME).read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError) as exc:
        raise LogError(
            f"{log_dir / FILE_NAME}: cannot read the log's integrity settings: {exc}"
        ) from exc
    return record


def _write(log_dir: Path, record: dict[str, Any]) -> None:
    path = log_dir / FILE_NAME
    temporary = path.with_name(path.name + ".tmp")
    with open_private(temporary, "wb") as f:
        f.write(orjson.dumps(record, option=orjson.OPT_INDENT_2) + b"\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def check_log_settings(log_dir: Path, integrity: Integrity, *, data_dir: Path) -> None:
    """Record the settings of a log's first writer; refuse a writer whose settings
    differ from those recorded (IntegrityMismatchError naming both and how to proceed)."""
    wanted = settings_of(integrity)
    record = _read(log_dir)
    if record is None:
        _write(log_dir, {"settings": wanted, "since": _now(), "changes": []})
        return
    recorded = record.get("settings") or {}
    if recorded == wanted:
        return
    raise IntegrityMismatchError(
        f"the audit log in {log_dir} was written with {describe(recorded)}; this "
        f"configuration asks for {describe(wanted)}. Appending would make the log look "
        f"tampered. Use the configuration it was written with (-c), or a new data "
        f"directory (data_dir, not {data_dir}), or change it on purpose, recorded in "
        f"{log_dir / FILE_NAME}: kaudit rotate-integrity -c CONFIG"
    )


def rotate(log_dir: Path, integrity: Integrity, *, next_sequence: int) -> dict[str, Any]:
    """Record that the log's writers use `integrity` from `next_sequence` on; the
    change as recorded (from, to, at which sequence, when)."""
    record = _read(log_dir) or {"settings": None, "since": None, "changes": []}
    change = {
        "from": record.get("settings"),
        "to": settings_of(integrity),
        "from_sequence": next_sequence,
        "at": _now(),
    }
    record["changes"] = [*record.get("changes", []), change]
    record["settings"] = change["to"]
    record["since"] = change["at"]
    log_dir.mkdir(parents=True, exist_ok=True)
    _write(log_dir, record)
    return change


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def recorded_unsigned(log_dir: Path) -> list[tuple[int, int | None, str]]:
    """The sequence ranges (first, last or None for open) that a recorded change
    (`rotate`) says were written without HMAC signatures, each with the change in
    words; empty when the log's settings never changed."""
    record = _read(log_dir)
    changes = (record or {}).get("changes") or []
    if not changes:
        return []
    spans: list[tuple[int, int | None, str]] = []
    start, settings = 0, changes[0].get("from") or {}
    for i, change in enumerate([*changes, None]):
        end = None if change is None else int(change["from_sequence"]) - 1
        if not settings.get("signing") and (end is None or end >= start):
            if change is not None:
                why = (
                    f"signing off until the change at sequence {change['from_sequence']}, "
                    f"{change.get('at')}"
                )
            else:
                why = f"signing off from the change at sequence {start}, {changes[i - 1].get('at')}"
            spans.append((start, end, why))
        if change is not None:
            start, settings = int(change["from_sequence"]), change.get("to") or {}
    return spans
