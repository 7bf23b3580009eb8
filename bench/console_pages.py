"""Console log pages benchmark: the audit log page, an event with its proof, and the map.

Records N events of `kaudit generate`'s traffic spread over 7 days (`--spread 7d`) into
a signed local log (Merkle checkpoints), indexes them with the store destination's
exporter, then serves the console in process (the ASGI app, as uvicorn runs it, called
through Starlette's test client) and times, server side and over the whole app:

- filtered audit-log pages (several filters, first and deep keyset pages);
- event detail pages with their server-checked inclusion proof;
- the client–topic map of 7 days (`map_7d_ms`: the median of 5; `map_7d_first_ms`: the
  first call);
- the signed-in user's own log (`/my-log`, first and older keyset pages), once the user
  has `--own-events` console events of their own among the N (`user_log_page_p95_ms`).

The console reads the log ahead when it starts (leaf hashes for the proofs, produce and
consume events for the map's hourly cache): that time is `read_ahead_at_start_s`, and
the pages are timed once it is done.

Removes everything it created. The last line printed is one JSON object.

    .venv/bin/python bench/console_pages.py [--events N] [--requests R]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

import kaudit
from kaudit.config import Config
from kaudit.console.app import build_app
from kaudit.console.audit import RequestInfo
from kaudit.console.auth.local import hash_password
from kaudit.console.identity import ConsoleUser
from kaudit.exporters import ExporterRunner
from kaudit.generate import generate
from kaudit.integrity.keys import generate as generate_keys
from kaudit.log.cursor import Cursor
from kaudit.store.exporter import StoreExporter
from kaudit.store.query import store_destination

SPREAD_SECONDS = 7 * 86_400
FILTERS: list[dict[str, str]] = [
    {},
    {"type": "topic.*"},
    {"actor": "alice", "result": "denied"},
    {"resource": "orders"},
    {"type": "acl.*", "since": "24h"},
    {"q": "billing"},
    {"result": "failure", "type": "backup.*"},
    {"source": "sdk", "type": "auth.*"},
]


def make_config(base: Path) -> Config:
    keys = generate_keys(base / "keys" / "audit", "kaudit/bench")
    return Config.model_validate(
        {
            "data_dir": str(base / "data"),
            "cluster": {"id": "prod-eu-1", "environment": "production"},
            "audit": {
                "failure_policy": "fail_closed",
                "block_timeout_ms": 600_000,
                "log": {"fsync": "never"},
                "integrity": {
                    "checkpoints": {"enabled": True, "key_file": str(keys.private),
                                    "every_events": 10_000},
                },
                "destinations": [{"type": "store"}],
            },
            "console": {
                "clusters": [{"name": "offline", "id": "prod-eu-1",
                              "bootstrap_servers": ["127.0.0.1:9"]}],
                "users": [{"username": "root", "password_hash": hash_password("root-pw"),
                           "roles": ["ops"]}],
                "rbac": {"admin_roles": ["ops"], "policies": []},
            },
        }
    )  # fmt: skip


def record_and_index(config: Config, events: int) -> tuple[float, float]:
    started = time.perf_counter()
    with kaudit.open(config) as session:
        generate(session, events, seed=7, spread_seconds=SPREAD_SECONDS)
        session.flush(3600)  # the machine may be busy: wait as long as it takes
    recorded = time.perf_counter() - started
    started = time.perf_counter()
    assert index_new(config) == events
    return recorded, time.perf_counter() - started


def index_new(config: Config) -> int:
    """Index the events logged since the last call, as the store exporter does."""
    store = store_destination(config)
    assert store is not None
    path = store.index_path(config.data_path)
    runner = ExporterRunner(
        StoreExporter(store, config.data_path),
        log_dir=config.log_dir,
        cursor=Cursor(path.with_suffix(".cursor.json")),
    )
    try:
        return runner.drain()
    finally:
        runner.close()


def user_log_pages(
    app: Any, client: TestClient, session: kaudit.AuditSession, config: Config, own: int,
    requests: int,
) -> list[float]:  # fmt: skip
    """Give the signed-in user (root) `own` console events of their own, index them, and
    time their log's pages: the first, then older ones by the page's keyset link."""
    recorder = app.state.console.recorder
    user = ConsoleUser(provider="local", login="root", id="root", roles=("ops",))
    for n in range(own):
        recorder.auth(
            "auth.login", provider="local", login="root", user=user,
            info=RequestInfo(request_id=f"bench-{n}", source_address="192.0.2.1"),
            result="success",
        )  # fmt: skip
    session.flush(3600)
    index_new(config)
    samples: list[float] = []
    url = "/my-log"
    while len(samples) < requests:
        ms, answer = timed(partial(client.get, url))
        assert answer.status_code == 200, answer.text[:300]
        assert answer.text.count('<tr class="event"') > 0
        samples.append(ms)
        older = re.search(r'href="(/my-log\?after=[^"]+)" rel="next"', answer.text)
        url = older[1].replace("&amp;", "&") if older else "/my-log"
    return samples


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    answer = call()
    return (time.perf_counter() - t0) * 1000, answer


def login(client: TestClient) -> None:
    page = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    answer = client.post(
        "/login", data={"username": "root", "password": "root-pw", "csrf_token": token[1]}
    )
    assert answer.status_code == 303, answer.text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=60, help="requests per measure")
    parser.add_argument(
        "--own-events", type=int, default=1000, help="the user's own events for /my-log"
    )
    args = parser.parse_args()
    rng = random.Random(3)
    with tempfile.TemporaryDirectory(dir=os.getcwd(), prefix="bench-console-pages-") as d:
        config = make_config(Path(d))
        recorded, indexed = record_and_index(config, args.events)
        print(f"recorded {args.events:,} events in {recorded:.1f}s, indexed in {indexed:.1f}s")
        with kaudit.open(config) as session:
            started = time.perf_counter()
            app = build_app(config, session.recorder)
            # The console reads the log ahead (proofs, the map's cache) from the start;
            # measured apart, then the pages as people use them afterwards.
            assert app.state.log_view.warmed.wait(3600)
            warm_up = time.perf_counter() - started
            print(f"read ahead at start: {warm_up:.1f}s")
            client = TestClient(app, follow_redirects=False)
            login(client)

            page_ms: list[float] = []
            by_filter: dict[str, list[float]] = {}
            cursors: list[str] = []
            rounds = 0
            while len(page_ms) < args.requests:
                flt = FILTERS[rounds % len(FILTERS)]
                rounds += 1
                name = "&".join(f"{k}={v}" for k, v in flt.items()) or "(none)"
                ms, answer = timed(lambda flt=flt: client.get("/audit", params=flt))
                assert answer.status_code == 200, answer.text[:300]
                page_ms.append(ms)
                by_filter.setdefault(name, []).append(ms)
                api = client.get("/api/v1/audit/events", params={**flt, "size": 50}).json()
                after = api["next"]
                for _ in range(3):  # deeper pages by keyset
                    if after is None:
                        break
                    ms, answer = timed(
                        lambda flt=flt, after=after: client.get(
                            "/audit", params={**flt, "after": after}
                        )
                    )
                    assert answer.status_code == 200
                    page_ms.append(ms)
                    by_filter[name].append(ms)
                    cursors.append(after)
                    after = client.get(
                        "/api/v1/audit/events", params={**flt, "size": 50, "after": after}
                    ).json()["next"]
            for name, samples in by_filter.items():
                print(f"  {name}: median {statistics.median(samples):.1f} ms")
            print(f"audit log pages: p50 {percentile(page_ms, 0.5):.1f} ms, "
                  f"p95 {percentile(page_ms, 0.95):.1f} ms ({len(page_ms)} pages)")  # fmt: skip

            ids = [
                e["event_id"]
                for e in client.get("/api/v1/audit/events", params={"size": 200}).json()["events"]
            ]
            ids += [
                e["event_id"]
                for c in rng.sample(cursors, min(len(cursors), 20))
                for e in client.get("/api/v1/audit/events", params={"after": c}).json()["events"][
                    :5
                ]
            ]
            first_ms, answer = timed(lambda: client.get(f"/events/{ids[-1]}"))
            assert answer.status_code == 200
            detail_ms: list[float] = []
            statuses: dict[str, int] = {}
            for event_id in rng.choices(ids, k=args.requests):
                ms, answer = timed(lambda event_id=event_id: client.get(f"/events/{event_id}"))
                assert answer.status_code == 200
                detail_ms.append(ms)
                for status in ("verified", "pending", "failed", "unchecked"):
                    if f"badge-{status}" in answer.text:
                        statuses[status] = statuses.get(status, 0) + 1
            print(f"event detail: first {first_ms:.0f} ms, p50 "
                  f"{percentile(detail_ms, 0.5):.1f} ms, p95 {percentile(detail_ms, 0.95):.1f} "
                  f"ms; badges {statuses}")  # fmt: skip

            map_first, answer = timed(lambda: client.get("/map", params={"period": "7d"}))
            assert answer.status_code == 200
            map_later = [timed(lambda: client.get("/map", params={"period": "7d"}))[0]
                         for _ in range(5)]  # fmt: skip
            print(f"map 7d: first {map_first:.0f} ms, then median "
                  f"{statistics.median(map_later):.0f} ms")  # fmt: skip
            user_ms = user_log_pages(app, client, session, config, args.own_events, args.requests)
            print(f"user log pages: p50 {percentile(user_ms, 0.5):.1f} ms, "
                  f"p95 {percentile(user_ms, 0.95):.1f} ms")  # fmt: skip
            client.close()
    print(
        json.dumps(
            {
                "benchmark": "console_pages",
                "events": args.events,
                "audit_log_page_p50_ms": round(percentile(page_ms, 0.5), 1),
                "audit_log_page_p95_ms": round(percentile(page_ms, 0.95), 1),
                "read_ahead_at_start_s": round(warm_up, 1),
                "audit_log_page_median_ms_by_filter": {
                    k: round(statistics.median(v), 1) for k, v in by_filter.items()
                },
                "event_detail_first_ms": round(first_ms, 1),
                "event_detail_p50_ms": round(percentile(detail_ms, 0.5), 1),
                "event_detail_p95_ms": round(percentile(detail_ms, 0.95), 1),
                "map_7d_first_ms": round(map_first, 1),
                "map_7d_ms": round(statistics.median(map_later), 1),
                "badges": statuses,
                "user_log_own_events": args.own_events,
                "user_log_page_p50_ms": round(percentile(user_ms, 0.5), 1),
                "user_log_page_p95_ms": round(percentile(user_ms, 0.95), 1),
            }
        )
    )


if __name__ == "__main__":
    main()
