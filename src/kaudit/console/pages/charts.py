"""Charts and the client–topic map as SVG drawn on the server: no script, nothing to
vendor, allowed by the console's strict Content-Security-Policy, readable by a test.

Every text is escaped; every mark has a `<title>` (its figures, shown on hover and read
by screen readers) and every node of the map is a link that filters the audit log.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import urlencode

from markupsafe import Markup, escape

from kaudit.store.browse import Flow

__all__ = ["MAX_MAP_FLOWS", "bar_chart", "flow_map", "human_bytes"]

PALETTE = (
    "#0969da",
    "#cf222e",
    "#9a6700",
    "#1a7f37",
    "#8250df",
    "#bf3989",
    "#57606a",
    "#0550ae",
    "#953800",
    "#116329",
)
MAX_MAP_FLOWS = 400
"""Flows drawn on the map (most records first); the rest are listed as hidden, and the
search box narrows the map to what matters."""


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def bar_chart(hours: Sequence[tuple[int, dict[str, int]]], title: str) -> Markup:
    """Stacked bars, one per hour, with a legend."""
    keys = sorted({k for _, counts in hours for k in counts})
    colour = {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(keys)}
    top = max((sum(c.values()) for _, c in hours), default=0) or 1
    width, height, left = 960, 220, 48
    step = (width - left) / max(len(hours), 1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height + 40}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
        f'<text x="0" y="12" class="axis">{top}</text>'
        f'<text x="0" y="{height}" class="axis">0</text>',
    ]
    for i, (start, counts) in enumerate(hours):
        x = left + i * step
        y = float(height)
        hour = datetime.fromtimestamp(start / 1000, UTC).strftime("%Y-%m-%d %H:00Z")
        for k in keys:
            n = counts.get(k, 0)
            if not n:
                continue
            h = n / top * (height - 16)
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(step - 1, 1):.1f}" height="{h:.1f}" '
                f'fill="{colour[k]}"><title>{escape(hour)} {escape(k)}: {n}</title></rect>'
            )
        if i % max(len(hours) // 6, 1) == 0:
            parts.append(
                f'<text x="{x:.1f}" y="{height + 14}" class="axis">{escape(hour[5:16])}</text>'
            )
    for i, k in enumerate(keys):
        x = left + i * 130
        parts.append(
            f'<rect x="{x}" y="{height + 24}" width="10" height="10" fill="{colour[k]}"/>'
            f'<text x="{x + 14}" y="{height + 33}" class="legend">{escape(k)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _label(*parts: str | None) -> str:
    return " · ".join(p for p in parts if p)


def _fit(text: str, most: int = 40) -> str:
    return text if len(text) <= most else text[: most - 1] + "…"


def _link(params: dict[str, str]) -> str:
    return "/audit?" + urlencode(params)


def flow_map(flows: Sequence[Flow], since: str) -> Markup:
    """Producers (principal · client) on the left, topics in the middle, consumers
    (principal · client · group) on the right; an edge per flow, as wide as the log of
    its records, its records, bytes and events in its title."""
    shown = list(flows[:MAX_MAP_FLOWS])
    producers: dict[str, dict[str, str]] = {}
    consumers: dict[str, dict[str, str]] = {}
    topics: dict[str, dict[str, str]] = {}
    for f in shown:
        side = producers if f.direction == "produce" else consumers
        label = _label(f.principal, f.client, f.group if f.direction == "consume" else None)
        kind = "records.produced" if f.direction == "produce" else "records.consumed"
        side.setdefault(
            label,
            {
                "actor": f.principal,
                "type": kind,
                "since": since,
                **({"q": f.client} if f.client else {}),
            },
        )
        topics.setdefault(f.topic, {"resource": f"topic:{f.topic}", "since": since})
    columns = [sorted(producers), sorted(topics), sorted(consumers)]
    row_h, top_pad, width = 24, 40, 1020
    height = top_pad + row_h * max((len(c) for c in columns), default=1) + 20
    xs = (10.0, 360.0, 710.0)
    text_w = 280.0  # labels are cut to fit (`_fit`); the full name is in their title
    tallest = max((len(c) for c in columns), default=1)
    # Each column spread over the height of the tallest, so short ones sit in the middle.
    place: list[dict[str, float]] = [
        {
            name: top_pad + (i + 0.5) * row_h * tallest / len(col) - row_h / 2
            for i, name in enumerate(col)
        }
        for col in columns
    ]
    top = float(max((f.records for f in shown), default=1) or 1)
    parts = [
        f'<svg class="map" viewBox="0 0 {width} {height}" role="img" '
        'aria-label="Client–topic map: producers, topics, consumers">',
        f'<text x="{xs[0]:.0f}" y="20" class="heading">Producers</text>'
        f'<text x="{xs[1]:.0f}" y="20" class="heading">Topics</text>'
        f'<text x="{xs[2]:.0f}" y="20" class="heading">Consumers</text>',
    ]
    for f in shown:
        label = _label(f.principal, f.client, f.group if f.direction == "consume" else None)
        w = 1 + 5 * math.log1p(f.records) / math.log1p(top)
        topic_y = place[1][f.topic] - 4
        if f.direction == "produce":
            x1, y_from, x2, y_to = xs[0] + text_w, place[0][label] - 4, xs[1] - 6, topic_y
        else:
            x1, y_from, x2, y_to = xs[1] + text_w, topic_y, xs[2] - 6, place[2][label] - 4
        mid = (x1 + x2) / 2
        title = (
            f"{label} {'→' if f.direction == 'produce' else '←'} {f.topic}: "
            f"{f.records:,} records, {human_bytes(f.bytes)}, {f.events} events"
        )
        parts.append(
            f'<path class="edge {f.direction}" d="M{x1:.0f},{y_from:.0f} C{mid:.0f},{y_from:.0f} '
            f'{mid:.0f},{y_to:.0f} {x2:.0f},{y_to:.0f}" stroke-width="{w:.1f}">'
            f"<title>{escape(title)}</title></path>"
        )
    for col, (names, links) in enumerate(
        ((columns[0], producers), (columns[1], topics), (columns[2], consumers))
    ):
        kind = ("producer", "topic", "consumer")[col]
        for name in names:
            parts.append(
                f'<a href="{escape(_link(links[name]))}" class="node {kind}">'
                f"<title>{escape(name)}</title>"
                f'<text x="{xs[col]:.0f}" y="{place[col][name]:.0f}">'
                f"{escape(_fit(name))}</text></a>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))
