"""The monthly compliance report: its figures against a plain count of a known generated
set, the same from the index and from a scan, every format, and the integrity status
(intact, tampered, not configured)."""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from click.testing import CliRunner
from kaudit_store_data import export, index_path, log_events, make_config, record_traffic

from kaudit.cli import main
from kaudit.config import Config
from kaudit.errors import SearchError
from kaudit.integrity.keys import generate
from kaudit.reports.compliance import (
    CHANGE_TYPES,
    ComplianceReport,
    IntegrityStatus,
    build_report,
    integrity_status,
    previous_month,
    render,
)
from kaudit.store.query import IndexSearch, ScanSearch
from kaudit.timeparse import parse_period

OCT = (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))
NOT_CHECKED = IntegrityStatus("not configured", "test")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, list[dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("report")
    keys = generate(tmp / "signing", "kaudit/report-test")
    config = make_config(
        tmp,
        integrity={
            "checkpoints": {"enabled": True, "key_file": str(keys.private), "every_events": 200}
        },
    )
    # Before, inside and after October, so the period's edges are exercised.
    record_traffic(config, 200, datetime(2026, 9, 25, tzinfo=UTC), OCT[0], seed=1)
    record_traffic(config, 2400, OCT[0], OCT[1], seed=2)
    record_traffic(config, 150, OCT[1], datetime(2026, 11, 3, tzinfo=UTC), seed=3)
    export(config)
    events = [
        e for e in log_events(config) if OCT[0] <= datetime.fromisoformat(e["timestamp"]) < OCT[1]
    ]
    assert len(events) == 2400
    return config, events


def report_from_index(config: Config) -> ComplianceReport:
    search = IndexSearch(index_path(config))
    try:
        return build_report(search, "2026-10", integrity=NOT_CHECKED, max_rows=50)
    finally:
        search.close()


def test_the_figures_are_those_of_the_events_of_the_month(
    recorded: tuple[Config, list[dict[str, Any]]],
) -> None:
    config, events = recorded
    r = report_from_index(config)
    assert r.total == 2400
    by_category: dict[str, Counter[str]] = {}
    for e in events:
        by_category.setdefault(e["event_type"].split(".")[0], Counter())[e["action"]["result"]] += 1
    assert {
        row["category"]: {k: row[k] for k in ("success", "failure", "denied")}
        for row in r.by_category
    } == {
        c: {k: counts[k] for k in ("success", "failure", "denied")}
        for c, counts in by_category.items()
    }
    assert dict(r.by_type) == Counter(e["event_type"] for e in events)
    assert dict(r.backup_operations) == Counter(
        e["event_type"] for e in events if e["event_type"].startswith("backup.")
    )
    assert dict(r.restore_operations) == Counter(
        e["event_type"] for e in events if e["event_type"].startswith("restore.")
    )
    denied = [e for e in events if e["action"]["result"] == "denied"]
    assert r.denied_total == len(denied) > 0
    assert dict(r.denied_by_actor) == Counter(e["actor"]["id"] for e in denied)
    assert dict(r.denied_by_resource) == Counter(
        f"{e['resource']['type']}:{e['resource']['id']}" for e in denied
    )
    newest_denied = sorted(denied, key=lambda e: e["timestamp"], reverse=True)[:50]
    assert [d["event_id"] for d in r.denied_events] == [e["event_id"] for e in newest_denied]
    access = next(d for d in r.denied_events if d["event_type"] == "access.denied")
    source = next(e for e in denied if e["event_id"] == access["event_id"])
    assert (access["operation"], access["resource"]) == (
        source["details"]["operation"],
        source["details"]["resource"],
    )
    changes = [e for e in events if e["event_type"] in CHANGE_TYPES]
    assert r.changes_total == len(changes) > 50
    assert len(r.changes) == 50
    assert [c["event_id"] for c in r.changes] == [
        e["event_id"] for e in sorted(changes, key=lambda e: e["timestamp"], reverse=True)[:50]
    ]
    actors = Counter(e["actor"]["id"] for e in events)
    assert [(a["actor"], a["events"]) for a in r.top_actors] == sorted(
        actors.items(), key=lambda kv: (-kv[1], kv[0])
    )[:10]
    days = Counter(e["timestamp"][:10] for e in events)
    assert r.per_day == [(f"2026-10-{d:02d}", days[f"2026-10-{d:02d}"]) for d in range(1, 32)]


def test_a_scan_of_the_log_gives_the_same_report(
    recorded: tuple[Config, list[dict[str, Any]]],
) -> None:
    config, _ = recorded
    from_index = report_from_index(config).to_dict()
    scan = ScanSearch(str(config.log_dir))
    from_scan = build_report(scan, "2026-10", integrity=NOT_CHECKED, max_rows=50).to_dict()
    for r in (from_index, from_scan):
        r.pop("source")
        r.pop("generated_at")
    assert from_scan == from_index


def test_integrity_of_the_period_is_checked_when_configured(
    recorded: tuple[Config, list[dict[str, Any]]], tmp_path: Path
) -> None:
    config, _ = recorded
    status = integrity_status(config, OCT[0])
    assert status.status == "intact", status
    assert status.events_checked >= 2400 and "checkpoints" in status.checks
    plain = make_config(tmp_path)
    assert integrity_status(plain, OCT[0]).status == "not configured"


def test_a_tampered_log_is_reported_as_such(tmp_path: Path) -> None:
    keys = generate(tmp_path / "signing", "kaudit/report-test")
    config = make_config(
        tmp_path,
        integrity={
            "checkpoints": {"enabled": True, "key_file": str(keys.private), "every_events": 50}
        },
    )
    record_traffic(config, 300, OCT[0], OCT[1])
    segment = config.log_dir / "00000000000000000000.jsonl"
    lines = segment.read_bytes().splitlines(keepends=True)
    lines[100] = lines[100].replace(b"User:", b"User:x", 1)
    segment.write_bytes(b"".join(lines))
    status = integrity_status(config, OCT[0])
    assert status.status == "tampered"
    assert any(f.startswith("modified") for f in status.findings)


def test_markdown_and_html_carry_the_figures_and_a_chart(
    recorded: tuple[Config, list[dict[str, Any]]],
) -> None:
    config, _ = recorded
    r = report_from_index(config)
    md = render(r, "md").decode()
    assert md.startswith("# Kafka audit compliance report: 2026-10")
    assert f"- Events: {r.total}" in md and f"- Denied: {r.denied_total}" in md
    assert "## Backup operations" in md and "## Restore operations" in md
    top = r.top_actors[0]
    assert f"| {top['actor']} | {top['events']} |" in md
    html = render(r, "html").decode()
    assert f'<span id="total">{r.total}</span>' in html
    assert html.count("<rect ") == 31
    peak = max(n for _, n in r.per_day)
    assert f"(peak {peak}/day)" in html
    # Values are escaped: details hold quotes and JSON.
    assert '{"bindings"' not in html and "&#34;bindings&#34;" in html


def test_csv_and_json_carry_the_same_counts(
    recorded: tuple[Config, list[dict[str, Any]]],
) -> None:
    config, _ = recorded
    r = report_from_index(config)
    data = orjson.loads(render(r, "json"))
    assert data["total_events"] == r.total and data["period"] == "2026-10"
    assert data["integrity"]["status"] == "not configured"
    rows = list(csv.DictReader(io.StringIO(render(r, "csv").decode())))
    per_day = {row["key"]: int(row["count"]) for row in rows if row["section"] == "events_per_day"}
    assert per_day == {d["day"]: d["count"] for d in data["events_per_day"]}
    denied = {row["key"]: int(row["count"]) for row in rows if row["section"] == "denied_by_actor"}
    assert denied == {d["actor"]: d["count"] for d in data["denied_by_actor"]}


def test_an_empty_month_reports_zeros(recorded: tuple[Config, list[dict[str, Any]]]) -> None:
    config, _ = recorded
    search = IndexSearch(index_path(config))
    try:
        r = build_report(search, "2025-02", integrity=NOT_CHECKED)
    finally:
        search.close()
    assert r.total == 0 and len(r.per_day) == 28 and not r.top_actors
    assert "No access was denied in this period." in render(r, "md").decode()


def test_periods_are_months() -> None:
    assert parse_period("2026-12") == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    with pytest.raises(SearchError, match="YYYY-MM"):
        parse_period("2026-13")
    with pytest.raises(SearchError, match="YYYY-MM"):
        parse_period("November")
    assert previous_month(datetime(2026, 1, 15, tzinfo=UTC)) == "2025-12"
    assert previous_month(datetime(2026, 11, 1, tzinfo=UTC) + timedelta(hours=1)) == "2026-10"


def test_kaudit_report_on_the_command_line(
    recorded: tuple[Config, list[dict[str, Any]]], tmp_path: Path
) -> None:
    config, _ = recorded
    config_file = tmp_path / "k.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {"data_dir": str(config.data_path), "audit": {"destinations": [{"type": "store"}]}}
        )
    )
    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        main,
        [
            "report",
            "-c",
            str(config_file),
            "--period",
            "2026-10",
            "--format",
            "html",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "<svg" in out.read_text()
    assert out.stat().st_mode & 0o137 == 0  # audit data: 0640 or tighter
    as_json = CliRunner().invoke(
        main, ["report", "-c", str(config_file), "--period", "2026-10", "--format", "json"]
    )
    assert orjson.loads(as_json.stdout_bytes)["total_events"] == 2400
    bad = CliRunner().invoke(main, ["report", "-c", str(config_file), "--period", "10/2026"])
    assert bad.exit_code == 2 and "YYYY-MM" in bad.output


def test_a_log_directory_given_as_source_is_the_one_verified(
    recorded: tuple[Config, list[dict[str, Any]]], tmp_path: Path
) -> None:
    config, _ = recorded
    key_file = config.audit.integrity.checkpoints.key_file
    config_file = tmp_path / "k.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "elsewhere"),
                "audit": {"integrity": {"checkpoints": {"enabled": True, "key_file": key_file}}},
            }
        )
    )
    result = CliRunner().invoke(
        main,
        [
            "report",
            str(config.data_path),
            "-c",
            str(config_file),
            "--period",
            "2026-10",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout_bytes)
    assert report["total_events"] == 2400
    assert report["integrity"]["status"] == "intact"
    assert report["integrity"]["detail"].startswith(str(config.log_dir))
