"""`kaudit search` semantics: every filter, newest first, limits and count-by, answered
from the SQLite index and by scanning the log directory or a JSONL export — the three
must agree with each other and with a plain reading of the recorded events."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kaudit_store_data import export, index_path, log_events, make_config, record_traffic

import kaudit
from kaudit.errors import SearchError
from kaudit.generate import TrafficGenerator
from kaudit.store.query import Filter, IndexSearch, ScanSearch, Search
from kaudit.store.schema import day_name
from kaudit.timeparse import parse_time

START = datetime(2026, 10, 1, tzinfo=UTC)
END = datetime(2026, 10, 21, tzinfo=UTC)


@dataclass
class Setup:
    events: list[dict[str, Any]]
    index: IndexSearch
    scan_dir: ScanSearch
    scan_file: ScanSearch
    data: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("search")
    export_file = tmp / "export" / "audit.jsonl"
    config = make_config(
        tmp,
        destinations=[{"type": "store"}, {"type": "file", "path": str(export_file)}],
    )
    record_traffic(config, 1500, START, END)
    counts = export(config)
    assert set(counts.values()) == {1500}
    s = Setup(
        log_events(config),
        IndexSearch(index_path(config)),
        ScanSearch(str(config.log_dir)),
        ScanSearch(str(export_file)),
        config.data_path,
    )
    yield s
    s.index.close()


def _ts(e: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(e["timestamp"])


def expected(events: list[dict[str, Any]], keep: Callable[[dict[str, Any]], bool]) -> list[str]:
    """Event ids newest first, ties later-recorded first: the reference answer."""
    chosen = [(i, e) for i, e in enumerate(events) if keep(e)]
    chosen.sort(key=lambda ie: (_ts(ie[1]), ie[0]), reverse=True)
    return [e["event_id"] for _, e in chosen]


def ids(search: Search, flt: Filter, limit: int | None = None) -> list[str]:
    return [h.fields.event_id for h in search.search(flt, limit)]


def all_agree(s: Setup, flt: Filter, limit: int | None = None) -> list[str]:
    found = ids(s.index, flt, limit)
    assert ids(s.scan_dir, flt, limit) == found
    assert ids(s.scan_file, flt, limit) == found
    return found


def words_of(*parts: Any) -> set[str]:
    """Letters-and-digits words, lower-cased, of strings and of the JSON of the rest."""
    text = " ".join(p if isinstance(p, str) else json.dumps(p) for p in parts)
    return set(re.findall(r"[^\W_]+", text.lower()))


CASES: dict[str, tuple[Filter, Callable[[dict[str, Any]], bool]]] = {
    "since": (
        Filter(since=datetime(2026, 10, 15, tzinfo=UTC)),
        lambda e: _ts(e) >= datetime(2026, 10, 15, tzinfo=UTC),
    ),
    "until": (
        Filter(until=datetime(2026, 10, 3, tzinfo=UTC)),
        lambda e: _ts(e) < datetime(2026, 10, 3, tzinfo=UTC),
    ),
    "type exact": (Filter(type="topic.deleted"), lambda e: e["event_type"] == "topic.deleted"),
    "type glob": (Filter(type="acl.*"), lambda e: e["event_type"].startswith("acl.")),
    "actor id": (Filter(actor="User:bob"), lambda e: e["actor"]["id"] == "User:bob"),
    "actor name": (Filter(actor="bob"), lambda e: e["actor"]["id"] == "User:bob"),
    "actor glob": (Filter(actor="svc-*"), lambda e: e["actor"]["id"].startswith("User:svc-")),
    "resource type:id": (
        Filter(resource="topic:orders"),
        lambda e: (e["resource"]["type"], e["resource"]["id"]) == ("topic", "orders"),
    ),
    "resource id": (Filter(resource="orders"), lambda e: e["resource"]["id"] == "orders"),
    "resource glob": (
        Filter(resource="group:*"),
        lambda e: e["resource"]["type"] == "group",
    ),
    "result denied": (
        Filter(result="denied"),
        lambda e: e["action"]["result"] == "denied",
    ),
    "result failure": (
        Filter(result="failure"),
        lambda e: e["action"]["result"] == "failure",
    ),
    "cluster": (Filter(cluster="prod-eu-1"), lambda e: True),
    "source": (Filter(source="sdk", type="auth.*"), lambda e: e["event_type"].startswith("auth.")),
    "other source": (Filter(source="gateway"), lambda e: False),
    "other cluster": (Filter(cluster="staging"), lambda e: False),
    "free text, two words": (
        Filter(query="storage unreachable"),
        lambda e: e["action"]["error"] == "storage unreachable",
    ),
    "free text prefix": (
        Filter(query="production-backup-00*"),
        lambda e: e["resource"]["id"].startswith("production-backup-00"),
    ),
    "free text in details": (
        Filter(query="retention.ms", type="topic.config_changed"),
        lambda e: e["event_type"] == "topic.config_changed" and "retention.ms" in str(e["details"]),
    ),
    "free text, no such word": (Filter(query="zebra"), lambda e: False),
    "who deleted topic X, and was anyone denied": (
        Filter(type="topic.deleted", resource="payments", since=datetime(2026, 10, 7, tzinfo=UTC)),
        lambda e: (
            e["event_type"] == "topic.deleted"
            and e["resource"]["id"] == "payments"
            and _ts(e) >= datetime(2026, 10, 7, tzinfo=UTC)
        ),
    ),
    "everything combined": (
        Filter(
            since=datetime(2026, 10, 2, tzinfo=UTC),
            until=datetime(2026, 10, 19, tzinfo=UTC),
            type="*.*",
            actor="alice",
            resource="topic:*",
            result="success",
            cluster="prod-*",
            query="orders",
        ),
        lambda e: (
            datetime(2026, 10, 2, tzinfo=UTC) <= _ts(e) < datetime(2026, 10, 19, tzinfo=UTC)
            and e["actor"]["id"] == "User:alice"
            and e["resource"]["type"] == "topic"
            and e["action"]["result"] == "success"
            and "orders" in words_of(e["actor"]["client_id"], e["resource"]["id"], e["details"])
        ),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_filter_gives_the_reference_answer_from_index_and_scans(
    setup: Setup, case: str
) -> None:
    flt, keep = CASES[case]
    want = expected(setup.events, keep)
    assert all_agree(setup, flt) == want
    if case not in ("other cluster", "other source", "free text, no such word"):
        assert want, "the generated set should hold events for this filter"


def test_results_are_newest_first_and_limited(setup: Setup) -> None:
    everything = all_agree(setup, Filter())
    assert everything == expected(setup.events, lambda e: True)
    assert all_agree(setup, Filter(), limit=25) == everything[:25]
    denied = all_agree(setup, Filter(result="denied"), limit=3)
    assert denied == expected(setup.events, lambda e: e["action"]["result"] == "denied")[:3]
    # Several types, each read newest first on its own, then merged.
    acl = all_agree(setup, Filter(type="acl.*", actor="svc-*"), limit=10)
    assert len(acl) == 10
    # Free text walked back from the newest row, stopped once nothing older can rank.
    since = datetime(2026, 10, 3, 7, 30, tzinfo=UTC)
    for words, limit in (("topic", 1), ("alice orders", 5), ("req", 5), ("req", 1200)):
        found = all_agree(setup, Filter(query=words, since=since), limit=limit)
        assert len(found) == limit


def test_events_at_the_same_instant_are_listed_later_recorded_first(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    at = int(START.timestamp() * 1e9)
    with kaudit.open(config) as session:
        for i in range(5):
            session.emit("topic.created", actor="User:a", resource=f"topic:t{i}", time_ns=at)
    export(config)
    want = [e["event_id"] for e in reversed(log_events(config))]
    index = IndexSearch(index_path(config))
    try:
        assert ids(index, Filter()) == want
    finally:
        index.close()
    assert ids(ScanSearch(str(config.log_dir)), Filter()) == want


def test_free_text_finds_the_newest_when_the_log_is_out_of_time_order(tmp_path: Path) -> None:
    """The walk back from the newest row stops on the blocks' latest times: events
    recorded late with old times, and early with late ones, must still rank by time."""
    config = make_config(tmp_path)
    gen = TrafficGenerator(3)
    first = int(START.timestamp() * 1e9)
    # Mostly in order (the walk stops early), with some events far from their place.
    order, rng = list(range(2500)), random.Random(5)
    for i in range(0, 2500, 37):
        j = rng.randrange(2500)
        order[i], order[j] = order[j], order[i]
    with kaudit.open(config) as session:
        for i, slot in enumerate(order):
            gen.emit_next(session, correlation_id=f"req_{i}", time_ns=first + slot * 10**9 * 60)
    export(config)
    index, scan = IndexSearch(index_path(config)), ScanSearch(str(config.log_dir))
    try:
        for words in ("topic", "alice orders", "req", "storage unreachable"):
            for since in (None, START + timedelta(hours=20)):
                for limit in (1, 30, None):
                    flt = Filter(query=words, since=since)
                    assert ids(index, flt, limit) == ids(scan, flt, limit), (words, since, limit)
    finally:
        index.close()


GROUPS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "type": lambda e: e["event_type"],
    "category": lambda e: e["event_type"].split(".")[0],
    "actor": lambda e: e["actor"]["id"],
    "resource": lambda e: f"{e['resource']['type']}:{e['resource']['id']}",
    "result": lambda e: e["action"]["result"],
    "cluster": lambda e: e["context"]["cluster_id"],
    "day": lambda e: _ts(e).date().isoformat(),
    "source": lambda e: e["context"]["source"],
    "hour": lambda e: int(_ts(e).timestamp()) // 3600,
}


@pytest.mark.parametrize("key", list(GROUPS))
@pytest.mark.parametrize(
    "since, until",
    [
        (datetime(2026, 10, 5, tzinfo=UTC), None),
        # Inside hours at both ends: whole hours from the rollups, the rest from rows.
        (datetime(2026, 10, 5, 6, 59, 1, tzinfo=UTC), datetime(2026, 10, 9, 0, 0, 5, tzinfo=UTC)),
        (datetime(2026, 10, 5, 6, 10, tzinfo=UTC), datetime(2026, 10, 5, 7, 50, tzinfo=UTC)),
    ],
)
def test_count_by_each_key_matches_the_reference(
    setup: Setup, key: str, since: datetime, until: datetime | None
) -> None:
    flt = Filter(since=since, until=until, type="*.*")
    got = setup.index.count_by(flt, (key,))
    assert setup.scan_dir.count_by(flt, (key,)) == got
    assert setup.scan_file.count_by(flt, (key,)) == got
    want = Counter(
        GROUPS[key](e)
        for e in setup.events
        if _ts(e) >= since and (until is None or _ts(e) < until)
    )
    shown = {(day_name(k[0]) if key == "day" else k[0]): n for k, n in got}
    assert shown == dict(want)
    counts = [n for _, n in got]
    assert counts == sorted(counts, reverse=True)


def test_count_by_two_keys_and_with_filters(setup: Setup) -> None:
    flt = Filter(result="denied")
    got = setup.index.count_by(flt, ("actor", "resource"))
    assert got == setup.scan_dir.count_by(flt, ("actor", "resource"))
    want = Counter(
        (e["actor"]["id"], f"{e['resource']['type']}:{e['resource']['id']}")
        for e in setup.events
        if e["action"]["result"] == "denied"
    )
    assert dict(got) == dict(want)


def test_bad_input_is_refused_naming_what_is_accepted() -> None:
    with pytest.raises(SearchError, match="success, failure, denied"):
        Filter(result="ok")
    with pytest.raises(SearchError, match="not before until"):
        Filter(since=END, until=START)
    with pytest.raises(SearchError, match="no words"):
        Filter(query="*** --")
    with pytest.raises(SearchError, match="duration back from now"):
        parse_time("yesterday")


def test_times_are_iso_or_durations_back_from_now() -> None:
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    assert parse_time("7d", now=now) == now - timedelta(days=7)
    assert parse_time("24h", now=now) == now - timedelta(hours=24)
    assert parse_time("30m", now=now) == now - timedelta(minutes=30)
    assert parse_time("2w", now=now) == now - timedelta(weeks=2)
    assert parse_time("2026-11-01") == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_time("2026-11-01T10:00:00+02:00") == datetime(2026, 11, 1, 8, tzinfo=UTC)
    assert parse_time("2026-11-01T10:00:00Z") == datetime(2026, 11, 1, 10, tzinfo=UTC)


def test_the_index_and_a_scan_count_a_redelivered_event_once(tmp_path: Path, setup: Setup) -> None:
    duplicated = tmp_path / "dup.jsonl"
    source = setup.data / "log" / "00000000000000000000.jsonl"
    lines = source.read_bytes().splitlines(keepends=True)[:50]
    duplicated.write_bytes(b"".join(lines + lines[10:20]))
    scan = ScanSearch(str(duplicated))
    assert len(scan.search(Filter(), None)) == 50
    assert sum(n for _, n in scan.count_by(Filter(), ("type",))) == 50
