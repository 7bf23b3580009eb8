"""`encoding: parquet`: the s3 and file destinations write Parquet files partitioned by
day, read back with pyarrow (from moto's S3 API server in its own process, and from a
folder) row for row against the log, and verified against the checkpoints beside them.

The log is sealed (HMAC chain, checkpoints) and holds `kaudit generate`'s traffic spread
over three days, plus events whose free-form members take the slow path (RBAC policies,
details that name "details", a duration given as an integer, a timestamp with an offset).
"""

from __future__ import annotations

import io
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pa_fs
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from kaudit_destination_helpers import drain
from kaudit_destination_servers import MotoServer
from kaudit_sealed import Keys, sealed_audit, signer_and_other

import kaudit
from kaudit.cli import main
from kaudit.config import Config
from kaudit.config.model import AwsAccess
from kaudit.errors import ConfigError, EventDecodeError, ExporterError
from kaudit.events.model import AuthCheck, Authorization
from kaudit.exporters.export_verify import verify_s3
from kaudit.exporters.parquet import PARQUET_KEY, ParquetExporter
from kaudit.exporters.parquet_format import COLUMNS, lines_table
from kaudit.generate import generate
from kaudit.integrity.keys import KeyRing
from kaudit.log.segments import LogReader
from kaudit.store.export_search import ExportSearch
from kaudit.store.query import GROUP_KEYS, Filter, IndexSearch, open_search
from kaudit.timeparse import parse_iso

HMAC_ENV = "KAUDIT_TEST_PARQUET_HMAC"
HMAC = "parquet-test-hmac-key-0123456789abcdef"
GENERATED = 1200
BUCKET = "audit-parquet"
PREFIX = "kaudit/"


@pytest.fixture(autouse=True)
def _hmac_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HMAC_ENV, HMAC)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return signer_and_other(tmp_path_factory.mktemp("keys"), "kaudit-parquet")


def _settings(data: Path, keys: Keys, destination: dict[str, Any]) -> dict[str, Any]:
    audit = sealed_audit(keys.signer.private, HMAC_ENV, every_events=100)
    return {
        "data_dir": str(data),
        "cluster": {"id": "prod-eu-1", "environment": "production"},
        "audit": {**audit, "destinations": [destination]},
    }


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Path:
    """A data directory with a sealed log over three days, not yet exported."""
    data = tmp_path_factory.mktemp("pristine") / "data"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(HMAC_ENV, HMAC)
        config = Config.model_validate(_settings(data, keys, {"type": "store"}))
        with kaudit.open(config) as session:
            generate(session, GENERATED, seed=3, spread_seconds=3 * 86400)
            checks = (AuthCheck("ALTER", "Topic:LITERAL:orders", False, 29),)
            policy = {"role": "ops", "effect": "Deny", "actions": ["TOPIC_*"], "details": "x"}
            session.emit(
                "access.denied",
                actor="User:mallory",
                resource="topic:orders",
                result="denied",
                authorization=Authorization(False, "TOPIC_EDIT", checks, (policy,)),
                details={"details": {"nested": True}, "ünïcode": "ø\n", "big": 2**62},
                duration_ms=12,
            )
            session.emit("backup.completed", actor="svc:backup", resource="topic:orders")
    return data


def log_lines(config: Config) -> list[bytes]:
    return [line.rstrip(b"\n") for _, line in LogReader(config.log_dir).iter_lines()]


def _value(event: dict[str, Any], column: str) -> Any:
    """What column `column` should hold for `event`, read from the event's JSON."""
    if column in ("event", "time"):
        raise AssertionError(column)
    if column in ("sequence_number", "signature", "previous_signature"):
        return (event.get("integrity") or {}).get(column)
    if column == "details":
        return event["details"]
    if column == "authorization_policies":
        authorization = event.get("authorization")
        return None if authorization is None else authorization["policies"]
    top, _, rest = column.partition("_")
    if top in ("actor", "resource", "action", "authorization", "context") and rest:
        member = event.get(top) or {}
        if top == "context" and rest.startswith("api_"):
            return (member.get("api") or {}).get(rest[4:])
        return member.get(rest)
    return event[column]


def check_rows(table: pa.Table, lines: list[bytes]) -> None:
    """`table` holds the events of `lines`, one row each in log order, every column
    what the event says."""
    table = table.sort_by("sequence_number")
    assert table.num_rows == len(lines)
    assert [v.encode() for v in table.column("event").to_pylist()] == lines
    rows = table.to_pylist()
    for line, row in zip(lines, rows, strict=True):
        event = orjson.loads(line)
        for column in COLUMNS:
            if column in ("event", "time"):
                continue
            want = _value(event, column)
            have = row[column]
            if column in ("details", "authorization_policies") and have is not None:
                have = orjson.loads(have)
            assert have == want, (column, event["event_id"])
        assert row["time"] == parse_iso(event["timestamp"])


@pytest.fixture
def s3_export(pristine: Path, keys: Keys, moto: MotoServer, tmp_path: Path) -> Config:
    data = tmp_path / "data"
    shutil.copytree(pristine, data)
    destination = {
        "type": "s3",
        "bucket": BUCKET,
        "prefix": PREFIX,
        "encoding": "parquet",
        "batch_size": 400,
        "batch_interval_secs": 0,
        "parquet": {"max_age_secs": 0},
        **moto.access(),
    }
    config = Config.model_validate(_settings(data, keys, destination))
    moto.client("s3").create_bucket(Bucket=BUCKET)
    runner = drain(config)
    assert runner.metrics.sent == GENERATED + 2 and runner.metrics.failed == 0
    return config


def _keys(moto: MotoServer) -> list[str]:
    pages = moto.client("s3").get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", ()))


def _verify(moto: MotoServer, keys: Keys) -> Any:
    return verify_s3(
        AwsAccess.model_validate(moto.access()),
        BUCKET,
        PREFIX,
        verifiers=KeyRing([keys.signer.verifier]),
        hmac_key=HMAC.encode(),
    )


def test_s3_parquet_export_reads_back_row_for_row_partitioned_by_day(
    s3_export: Config, moto: MotoServer
) -> None:
    keys = [k for k in _keys(moto) if k.endswith(".parquet")]
    names = [PARQUET_KEY.fullmatch(k[len(PREFIX) :]) for k in keys]
    assert all(names), keys
    assert len({m.group(1) for m in names if m}) >= 3  # three days, three partitions at least
    filesystem = pa_fs.S3FileSystem(
        access_key="testing",
        secret_key="testing",
        region="us-east-1",
        endpoint_override=moto.url,
        scheme="http",
    )
    dataset = ds.dataset(
        f"{BUCKET}/{PREFIX}",
        filesystem=filesystem,
        format="parquet",
        partitioning="hive",
        exclude_invalid_files=True,
    )
    table = dataset.to_table()
    check_rows(table.drop_columns(["dt"]), log_lines(s3_export))
    # Each file holds its partition's day, and its name the sequence range inside.
    days = pc.strftime(table.column("time"), format="%Y-%m-%d")
    assert pc.all(pc.equal(days, table.column("dt"))).as_py()
    for key, match in zip(keys, names, strict=True):
        assert match is not None
        body = moto.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()
        seqs = pq.read_table(io.BytesIO(body)).column("sequence_number").to_pylist()
        assert (seqs[0], seqs[-1]) == (int(match.group(3)), int(match.group(4)))


def test_s3_parquet_objects_verify_against_their_checkpoints(
    s3_export: Config, moto: MotoServer, keys: Keys
) -> None:
    assert any("/checkpoints/" in k or k.startswith(f"{PREFIX}checkpoints/") for k in _keys(moto))
    report = _verify(moto, keys)
    assert report.ok, [f.message for f in report.findings]
    assert report.events == GENERATED + 2


def _events_named(key: str) -> int:
    """How many events a file's name says it holds (the first day's file may hold one
    only, when the test runs just after midnight)."""
    found = PARQUET_KEY.search(key)
    assert found is not None
    return int(found.group(4)) - int(found.group(3)) + 1


@pytest.mark.parametrize("column", ["actor_id", "event"])
def test_a_changed_cell_of_a_parquet_object_is_found(
    s3_export: Config, moto: MotoServer, keys: Keys, column: str
) -> None:
    client = moto.client("s3")
    key = max((k for k in _keys(moto) if k.endswith(".parquet")), key=_events_named)
    table = pq.read_table(io.BytesIO(client.get_object(Bucket=BUCKET, Key=key)["Body"].read()))
    values = table.column(column).to_pylist()
    values[1] = values[1].replace("User:", "User:x") if column == "actor_id" else values[1] + " "
    table = table.set_column(COLUMNS.index(column), column, pa.array(values, pa.string()))
    out = io.BytesIO()
    pq.write_table(table, out)
    client.put_object(Bucket=BUCKET, Key=key, Body=out.getvalue())
    report = _verify(moto, keys)
    assert not report.ok
    assert any(key.removeprefix(PREFIX) in f.message for f in report.findings), [
        f.message for f in report.findings
    ]


def test_a_parquet_folder_gathers_batches_into_daily_files(
    pristine: Path, keys: Keys, tmp_path: Path
) -> None:
    """Batches wait in the spool until a file is due (target_size_mb or max_age_secs),
    then become one file per day in the folder."""
    data = tmp_path / "data"
    shutil.copytree(pristine, data)
    folder = tmp_path / "export"
    destination: dict[str, Any] = {"type": "file", "path": str(folder), "encoding": "parquet"}
    destination["parquet"] = {"max_age_secs": 3600}
    config = Config.model_validate(_settings(data, keys, destination))
    runner = drain(config)
    assert runner.metrics.sent == GENERATED + 2
    parts = sorted((data / "exporters").glob("*.parquet-spool/*.jsonl"))
    assert len(parts) >= 2 and not folder.exists()  # several batches, none a file yet
    assert [line for p in parts for line in p.read_bytes().splitlines()] == log_lines(config)
    destination["parquet"] = {"max_age_secs": 0}
    drain(Config.model_validate(_settings(data, keys, destination)))
    files = sorted(folder.glob("dt=*/*.parquet"))
    names = [PARQUET_KEY.fullmatch(str(f.relative_to(folder))) for f in files]
    assert all(names) and not list((data / "exporters").glob("*.parquet-spool/*.jsonl"))
    days = {orjson.loads(line)["timestamp"][:10] for line in log_lines(config)}
    assert sorted(m.group(1) for m in names if m) == sorted(days)  # one file per day
    check_rows(pa.concat_tables(pq.read_table(f) for f in files), log_lines(config))


def test_encoding_parquet_needs_native_events(tmp_path: Path, keys: Keys) -> None:
    destination = {"type": "file", "path": str(tmp_path), "encoding": "parquet", "format": "ocsf"}
    with pytest.raises((ConfigError, ValueError), match="format: native"):
        Config.model_validate(_settings(tmp_path, keys, destination))


def test_lines_of_other_shapes_are_refused() -> None:
    with pytest.raises(EventDecodeError):
        lines_table([b'{"event_type": 3}'])


def _edge_lines(pristine: Path, keys: Keys) -> list[bytes]:
    """Log lines whose free-form members are cut at the edges: nested "integrity" and
    "details" keys, details of 12 bytes or fewer (kept inline by Arrow's string views),
    null, non-ASCII text, and signatures too long for integrity to be found from the end."""
    config = Config.model_validate(_settings(pristine, keys, {"type": "store"}))
    base = orjson.loads(log_lines(config)[0])
    details: list[Any] = [
        {"x": {"integrity": 1, "a": [1, 2]}, "é": "ü" * 20},
        {"inner": {"details": {"integrity": {"x": "ø"}}}},
        {"a": 1},
        {},
        None,
        "ø" * 5,
    ]
    lines = []
    for value in details:
        for signature in (None, "s" * 600):
            integrity = {"sequence_number": len(lines), "signature": signature}
            integrity["previous_signature"] = None
            lines.append(orjson.dumps({**base, "details": value, "integrity": integrity}))
    return lines


def test_free_form_members_are_cut_as_recorded(pristine: Path, keys: Keys) -> None:
    lines = _edge_lines(pristine, keys)
    check_rows(lines_table(lines), lines)


def test_spooled_lines_that_are_not_events_are_set_aside(
    pristine: Path, keys: Keys, tmp_path: Path
) -> None:
    """Lines of the spool that are not audit events (an edited spool: not JSON, an empty
    line, a carriage return) go to rejected.jsonl; the others are exported row for row."""
    data = tmp_path / "data"
    shutil.copytree(pristine, data)
    folder = tmp_path / "export"
    destination = {"type": "file", "path": str(folder), "encoding": "parquet"}
    config = Config.model_validate(_settings(data, keys, destination))
    good = log_lines(config)[:300]
    bad = [b"not json", b"", b'{"event_type":"x"}', good[5] + b"\r"]
    exporter = ParquetExporter(config.audit.destinations[0], config)  # type: ignore[arg-type]
    exporter.send([*good[:100], bad[0], bad[1], *good[100:200], bad[2]])
    exporter.send([bad[3], *good[200:]])
    exporter.roll()
    rejected = next((data / "exporters").glob("*.parquet-spool/rejected.jsonl"))
    assert rejected.read_bytes().split(b"\n") == [*bad, b""]
    check_rows(pa.concat_tables(pq.read_table(f) for f in folder.glob("dt=*/*.parquet")), good)


def test_files_made_ahead_are_the_files_a_roll_makes(
    pristine: Path, keys: Keys, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The files converted while the batches are spooled are, byte for byte (the same
    names, so the same digests), those a roll makes of the parts at once: here when
    converting ahead fails (its file's path is taken by a folder) and the roll converts
    the parts itself."""
    names = []
    for run in ("ahead", "at-roll"):
        data = tmp_path / run / "data"
        shutil.copytree(pristine, data)
        folder = tmp_path / run / "export"
        destination = {"type": "file", "path": str(folder), "encoding": "parquet"}
        config = Config.model_validate(_settings(data, keys, destination))
        lines = log_lines(config)
        exporter = ParquetExporter(config.audit.destinations[0], config)  # type: ignore[arg-type]
        if run == "at-roll":
            (exporter.spool / "ahead-0.parquet").mkdir()
        for start in range(0, len(lines), 250):
            exporter.send(lines[start : start + 250])
        caplog.clear()
        exporter.roll()
        exporter.close()
        assert ("converting ahead failed" in caplog.text) == (run == "at-roll")
        files = sorted(folder.glob("dt=*/*.parquet"))
        check_rows(pa.concat_tables(pq.read_table(f) for f in files), lines)
        assert len({f.parent.name for f in files}) >= 3
        names.append([f.relative_to(folder) for f in files])
    assert names[0] == names[1]


def test_an_exporter_closed_before_its_roll_leaves_the_spool_to_the_next(
    pristine: Path, keys: Keys, tmp_path: Path
) -> None:
    """Closing stops the converter and removes what it made; the spooled parts stay, and
    the next exporter on the same spool (a restart) exports them."""
    data = tmp_path / "data"
    shutil.copytree(pristine, data)
    folder = tmp_path / "export"
    destination = {"type": "file", "path": str(folder), "encoding": "parquet"}
    config = Config.model_validate(_settings(data, keys, destination))
    lines = log_lines(config)
    exporter = ParquetExporter(config.audit.destinations[0], config)  # type: ignore[arg-type]
    exporter.send(lines[:600])
    exporter.send(lines[600:])
    exporter.close()
    assert sorted(p.name for p in exporter.spool.iterdir()) == [
        "000000000000.jsonl",
        "000000000001.jsonl",
        "rolling",
    ]
    assert not list(folder.glob("dt=*/*.parquet"))
    restarted = ParquetExporter(config.audit.destinations[0], config)  # type: ignore[arg-type]
    restarted.roll()
    restarted.close()
    check_rows(pa.concat_tables(pq.read_table(f) for f in folder.glob("dt=*/*.parquet")), lines)


# ----------------------------------------------------------------------- search an export


@pytest.fixture
def indexed(pristine: Path, keys: Keys, tmp_path: Path) -> Path:
    """The search index of the pristine log (its configured store destination)."""
    data = tmp_path / "indexed"
    shutil.copytree(pristine, data)
    drain(Config.model_validate(_settings(data, keys, {"type": "store"})))
    return data / "index.sqlite"


def _filters(log: list[bytes]) -> list[Filter]:
    middle = parse_iso(orjson.loads(log[len(log) // 2])["timestamp"])
    source = orjson.loads(log[0])["context"]["source"]
    return [
        Filter(),
        Filter(type="topic.*"),
        Filter(actor="carol"),
        Filter(resource="topic:orders"),
        Filter(resource="orders", result="denied"),
        Filter(result="failure"),
        Filter(cluster="prod-*"),
        Filter(query="orders produce*"),
        Filter(since=middle - timedelta(hours=20), until=middle + timedelta(hours=7)),
        Filter(type="auth.*", actor="User:svc-*", since=middle),
        Filter(type="no.such"),
        Filter(source=source[:2] + "*"),
        Filter(source="no-such-source"),
    ]


def test_search_over_a_parquet_export_gives_the_indexed_answers(
    s3_export: Config, moto: MotoServer, indexed: Path, tmp_path: Path, keys: Keys
) -> None:
    folder = tmp_path / "folder"
    destination = {
        "type": "file",
        "path": str(folder),
        "encoding": "parquet",
        "parquet": {"max_age_secs": 0},
    }
    config = Config.model_validate(_settings(s3_export.data_path, keys, destination))
    drain(config)  # the same log, also to a folder
    index = IndexSearch(indexed)
    local = open_search(str(folder), Config())
    s3_config = Config.model_validate(
        {"audit": {"destinations": [{"type": "s3", "bucket": BUCKET, **moto.access()}]}}
    )
    remote = open_search(f"s3://{BUCKET}/{PREFIX}", s3_config)
    assert isinstance(local, ExportSearch) and isinstance(remote, ExportSearch)
    for flt in _filters(log_lines(s3_export)):
        want = index.search(flt, None)
        assert want or "no" in f"{flt.type}{flt.source}", flt
        for export in (local, remote):
            assert [h.line for h in export.search(flt, None)] == [h.line for h in want], flt
            assert export.search(flt, 25) == want[:25], flt
    for key in GROUP_KEYS:
        flt = Filter(type="topic.*") if key != "type" else Filter()
        assert local.count_by(flt, (key,)) == index.count_by(flt, (key,)), key
    index.close()


def test_kaudit_search_s3_prints_what_the_index_prints(
    s3_export: Config, moto: MotoServer, indexed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    for args in (
        ["--type", "acl.*", "-o", "csv"],
        ["--actor", "carol", "-o", "jsonl", "-n", "0"],
        ["--result", "denied", "-o", "table"],
        ["--count-by", "actor", "-o", "json"],
    ):
        want = CliRunner().invoke(main, ["search", str(indexed), *args])
        got = CliRunner().invoke(main, ["search", f"s3://{BUCKET}/{PREFIX}", *args])
        assert want.exit_code == 0 and got.exit_code == 0, got.output
        assert got.output == want.output and want.output.count("\n") > 2, args


def test_a_batch_retried_after_a_failed_upload_is_exported_once(
    pristine: Path, keys: Keys, moto: MotoServer, tmp_path: Path
) -> None:
    """A file is due after the second batch was spooled, and its upload fails (no bucket
    yet); the runner's retry of that batch publishes the file without spooling the
    batch twice."""
    data = tmp_path / "data"
    shutil.copytree(pristine, data)
    destination = {
        "type": "s3",
        "bucket": BUCKET,
        "prefix": PREFIX,
        "encoding": "parquet",
        "parquet": {"max_age_secs": 3600},
        **moto.access(),
    }
    config = Config.model_validate(_settings(data, keys, destination))
    every = log_lines(config)
    day = orjson.loads(every[len(every) // 2])["timestamp"][:10]  # a whole day in the middle
    lines = [line for line in every if orjson.loads(line)["timestamp"].startswith(day)][:300]
    assert len(lines) == 300
    exporter = ParquetExporter(config.audit.all_destinations[0], config)
    try:
        exporter.send(lines[:150])  # spooled: no file due yet, no upload
        exporter.max_age_s = 0  # the next batch makes a file
        with pytest.raises(ExporterError, match="NoSuchBucket"):
            exporter.send(lines[150:])
        moto.client("s3").create_bucket(Bucket=BUCKET)
        exporter.send(lines[150:])
    finally:
        exporter.close()
    client = moto.client("s3")
    tables = [
        pq.read_table(io.BytesIO(client.get_object(Bucket=BUCKET, Key=key)["Body"].read()))
        for key in _keys(moto)
        if key.endswith(".parquet")
    ]
    check_rows(pa.concat_tables(tables), lines)


def test_search_counts_an_event_exported_twice_once(
    pristine: Path, keys: Keys, indexed: Path, tmp_path: Path
) -> None:
    """At-least-once delivery: a file sent again under another name (overlapping
    sequence ranges), and a file holding some events twice, count each event once."""
    data = tmp_path / "data"
    shutil.copytree(pristine, data)
    folder = tmp_path / "export"
    destination = {"type": "file", "path": str(folder), "encoding": "parquet"}
    destination["parquet"] = {"max_age_secs": 0}
    drain(Config.model_validate(_settings(data, keys, destination)))
    files = sorted(folder.glob("dt=*/*.parquet"))
    again = files[0].with_name(
        files[0].name[: -len("0123456789abcdef.parquet")] + "f" * 16 + ".parquet"
    )
    shutil.copyfile(files[0], again)
    table = pq.read_table(files[-1])
    twice = pa.concat_tables([table, table.slice(0, 10)]).replace_schema_metadata(None)
    pq.write_table(twice, files[-1])  # no longer said to hold each event once
    index = IndexSearch(indexed)
    export = open_search(str(folder), Config())
    for flt in (Filter(), Filter(type="topic.*"), Filter(query="orders")):
        assert export.search(flt, None) == index.search(flt, None), flt
        assert export.count_by(flt, ("type",)) == index.count_by(flt, ("type",)), flt
    index.close()


def _footer_with(body: bytes, old: bytes, new: bytes) -> bytes:
    """The Parquet file `body` with each `old` in its footer made `new` (as long): for a
    number, both the statistics engines read and the deprecated ones beside them."""
    length = int.from_bytes(body[-8:-4], "little")
    footer = body[-8 - length : -8]
    assert len(old) == len(new) and old in footer
    return body[: -8 - length] + footer.replace(old, new) + body[-8:]


@pytest.mark.parametrize("column", ["event_type", "time"])
def test_footer_statistics_that_hide_rows_from_engines_fail_verify(
    s3_export: Config, moto: MotoServer, keys: Keys, monkeypatch: pytest.MonkeyPatch, column: str
) -> None:
    """The first row group's min of `column` is raised in the footer: the rows (and so
    the events the checkpoints sign) are untouched, but a query for that value skips the
    row group."""
    client = moto.client("s3")
    key = next(k for k in _keys(moto) if k.endswith(".parquet"))
    body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    group = pq.ParquetFile(io.BytesIO(body)).metadata.row_group(0)
    chunk = next(
        group.column(i)
        for i in range(group.num_columns)
        if group.column(i).path_in_schema == column
    )
    lowest = chunk.statistics.min
    if column == "time":
        micros = pc.cast(pa.scalar(lowest, pa.timestamp("us", tz="UTC")), pa.int64()).as_py()
        old, new = (micros.to_bytes(8, "little"), (micros + 1).to_bytes(8, "little"))
    else:
        old, new = lowest.encode(), (lowest[:-1] + chr(ord(lowest[-1]) + 1)).encode()
    tampered = _footer_with(body, old, new)
    query = [(column, "=", lowest)]
    found = pq.read_table(io.BytesIO(body), filters=query).num_rows
    assert found and pq.read_table(io.BytesIO(tampered), filters=query).num_rows < found
    client.put_object(Bucket=BUCKET, Key=key, Body=tampered)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    public = str(keys.signer.public)
    result = CliRunner().invoke(
        main, ["verify", f"s3://{BUCKET}/{PREFIX}", "--public-key", public, "--json"]
    )
    assert result.exit_code == 1, result.output
    messages = [f["message"] for f in orjson.loads(result.output)["findings"]]
    assert any(key.removeprefix(PREFIX) in m and f"column {column}:" in m for m in messages), (
        messages
    )


def test_an_object_in_a_day_folder_that_kaudit_did_not_write_fails_verify(
    s3_export: Config, moto: MotoServer, keys: Keys
) -> None:
    """Engines read every file of a `dt=` folder: a stray one adds rows to their answers."""
    client = moto.client("s3")
    key = next(k for k in _keys(moto) if k.endswith(".parquet"))
    day = key.removeprefix(PREFIX).split("/")[0]
    body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    client.put_object(Bucket=BUCKET, Key=f"{PREFIX}{day}/x.parquet", Body=body)
    client.put_object(Bucket=BUCKET, Key=f"{PREFIX}{day}/", Body=b"")  # a folder marker
    client.put_object(Bucket=BUCKET, Key=f"{PREFIX}notes/readme.txt", Body=b"not read")
    report = _verify(moto, keys)
    assert not report.ok
    assert [f.message.split(":")[0] for f in report.findings] == [f"{day}/x.parquet"]
    assert any("2 other object(s)" in note for note in report.notes), report.notes


def test_a_copy_of_a_file_under_another_kaudit_name_fails_verify(
    s3_export: Config, moto: MotoServer, keys: Keys
) -> None:
    """A copy whose name kaudit could have written (another digest) is read by engines as
    well, counting its events twice; the name's digest gives it away."""
    client = moto.client("s3")
    key = next(k for k in _keys(moto) if k.endswith(".parquet"))
    body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    found = PARQUET_KEY.fullmatch(key.removeprefix(PREFIX))
    assert found is not None
    copy = key.replace(found.group(5), "0" * 16)
    client.put_object(Bucket=BUCKET, Key=copy, Body=body)
    report = _verify(moto, keys)
    assert not report.ok
    (finding,) = report.findings
    assert copy.removeprefix(PREFIX) in finding.message
    assert "is not its content's" in finding.message


def test_a_copy_under_another_stream_name_with_the_same_digest_fails_verify(
    s3_export: Config, moto: MotoServer, keys: Keys
) -> None:
    """Only the stream part of the name changed: the digest is the content's, yet two
    names for one content is a copy."""
    client = moto.client("s3")
    key = next(k for k in _keys(moto) if k.endswith(".parquet"))
    body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    found = PARQUET_KEY.fullmatch(key.removeprefix(PREFIX))
    assert found is not None
    copy = key.replace(f"/{found.group(2)}_", "/other_")
    assert copy != key
    client.put_object(Bucket=BUCKET, Key=copy, Body=body)
    report = _verify(moto, keys)
    assert not report.ok
    (finding,) = report.findings
    assert copy.removeprefix(PREFIX) in finding.message
    assert key.removeprefix(PREFIX) in finding.message
    assert "one content digest under two names" in finding.message


@pytest.fixture
def folder_export(pristine: Path, keys: Keys, tmp_path: Path) -> Path:
    """The sealed log exported by a `file` destination with `encoding: parquet`."""
    data = tmp_path / "data"
    shutil.copytree(pristine, data)
    folder = tmp_path / "export"
    destination = {
        "type": "file",
        "path": str(folder),
        "encoding": "parquet",
        "parquet": {"max_age_secs": 0},
    }
    runner = drain(Config.model_validate(_settings(data, keys, destination)))
    assert runner.metrics.sent == GENERATED + 2 and runner.metrics.failed == 0
    return folder


def _verify_folder(folder: Path, keys: Keys) -> Any:
    args = ["verify", str(folder), "--public-key", str(keys.signer.public), "--json"]
    return CliRunner().invoke(main, [*args, "--hmac-key-env", HMAC_ENV], catch_exceptions=False)


def test_a_parquet_folder_verifies_against_the_checkpoints_copied_beside_it(
    folder_export: Path, keys: Keys
) -> None:
    assert list(folder_export.glob("checkpoints/*.checkpoints.jsonl"))
    result = _verify_folder(folder_export, keys)
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.output)
    assert report["ok"] and report["events"] == GENERATED + 2, report
    other = CliRunner().invoke(
        main, ["verify", str(folder_export), "--public-key", str(keys.other.public)]
    )
    assert other.exit_code == 1, other.output  # signed by someone else


def test_a_changed_deleted_or_stray_file_of_a_parquet_folder_fails_verify(
    folder_export: Path, keys: Keys
) -> None:
    files = sorted(folder_export.glob("dt=*/*.parquet"))  # in sequence order
    assert len(files) >= 3
    # The largest file but the last is changed and the one after it deleted (the
    # unreadable and the missing events are then one range ending with the deleted
    # file's); another one is copied.
    at = max(range(len(files) - 1), key=lambda i: _events_named(str(files[i])))
    changed, deleted = files[at], files[at + 1]
    copied = files[at - 1] if at else files[at + 2]
    table = pq.read_table(changed)
    values = table.column("actor_id").to_pylist()
    values[1] = "User:nobody"
    table = table.set_column(COLUMNS.index("actor_id"), "actor_id", pa.array(values, pa.string()))
    pq.write_table(table, changed)
    deleted.unlink()
    (copied.parent / "extra.parquet").write_bytes(copied.read_bytes())
    result = _verify_folder(folder_export, keys)
    assert result.exit_code == 1, result.output
    messages = " | ".join(f["message"] for f in orjson.loads(result.output)["findings"])
    assert str(changed.relative_to(folder_export)) in messages, messages
    assert "extra.parquet" in messages, messages
    gone = PARQUET_KEY.fullmatch(str(deleted.relative_to(folder_export)))
    assert gone is not None
    assert f"..{int(gone.group(4))} are missing: the file holding them" in messages, messages
