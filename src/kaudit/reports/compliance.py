"""The monthly compliance report: the OSO seed's report generalised.

This module owns what the report says and in which formats: operations by category and
result, backup and restore operations (the seed's sections), denied access by actor and
by resource with the denied events themselves, ACL and configuration changes, the top
actors, events per day (a chart in HTML), and whether the log of the period verifies
(`kaudit verify`'s checks, when integrity is configured). Figures come from a `Search`
(the index, or a scan of the log), so the report and `kaudit search` always agree.
Formats: Markdown, HTML (Jinja2 templates in `templates/`), CSV and JSON.
"""

from __future__ import annotations

import csv
import io
import os
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
import orjson

from kaudit.config import Config
from kaudit.config.model import LocalLog
from kaudit.errors import SearchError
from kaudit.events.model import RESULTS
from kaudit.store.query import Filter, Hit, Search, open_search
from kaudit.store.schema import day_name
from kaudit.timeparse import parse_period
from kaudit.untrusted_text import spreadsheet_cell

REPORT_FORMATS = ("md", "html", "csv", "json")
CHANGE_TYPES = (
    "acl.created",
    "acl.deleted",
    "config.changed",
    "topic.config_changed",
    "auth.credentials_changed",
)
"""What the report lists as ACL and configuration changes."""
TOP_ACTORS = 10


def previous_month(now: datetime | None = None) -> str:
    """The month before `now`'s (the seed's script reports on last month)."""
    first = (now or datetime.now(UTC)).date().replace(day=1)
    last_month = first - timedelta(days=1)
    return f"{last_month.year:04d}-{last_month.month:02d}"


@dataclass
class IntegrityStatus:
    """Whether the period's log verifies: `status` is intact, tampered, not configured
    or not available (with why in `detail`)."""

    status: str
    detail: str
    checks: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    events_checked: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "detail": self.detail,
            "checks": self.checks,
            "findings": self.findings,
            "events_checked": self.events_checked,
        }


def integrity_status(
    config: Config, start: datetime, log_dir: Path | None = None
) -> IntegrityStatus:
    """Verify the local log (`log_dir`, default the configured one) from `start` on with
    the configured keys."""
    integrity = config.audit.integrity
    checkpoints = integrity.checkpoints.enabled and integrity.checkpoints.key_file
    signing = integrity.signing.enabled
    if not checkpoints and not signing:
        return IntegrityStatus(
            "not configured",
            "neither signed checkpoints nor HMAC signing is enabled "
            "(audit.integrity): the log cannot be shown to be unaltered",
        )
    if log_dir is None and not isinstance(config.audit.log, LocalLog):
        return IntegrityStatus(
            "not available",
            "the log is a Kafka topic; verify an export of it with `kaudit verify FILE`",
        )
    from kaudit.integrity.chain import signing_key
    from kaudit.integrity.keys import KeyRing, load_signer
    from kaudit.integrity.verify import verify_log

    ring = None
    if checkpoints:
        assert integrity.checkpoints.key_file is not None
        ring = KeyRing([load_signer(Path(integrity.checkpoints.key_file)).verifier])
    hmac_key = None
    if signing:
        value = os.environ.get(integrity.signing.key_env_var)
        if integrity.signing.key_file:
            hmac_key = signing_key(integrity.signing)
        elif value:
            hmac_key = value.encode()
        elif ring is None:
            return IntegrityStatus(
                "not available",
                f"HMAC signing is on but ${integrity.signing.key_env_var} is not set here",
            )
    # From the period's start to the end of the log: later checkpoints are what show
    # that the period's events were not cut off or rewritten afterwards.
    log_dir = log_dir or config.log_dir
    report = verify_log(log_dir, verifiers=ring, hmac_key=hmac_key, since=start)
    findings = [f"{f.kind}: {f.message}" for f in report.findings]
    return IntegrityStatus(
        "intact" if report.ok else "tampered",
        f"{log_dir}: {report.events:,} events checked (sequence {report.first_sequence} to "
        f"{report.last_sequence}), {report.checkpoints_checked} checkpoints",
        checks=list(report.checks),
        findings=findings,
        events_checked=report.events,
    )


@dataclass
class ComplianceReport:
    """Every figure of the report for one period."""

    period: str
    start: datetime
    end: datetime
    generated_at: datetime
    source: str
    total: int
    by_category: list[dict[str, Any]]
    by_type: list[tuple[str, int]]
    backup_operations: list[tuple[str, int]]
    restore_operations: list[tuple[str, int]]
    denied_total: int
    denied_by_actor: list[tuple[str, int]]
    denied_by_resource: list[tuple[str, int]]
    denied_events: list[dict[str, Any]]
    changes_total: int
    change_counts: list[tuple[str, int]]
    changes: list[dict[str, Any]]
    top_actors: list[dict[str, Any]]
    per_day: list[tuple[str, int]]
    integrity: IntegrityStatus
    max_rows: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "generated_at": self.generated_at.isoformat(),
            "source": self.source,
            "total_events": self.total,
            "operations_by_category": self.by_category,
            "events_by_type": [{"event_type": t, "count": n} for t, n in self.by_type],
            "backup_operations": [{"event_type": t, "count": n} for t, n in self.backup_operations],
            "restore_operations": [
                {"event_type": t, "count": n} for t, n in self.restore_operations
            ],
            "denied_total": self.denied_total,
            "denied_by_actor": [{"actor": a, "count": n} for a, n in self.denied_by_actor],
            "denied_by_resource": [{"resource": r, "count": n} for r, n in self.denied_by_resource],
            "denied_events": self.denied_events,
            "changes_total": self.changes_total,
            "change_counts": [{"event_type": t, "count": n} for t, n in self.change_counts],
            "changes": self.changes,
            "top_actors": self.top_actors,
            "events_per_day": [{"day": d, "count": n} for d, n in self.per_day],
            "integrity": self.integrity.to_dict(),
            "max_rows": self.max_rows,
        }


def _listing(hit: Hit) -> dict[str, Any]:
    event = hit.event()
    details = event.get("details") or {}
    action = event.get("action") or {}
    return {
        "timestamp": event.get("timestamp"),
        "event_type": hit.fields.event_type,
        "event_id": hit.fields.event_id,
        "actor": hit.fields.actor,
        "operation": details.get("operation") or action.get("operation"),
        "resource": details.get("resource") or hit.fields.resource,
        "result": hit.fields.result,
        "error": action.get("error"),
        "details": orjson.dumps(details, option=orjson.OPT_SORT_KEYS).decode(),
    }


def build_report(
    search: Search,
    period: str,
    *,
    integrity: IntegrityStatus,
    max_rows: int = 500,
    now: datetime | None = None,
) -> ComplianceReport:
    """Every figure for `period` (YYYY-MM) from `search`; event lists keep the newest
    `max_rows` (the counts are always complete)."""
    start, end = parse_period(period)
    window = Filter(since=start, until=end)

    categories: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(RESULTS, 0))
    for (category, result), n in search.count_by(window, ("category", "result")):
        categories[category][result] = n
    by_category: list[dict[str, Any]] = [
        {"category": c, **counts, "total": sum(counts.values())} for c, counts in categories.items()
    ]
    by_category.sort(key=lambda row: (-row["total"], row["category"]))
    by_type = [(t, n) for (t,), n in search.count_by(window, ("type",))]

    denied = Filter(since=start, until=end, result="denied")
    denied_by_actor = [(a, n) for (a,), n in search.count_by(denied, ("actor",))]
    denied_by_resource = [(r, n) for (r,), n in search.count_by(denied, ("resource",))]

    change_counts = [(t, n) for t, n in by_type if t in CHANGE_TYPES]
    changes: list[Hit] = []
    for change_type in CHANGE_TYPES:
        changes += search.search(Filter(since=start, until=end, type=change_type), max_rows)
    changes.sort(key=lambda h: h.fields.ts, reverse=True)

    actors: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(RESULTS, 0))
    for (actor, result), n in search.count_by(window, ("actor", "result")):
        actors[actor][result] = n
    ranked: list[dict[str, Any]] = [
        {"actor": a, "events": sum(c.values()), **c} for a, c in actors.items()
    ]
    ranked.sort(key=lambda row: (-row["events"], row["actor"]))
    top_actors = ranked[:TOP_ACTORS]

    days = dict(search.count_by(window, ("day",)))
    per_day = []
    day = start.date()
    while day < end.date():
        number = (day - date(1970, 1, 1)).days
        per_day.append((day_name(number), days.get((number,), 0)))
        day += timedelta(days=1)

    return ComplianceReport(
        period=period,
        start=start,
        end=end,
        generated_at=now or datetime.now(UTC),
        source=search.description,
        total=sum(n for _, n in by_type),
        by_category=by_category,
        by_type=by_type,
        backup_operations=[(t, n) for t, n in by_type if t.startswith("backup.")],
        restore_operations=[(t, n) for t, n in by_type if t.startswith("restore.")],
        denied_total=sum(n for _, n in denied_by_actor),
        denied_by_actor=denied_by_actor,
        denied_by_resource=denied_by_resource,
        denied_events=[_listing(h) for h in search.search(denied, max_rows)],
        changes_total=sum(n for _, n in change_counts),
        change_counts=change_counts,
        changes=[_listing(h) for h in changes[:max_rows]],
        top_actors=top_actors,
        per_day=per_day,
        integrity=integrity,
        max_rows=max_rows,
    )


def report_on(
    source: str | None, config: Config, period: str, *, fmt: str, max_rows: int = 500
) -> bytes:
    """`kaudit report`: the report of `period` (YYYY-MM) rendered in `fmt`, from SOURCE
    when given (as `kaudit search` reads it), else the configured index or log. Its
    integrity status is that of SOURCE when SOURCE is a log directory, else of the
    configured log."""
    from kaudit.reading import resolve_log_dir

    start, _ = parse_period(period)
    searcher = open_search(source, config)
    log_dir = resolve_log_dir(Path(source)) if source and Path(source).is_dir() else None
    try:
        return render(
            build_report(
                searcher,
                period,
                integrity=integrity_status(config, start, log_dir),
                max_rows=max_rows,
            ),
            fmt,
        )
    finally:
        searcher.close()


# ---------------------------------------------------------------------------- rendering


def _environment(autoescape: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("kaudit.reports", "templates"),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["md"] = _md_cell
    return env


def _md_cell(value: Any) -> str:
    """A Markdown table cell: pipes escaped, no line breaks."""
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _chart(per_day: list[tuple[str, int]]) -> dict[str, Any]:
    """Bar geometry for the events-per-day SVG."""
    width, height, gap = 720, 160, 2
    peak = max((n for _, n in per_day), default=0) or 1
    bar = (width - gap * len(per_day)) / max(1, len(per_day))
    bars = [
        {
            "x": round(i * (bar + gap), 2),
            "y": round(height - n / peak * height, 2),
            "w": round(bar, 2),
            "h": round(n / peak * height, 2),
            "day": day,
            "count": n,
        }
        for i, (day, n) in enumerate(per_day)
    ]
    return {"width": width, "height": height, "peak": peak, "bars": bars}


def render(report: ComplianceReport, fmt: str) -> bytes:
    """The report in `fmt` (one of REPORT_FORMATS)."""
    if fmt == "json":
        return orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2) + b"\n"
    if fmt == "csv":
        return _csv(report).encode()
    if fmt not in ("md", "html"):
        raise SearchError(f"report format {fmt!r}; accepted: {', '.join(REPORT_FORMATS)}")
    template = _environment(autoescape=fmt == "html").get_template(f"compliance.{fmt}.j2")
    text = template.render(r=report, results=RESULTS, chart=_chart(report.per_day))
    return text.encode()


class _SpreadsheetSafe:
    """A csv writer whose cells a spreadsheet reads as text, never as formulas."""

    def __init__(self, writer: Any) -> None:
        self._writer = writer

    def writerow(self, row: list[Any]) -> None:
        self._writer.writerow([spreadsheet_cell(v) for v in row])


def _csv(report: ComplianceReport) -> str:
    """One table: section, key, result, count (and for listed events their fields)."""
    out = io.StringIO()
    w = _SpreadsheetSafe(csv.writer(out, lineterminator="\n"))
    w.writerow(["section", "key", "result", "count", "timestamp", "actor", "resource", "detail"])
    w.writerow(["summary", "period", "", "", report.start.isoformat(), "", "", report.period])
    w.writerow(["summary", "total_events", "", report.total, "", "", "", ""])
    for row in report.by_category:
        for result in RESULTS:
            w.writerow(["operations", row["category"], result, row[result], "", "", "", ""])
    for t, n in report.by_type:
        w.writerow(["event_type", t, "", n, "", "", "", ""])
    for a, n in report.denied_by_actor:
        w.writerow(["denied_by_actor", a, "denied", n, "", "", "", ""])
    for r, n in report.denied_by_resource:
        w.writerow(["denied_by_resource", r, "denied", n, "", "", "", ""])
    for e in report.denied_events:
        w.writerow(
            [
                "denied_event",
                e["event_type"],
                e["result"],
                "",
                e["timestamp"],
                e["actor"],
                e["resource"],
                e["operation"],
            ]
        )
    for e in report.changes:
        w.writerow(
            [
                "change",
                e["event_type"],
                e["result"],
                "",
                e["timestamp"],
                e["actor"],
                e["resource"],
                e["details"],
            ]
        )
    for row in report.top_actors:
        w.writerow(["top_actor", row["actor"], "", row["events"], "", "", "", ""])
    for d, n in report.per_day:
        w.writerow(["events_per_day", d, "", n, "", "", "", ""])
    w.writerow(
        [
            "integrity",
            report.integrity.status,
            "",
            report.integrity.events_checked,
            "",
            "",
            "",
            report.integrity.detail,
        ]
    )
    return out.getvalue()
