"""The audit log as the console's pages and API read it: one service for both.

This module owns turning a request's filter into the search `kaudit search` runs
(`LogQuery`), opening the search index once per worker thread, an event with its
integrity (the chain link and a server-checked inclusion proof), the overview's figures,
the client–topic flows and the live tail's reading of new lines. It reads through
`kaudit.store` (browse, query) and `kaudit.integrity` (prover), never Kafka.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from kaudit.config import Config
from kaudit.config.log import LocalLog
from kaudit.errors import KauditError, SearchError
from kaudit.integrity.chain import split_sealed
from kaudit.integrity.keys import KeyRing, load_signer, load_verifiers
from kaudit.integrity.prover import InclusionCheck, LogProver
from kaudit.log.segments import LogReader, Position, list_segments
from kaudit.store.browse import Cursor, Flow, FlowCache, Page, event_by_id, page, source_of
from kaudit.store.query import Filter, Hit, IndexSearch, Search, open_search, parse_filter
from kaudit.store.schema import NotAnEvent, read_event, to_ms

__all__ = [
    "FILTER_FIELDS",
    "EventView",
    "LogQuery",
    "LogView",
    "TailFrom",
    "event_owner",
]

log = logging.getLogger("kaudit.console")

FILTER_FIELDS = ("since", "until", "type", "actor", "resource", "result", "source", "cluster", "q")
"""The query parameters of a filter, as the pages' form and the API name them."""

SOURCES = ("gateway", "console", "sdk", "ingest", "broker")
PAGE_SIZES = (25, 50, 100, 200)
EXPORT_MAX_EVENTS = 100_000


class BadQuery(KauditError):
    """A filter, cursor or period that cannot be read: a 400 with this message."""


@dataclass(frozen=True)
class LogQuery:
    """What a page asked for: the filter (as `kaudit search` reads it) and the source."""

    filter: Filter
    source: str | None
    raw: dict[str, str]
    """The non-empty fields as given, for links and the form."""

    @classmethod
    def parse(cls, params: Mapping[str, str], default_since: str | None = "7d") -> LogQuery:
        """From query parameters; BadQuery naming what was wrong and what is accepted."""
        raw = {k: params[k].strip() for k in FILTER_FIELDS if params.get(k, "").strip()}
        if "since" not in raw and default_since:
            raw["since"] = default_since
        source = raw.get("source")
        if source is not None and source not in SOURCES:
            raise BadQuery(f"source {source!r} is not one of {', '.join(SOURCES)}")
        try:
            flt = parse_filter(
                since=raw.get("since"),
                until=raw.get("until"),
                type=raw.get("type"),
                actor=raw.get("actor"),
                resource=raw.get("resource"),
                result=raw.get("result"),
                cluster=raw.get("cluster"),
                query=raw.get("q"),
            )
        except OverflowError:
            raise BadQuery(
                "since or until is out of range; give a time between 1970 and 9999, or a "
                "duration back from now such as 30m, 24h or 7d"
            ) from None
        except (KauditError, ValueError) as exc:
            raise BadQuery(_plain(str(exc))) from None
        for name, when in (("since", flt.since), ("until", flt.until)):
            if when is not None and not datetime(1970, 1, 2, tzinfo=UTC) < when:
                raise BadQuery(f"{name} {raw[name]!r} is before 1970; give a later time")
        return cls(flt, source, raw)


def _plain(message: str) -> str:
    """A search error as the pages say it: the options are fields, not `--options`."""
    return (
        message.replace("--query", "text").replace("--since", "since").replace("--until", "until")
    )


def event_owner(event: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(provider, stable id) of the console user an event records, else (None, None)."""
    details = event.get("details")
    user = details.get("user") if isinstance(details, dict) else None
    if not isinstance(user, dict):
        return None, None
    return user.get("provider"), user.get("id")


@dataclass(frozen=True)
class EventView:
    """One event with what the page says about its integrity."""

    event: dict[str, Any]
    line: bytes
    sequence: int | None
    chain: str
    """What the chain link shows: linked to the previous event, broken, or not chained."""
    inclusion: InclusionCheck


@dataclass(frozen=True)
class TailFrom:
    """Where the live tail starts reading the local log (the end when the page loaded)."""

    segment: int
    offset: int

    def encode(self) -> str:
        return f"{self.segment}.{self.offset}"

    @classmethod
    def decode(cls, text: str) -> TailFrom:
        segment, _, offset = text.partition(".")
        if not (segment.isdigit() and offset.isdigit()):
            raise BadQuery(f"tail position {text!r} is not <segment>.<offset>")
        return cls(int(segment), int(offset))


@dataclass
class VerifyRun:
    when: datetime
    ok: bool
    summary: str


@dataclass
class LogView:
    """The console's reader of the audit log and its index (one per app)."""

    config: Config
    flows_cache: FlowCache = field(default_factory=FlowCache)
    last_verify: VerifyRun | None = None
    warmed: threading.Event = field(default_factory=threading.Event)
    _local: threading.local = field(default_factory=threading.local)
    _prover: LogProver | None = None
    _warmer: threading.Thread | None = None

    def __post_init__(self) -> None:
        if isinstance(self.config.audit.log, LocalLog):
            self._prover = LogProver(self.config.log_dir)

    @property
    def default_since(self) -> str:
        """How far back the pages look unless asked (`console.log_days`)."""
        console = self.config.console
        return f"{console.log_days if console is not None else 7.0:g}d"

    # -- searching -------------------------------------------------------------------------

    def search(self) -> Search:
        """This thread's search (the index, else a scan of the log), opened once."""
        found: Search | None = getattr(self._local, "search", None)
        if found is None:
            found = self._local.search = open_search(None, self.config)
        return found

    def page(self, query: LogQuery, size: int, after: str | None) -> Page:
        cursor = None
        if after:
            try:
                cursor = Cursor.decode(after)
            except SearchError as exc:
                raise BadQuery(str(exc)) from None
        return page(self.search(), query.filter, size=size, after=cursor, source=query.source)

    def export(self, query: LogQuery) -> list[Hit]:
        """Every match, newest first, up to `EXPORT_MAX_EVENTS`."""
        hits: list[Hit] = []
        after: Cursor | None = None
        while len(hits) < EXPORT_MAX_EVENTS:
            found = page(self.search(), query.filter, size=5000, after=after, source=query.source)
            hits += found.hits
            if found.next is None:
                break
            after = found.next
        return hits[:EXPORT_MAX_EVENTS]

    # -- one event -------------------------------------------------------------------------

    def find(self, event_id: str) -> Hit | None:
        return event_by_id(self.search(), event_id)

    def verifiers(self) -> KeyRing | None:
        """The checkpoint signer's public key: `<key>.pub` beside the configured private
        key, else derived from the private key."""
        key_file = self.config.audit.integrity.checkpoints.key_file
        if not key_file:
            return None
        private = Path(key_file).expanduser()
        public = private.with_name(private.name.removesuffix(".key") + ".pub")
        if public.is_file():
            return load_verifiers([public])
        return KeyRing([load_signer(private).verifier])

    def detail(self, hit: Hit) -> EventView:
        event = hit.event()
        seq = hit.fields.seq
        if self._prover is None:
            check = InclusionCheck(
                "unchecked",
                "this console checks proofs of a local log; for a Kafka log run "
                f"`kaudit prove {hit.fields.event_id}` and `kaudit verify-proof`",
            )
            return EventView(event, hit.line, seq, "not checked here", check)
        reason: str | None = None
        try:
            ring = self.verifiers()
        except KauditError as exc:
            ring = None
            reason = f"the public key cannot be loaded: {exc}"
        check = self._prover.check(hit.fields.event_id, seq, hit.line, ring)
        if reason and check.status == "unchecked":
            check = InclusionCheck(
                "unchecked", reason, check.index, check.checkpoint, check.document
            )
        return EventView(event, hit.line, seq, self._chain(check, hit.line), check)

    def _chain(self, check: InclusionCheck, line: bytes) -> str:
        try:
            _, signature, previous = split_sealed(line)
        except ValueError:
            return "not signed: the log has no HMAC chain"
        if signature is None:
            return "not signed: the log has no HMAC chain"
        if previous is None:
            return "signed; not chained (first event, or chain off)"
        if check.index is None or check.index == 0 or self._prover is None:
            return f"links to previous signature {previous}"
        try:
            _, before, _ = split_sealed(self._prover.line_at(check.index - 1))
        except (ValueError, OSError):
            return f"links to previous signature {previous}; the previous event is unreadable"
        if before == previous:
            return f"linked: the previous event's signature is {previous}"
        return f"BROKEN: previous_signature {previous} is not the previous event's {before}"

    def warm(self) -> None:
        """Read the log for proofs, and the produce and consume events for the map,
        ahead of the first page that needs them."""
        if self._prover is not None:
            self._prover.catch_up()
        search = open_search(None, self.config)
        try:
            if isinstance(search, IndexSearch):
                self.flows_cache.update(search)
        finally:
            search.close()

    def start_warming(self) -> None:
        """`warm` on a thread of its own (the console serves meanwhile); a log or index
        that cannot be read yet is read when a page asks."""

        def run() -> None:
            try:
                self.warm()
            except (KauditError, OSError) as exc:
                log.info("console: the log was not read ahead: %s", exc)
            finally:
                self.warmed.set()

        self._warmer = threading.Thread(target=run, name="kaudit-console-warm", daemon=True)
        self._warmer.start()

    # -- overview --------------------------------------------------------------------------

    def checkpoint_age(self) -> tuple[int | None, float | None]:
        """(size, age in seconds) of the latest checkpoint of the local log."""
        if self._prover is None:
            return None, None
        latest = self._prover.latest_checkpoint()
        if latest is None:
            return None, None
        files = sorted(self.config.log_dir.glob("*.checkpoints.jsonl"))
        age = time.time() - max(f.stat().st_mtime for f in files) if files else None
        return latest.size, age

    def run_verify(self) -> VerifyRun:
        """Verify the local log now, as `kaudit verify` does with the public key."""
        from kaudit.integrity.verify import verify_log

        if not isinstance(self.config.audit.log, LocalLog):
            raise BadQuery("the console verifies a local log; run `kaudit verify` for Kafka")
        ring = self.verifiers()
        if ring is None:
            raise BadQuery("no checkpoint key is configured (audit.integrity.checkpoints)")
        report = verify_log(self.config.log_dir, verifiers=ring)
        if report.ok:
            summary = f"intact: {report.events} events, {report.checkpoints_checked} checkpoints"
        else:
            summary = "NOT intact: " + "; ".join(f.message for f in report.findings[:3])
        self.last_verify = VerifyRun(datetime.now(UTC), report.ok, summary)
        return self.last_verify

    def flows(self, since: datetime, until: datetime) -> list[Flow]:
        return self.flows_cache.flows(self.search(), to_ms(since), to_ms(until))

    # -- live tail -------------------------------------------------------------------------

    def tail_start(self) -> TailFrom | None:
        """The end of the local log now (None for a Kafka log)."""
        if self._prover is None:
            return None
        segments = list_segments(self.config.log_dir)
        if not segments:
            return TailFrom(0, 0)
        last = segments[-1]
        size = (self.config.log_dir / f"{last:020d}.jsonl").stat().st_size
        return TailFrom(last, size)

    def tail(self, query: LogQuery, start: TailFrom) -> Iterator[tuple[list[Hit], TailFrom]]:
        """Batches of new matching events from `start` on, read as they are appended (an
        empty batch when there was nothing new), each with the position after it; the
        caller decides how long to follow."""
        reader = LogReader(self.config.log_dir)
        position = Position(start.segment, start.offset)
        # New events are after any `since`; an `until` in the past would show none.
        flt = replace(query.filter, since=None, until=None)
        while True:
            lines, position = reader.read(position, max_lines=500)
            batch: list[Hit] = []
            for raw in lines:
                line = raw.rstrip(b"\n")
                try:
                    fields, text = read_event(line)
                except NotAnEvent:
                    continue
                if not flt.matches_fields(fields):
                    continue
                if flt.text is not None and not flt.text.matches(text):
                    continue
                if query.source is not None and source_of(line) != query.source:
                    continue
                batch.append(Hit(fields, line))
            yield batch, TailFrom(position.segment, position.offset)


def since_for(period: str) -> tuple[datetime, datetime]:
    """A period back from now (`24h`, `7d`) as (since, until); BadQuery otherwise."""
    from kaudit.timeparse import parse_duration

    try:
        seconds = parse_duration(period)
    except ValueError as exc:
        raise BadQuery(str(exc)) from None
    if not 0 < seconds <= 366 * 86_400:
        raise BadQuery(f"period {period!r} must be between 1s and 366d")
    until = datetime.now(UTC)
    return until - timedelta(seconds=seconds), until


def event_json(event: Mapping[str, Any]) -> str:
    return orjson.dumps(event, option=orjson.OPT_INDENT_2).decode()
