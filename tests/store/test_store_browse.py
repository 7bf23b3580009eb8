"""Keyset pages and the map's flow cache over a real index: pages put together are the
search, ties within a millisecond included, from the index and from a scan alike; the
cached flows of any period equal those counted from the events, before and after
retention removes the oldest."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kaudit_store_data import export, index_path, log_events, make_config, record_traffic

import kaudit
from kaudit.store.browse import MS_PER_HOUR, FlowCache, page
from kaudit.store.index import EventIndex
from kaudit.store.query import Filter, IndexSearch, ScanSearch, Search
from kaudit.store.schema import to_ms

NOW = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> kaudit.Config:
    """1,500 events over three days, then 40 at one millisecond (a burst)."""
    cfg = make_config(tmp_path_factory.mktemp("browse"))
    record_traffic(cfg, 1500, NOW - timedelta(days=3), NOW)
    with kaudit.open(cfg) as session:
        for i in range(40):
            session.emit("topic.created", actor="User:burst", resource=f"topic:b{i}",
                         time_ns=int(NOW.timestamp() * 1e9))  # fmt: skip
    export(cfg)
    return cfg


def _all_pages(search: Search, flt: Filter, size: int, source: str | None = None) -> list[str]:
    seen: list[str] = []
    after = None
    while True:
        found = page(search, flt, size=size, after=after, source=source)
        seen += [h.fields.event_id for h in found.hits]
        if found.next is None:
            return seen
        after = found.next


@pytest.mark.parametrize("flt", [Filter(), Filter(type="topic.*"), Filter(result="denied")])
def test_pages_put_together_are_the_search(config: kaudit.Config, flt: Filter) -> None:
    index = IndexSearch(index_path(config))
    scan = ScanSearch(str(config.log_dir))
    try:
        expected = [h.fields.event_id for h in index.search(flt, None)]
        assert len(set(expected)) == len(expected) > 20
        for search in (index, scan):
            assert _all_pages(search, flt, 7) == expected
        with_source = _all_pages(index, flt, 9, source="sdk")
        assert with_source == expected  # every event here comes from the SDK
        assert _all_pages(index, flt, 9, source="gateway") == []
    finally:
        index.close()


def _counted(config: kaudit.Config, since_ms: int, until_ms: int) -> Counter[tuple[str, ...]]:
    """Records per (direction, principal, client, topic) from the events themselves, over
    the whole hours the period touches."""
    first = since_ms // MS_PER_HOUR * MS_PER_HOUR
    last = ((until_ms - 1) // MS_PER_HOUR + 1) * MS_PER_HOUR
    out: Counter[tuple[str, ...]] = Counter()
    for e in log_events(config):
        ts = to_ms(datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")))
        if e["event_type"] in ("records.produced", "records.consumed") and first <= ts < last:
            direction = "produce" if e["event_type"] == "records.produced" else "consume"
            key = (direction, e["actor"]["id"], e["actor"]["client_id"], e["resource"]["id"])
            out[key] += e["details"]["count"]
    return out


def _cached(cache: FlowCache, search: IndexSearch, since_ms: int, until_ms: int) -> Counter:
    out: Counter[tuple[str, ...]] = Counter()
    for f in cache.flows(search, since_ms, until_ms):
        out[(f.direction, f.principal, f.client or "", f.topic)] += f.records
    return out


def test_cached_flows_are_the_events_counted_before_and_after_retention(
    config: kaudit.Config, tmp_path: Path
) -> None:
    copy = tmp_path / "index.sqlite"
    copy.write_bytes(index_path(config).read_bytes())
    search = IndexSearch(copy)
    cache = FlowCache()
    now = to_ms(NOW)
    periods = [(now - 7 * 86_400_000, now + 1), (now - 50 * MS_PER_HOUR + 5, now - 3 * MS_PER_HOUR)]
    try:
        for since, until in periods:
            assert _cached(cache, search, since, until) == _counted(config, since, until)
        cutoff = (now - 36 * MS_PER_HOUR) // MS_PER_HOUR * MS_PER_HOUR  # the cache's unit
        with EventIndex(copy) as writer:
            assert writer.delete_before(cutoff) > 0
        since, until = periods[0]
        kept = _counted(config, cutoff, until)
        assert _cached(cache, search, since, until) == kept
        assert _cached(FlowCache(), search, since, until) == kept
    finally:
        search.close()
