"""The SVG charts and map drawn on the server escape every name, link each node to its
events, and draw empty periods without failing."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit
from xml.etree import ElementTree

from kaudit.console.pages.charts import MAX_MAP_FLOWS, bar_chart, flow_map
from kaudit.store.browse import Flow

EVIL = '<script>alert("x")</script>&'


def test_the_map_escapes_names_and_links_nodes_to_their_events() -> None:
    flows = [
        Flow("produce", f"User:{EVIL}", "billing-svc", "orders", None, 10, 2000, 1),
        Flow("consume", "User:bob", EVIL, "orders", "g1", 7, 700, 2),
    ]
    svg = str(flow_map(flows, "2026-11-30T00:00:00+00:00"))
    assert "<script>" not in svg
    root = ElementTree.fromstring(svg)  # well-formed: every name escaped
    links = {a.get("class"): parse_qs(urlsplit(a.get("href") or "").query) for a in root.iter("a")}
    assert links["node producer"]["actor"] == [f"User:{EVIL}"]
    assert links["node topic"]["resource"] == ["topic:orders"]
    assert links["node consumer"]["q"] == [EVIL]
    titles = [t.text for t in root.iter("title")]
    assert any(t and "10 records" in t and "2.0 kB" in t for t in titles)


def test_the_map_draws_the_largest_flows_and_charts_draw_empty_periods() -> None:
    flows = [Flow("produce", f"User:u{i}", None, f"t{i}", None, i, i, 1) for i in range(500)]
    svg = str(flow_map(flows, "since"))
    assert svg.count('class="edge produce"') == min(500, MAX_MAP_FLOWS)
    empty = str(bar_chart([(0, {}), (3_600_000, {})], "Nothing"))
    ElementTree.fromstring(empty)
    assert "<rect" not in empty
