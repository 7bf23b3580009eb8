"""The pages and API that read the audit log: the audit log itself (admins), each event
with its integrity, the overview, the client–topic map, the live tail and the exports.

Both the pages and `/api/v1/audit/...` call `LogView` (console/logview.py). Bad input is
a 400 with what was wrong and what is accepted: a JSON body from the API, the page with
the message from the pages; never a 500.
"""

from __future__ import annotations

import asyncio
import functools
import io
import time
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from kaudit.console.identity import ConsoleUser
from kaudit.console.logview import (
    PAGE_SIZES,
    SOURCES,
    BadQuery,
    LogQuery,
    LogView,
    TailFrom,
    event_json,
    event_owner,
    since_for,
)
from kaudit.console.pages.charts import MAX_MAP_FLOWS, bar_chart, flow_map
from kaudit.console.web import current_user, render, request_info, state
from kaudit.errors import KauditError
from kaudit.events.model import Resource
from kaudit.exporters.status import exporter_status
from kaudit.store.browse import Flow, hourly_counts
from kaudit.store.output import write_hits
from kaudit.store.query import Hit
from kaudit.store.schema import to_ms

__all__ = ["log_router"]

TAIL_POLL_SECONDS = 0.25
KEEPALIVE_SECONDS = 15.0
TAIL_RECHECK_SECONDS = 1.0
"""How often a live tail checks that its session is still live and still an admin's."""


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _user(request: Request) -> ConsoleUser:
    user = current_user(request)
    assert user is not None  # the app's guard lets no anonymous request through
    return user


def _is_admin(request: Request) -> bool:
    return state(request).service.rbac.is_admin(_user(request))


def _problem(request: Request, status: int, title: str, message: str) -> Response:
    if _is_api(request):
        return JSONResponse(
            {"error": title.lower().replace(" ", "_"), "message": message}, status_code=status
        )
    return render(
        request, "error.html", status_code=status, title=title, problem={"message": message}
    )


def _admins_only(request: Request) -> Response | None:
    if _is_admin(request):
        return None
    return _problem(
        request,
        403,
        "Refused",
        "the audit log is for console admins (rbac.admin_roles); your own actions are under My log",
    )


def _size(params: Mapping[str, str]) -> int:
    text = params.get("size", "").strip() or "50"
    if not text.isdigit() or int(text) not in PAGE_SIZES:
        raise BadQuery(f"size {text!r} is not one of {', '.join(map(str, PAGE_SIZES))}")
    return int(text)


def _member(obj: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = obj.get(name)
    return value if isinstance(value, dict) else {}


def row(hit: Hit) -> dict[str, Any]:
    """A table row as Kpow's audit log shows it (time, user, action, subjects, result),
    with the source and cluster."""
    event = hit.event()
    details = _member(event, "details")
    user = _member(details, "user")
    context = _member(event, "context")
    action = _member(event, "action")
    subjects = details.get("subjects")
    if not isinstance(subjects, list) or not subjects:
        subjects = [hit.fields.resource]
    return {
        "event_id": hit.fields.event_id,
        "time": event.get("timestamp"),
        "user": user.get("name") or user.get("login") or hit.fields.actor,
        "actor": hit.fields.actor,
        "action": hit.fields.event_type,
        "operation": action.get("operation"),
        "subjects": [str(s) for s in subjects],
        "result": hit.fields.result,
        "error": action.get("error"),
        "source": context.get("source"),
        "cluster": hit.fields.cluster,
    }


def _links(raw: Mapping[str, str], **extra: str) -> str:
    return urlencode({**raw, **extra})


def log_router(view: LogView) -> APIRouter:
    """The routes, reading the log through `view`."""

    router = APIRouter(include_in_schema=False)
    api = APIRouter(prefix="/api/v1/audit", tags=["audit log"])

    def guarded(handler: Callable[..., Response]) -> Callable[..., Response]:
        """Bad input becomes a 400 (JSON or the page), never a 500."""

        @functools.wraps(handler)
        def run(**kwargs: Any) -> Response:
            request: Request = kwargs["request"]
            try:
                return handler(**kwargs)
            except BadQuery as exc:
                return _problem(request, 400, "Bad request", str(exc))
            except KauditError as exc:
                return _problem(request, 503, "Search unavailable", str(exc))

        return run

    # -- the audit log ---------------------------------------------------------------------

    def audit_page(request: Request) -> Response:
        refused = _admins_only(request)
        if refused is not None:
            return refused
        params = request.query_params
        try:
            query = LogQuery.parse(params, view.default_since)
            size = _size(params)
            found = view.page(query, size, params.get("after"))
        except BadQuery as exc:
            if _is_api(request):
                raise
            raw = {k: v for k, v in params.items() if k != "after"}
            return render(
                request,
                "audit_log.html",
                status_code=400,
                problem=str(exc),
                raw=raw,
                rows=[],
                sources=SOURCES,
                sizes=PAGE_SIZES,
                size=50,
                tail=None,
                older=None,
                query_string=_links(raw),
            )
        if _is_api(request):
            return JSONResponse(
                {
                    "events": [orjson.loads(h.line) for h in found.hits],
                    "next": found.next.encode() if found.next else None,
                    "searched_to": found.searched_to,
                }
            )
        tail = view.tail_start()
        older = _links(query.raw, after=found.next.encode(), size=str(size)) if found.next else None
        return render(
            request,
            "audit_log.html",
            raw=query.raw,
            rows=[row(h) for h in found.hits],
            sources=SOURCES,
            sizes=PAGE_SIZES,
            size=size,
            older=older,
            searched_to=found.searched_to,
            tail=tail.encode() if tail else None,
            first_page=not params.get("after"),
            query_string=_links(query.raw),
        )

    router.get("/audit")(guarded(audit_page))
    api.get("/events")(guarded(audit_page))

    def export(request: Request, fmt: str) -> Response:
        refused = _admins_only(request)
        if refused is not None:
            return refused
        if fmt not in ("jsonl", "csv"):
            raise BadQuery(f"export format {fmt!r} is not one of jsonl, csv")
        query = LogQuery.parse(request.query_params, view.default_since)
        hits = view.export(query)
        out = io.BytesIO()
        write_hits(hits, fmt, out)
        # Recorded before the file is sent: who exported what, and how much.
        state(request).recorder.action(
            "audit.exported",
            console_action="export-audit-log",
            subjects=[fmt],
            user=_user(request),
            info=request_info(request),
            cluster_id=None,
            cluster_name=None,
            resource=Resource(type="audit_log", id="audit"),
            request={"format": fmt, "filter": query.raw},
            decision=None,
            result="success",
            outcome={"events": len(hits)},
        )
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        media = "application/jsonl" if fmt == "jsonl" else "text/csv; charset=utf-8"
        return Response(
            out.getvalue(),
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="kaudit-audit-{stamp}.{fmt}"'},
        )

    router.get("/audit/export.{fmt}")(guarded(export))
    api.get("/export.{fmt}")(guarded(export))

    @router.get("/audit/tail")
    async def tail(request: Request) -> Response:
        """New events matching the filter as server-sent events (`event: row`, a JSON row),
        from the log position the page was rendered at; each row's id is the position
        after it, so a browser that reconnects (`Last-Event-ID`) carries on from there."""
        if not await run_in_threadpool(_is_admin, request):
            return _problem(request, 403, "Refused", "the audit log is for console admins")
        try:
            query = LogQuery.parse(request.query_params, default_since=None)
            start = request.headers.get("last-event-id") or request.query_params.get("from")
            position = TailFrom.decode(start) if start else view.tail_start()
        except BadQuery as exc:
            return _problem(request, 400, "Bad request", str(exc))
        if position is None:
            return _problem(request, 400, "Bad request", "the live tail follows a local log")

        console = state(request)
        sid = request.session.get("sid")

        def still_admin() -> bool:
            # The session and the rights it was opened with are checked again as it runs:
            # a logout, a timeout or a lost admin role ends the stream.
            user = console.sessions.peek(sid)
            rbac = console.service.rbac
            return user is not None and rbac.authorized(user) and rbac.is_admin(user)

        async def stream() -> AsyncIterator[bytes]:
            batches = view.tail(query, position)
            yield b"retry: 1000\n: live tail\n\n"
            quiet = 0.0
            checked = time.monotonic()
            while not await request.is_disconnected():
                if time.monotonic() - checked >= TAIL_RECHECK_SECONDS:
                    checked = time.monotonic()
                    if not still_admin():
                        yield b"event: end\ndata: the session ended or lost its admin rights\n\n"
                        return
                batch, after = await run_in_threadpool(next, batches)
                mark = after.encode().encode()
                for hit in batch:
                    yield (
                        b"event: row\nid: " + mark + b"\ndata: " + orjson.dumps(row(hit)) + b"\n\n"
                    )
                if batch:
                    quiet = 0.0
                    continue
                await asyncio.sleep(TAIL_POLL_SECONDS)
                quiet += TAIL_POLL_SECONDS
                if quiet >= KEEPALIVE_SECONDS:  # a comment, so proxies keep the stream open
                    quiet = 0.0
                    yield b": idle\n\n"

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"}
        )

    # -- one event -------------------------------------------------------------------------

    def _readable(request: Request, event_id: str) -> tuple[Hit | None, Response | None]:
        hit = view.find(event_id)
        if hit is None:
            return None, _problem(
                request,
                404,
                "Not found",
                f"no event {event_id!r} in the search index (a new event is there once the "
                "store destination has indexed it)",
            )
        user = _user(request)
        if not _is_admin(request) and event_owner(hit.event()) != (user.provider, user.id):
            return None, _problem(
                request, 403, "Refused", "only console admins see events other than your own"
            )
        return hit, None

    def event_page(request: Request, event_id: str) -> Response:
        hit, refused = _readable(request, event_id)
        if hit is None:
            assert refused is not None
            return refused
        detail = view.detail(hit)
        check = detail.inclusion
        integrity = {
            "status": check.status,
            "message": check.message,
            "sequence_number": detail.sequence,
            "index": check.index,
            "chain": detail.chain,
            "checkpoint": check.checkpoint.note.decode() if check.checkpoint else None,
            "checkpoint_size": check.checkpoint.size if check.checkpoint else None,
            "proof": check.document is not None,
        }
        if _is_api(request):
            return JSONResponse({"event": detail.event, "integrity": integrity})
        return render(
            request,
            "event.html",
            event=detail.event,
            row=row(hit),
            integrity=integrity,
            pretty=event_json(detail.event),
        )

    router.get("/events/{event_id}")(guarded(event_page))
    api.get("/events/{event_id}")(guarded(event_page))

    def proof(request: Request, event_id: str) -> Response:
        hit, refused = _readable(request, event_id)
        if hit is None:
            assert refused is not None
            return refused
        check = view.detail(hit).inclusion
        if check.document is None:
            return _problem(request, 409, "No proof", check.message)
        body = orjson.dumps(check.document, option=orjson.OPT_INDENT_2) + b"\n"
        return Response(
            body,
            media_type="application/json",
            headers={"Content-Disposition": f'attachment; filename="proof-{event_id}.json"'},
        )

    router.get("/events/{event_id}/proof")(guarded(proof))
    api.get("/events/{event_id}/proof")(guarded(proof))

    # -- overview and map ------------------------------------------------------------------

    def overview(request: Request) -> Response:
        refused = _admins_only(request)
        if refused is not None:
            return refused
        period = request.query_params.get("period", "24h")
        since, until = since_for(period)
        query = LogQuery.parse({"since": since.isoformat(), "until": until.isoformat()})
        search = view.search()
        by_result = hourly_counts(search, query.filter, "result", to_ms(since), to_ms(until))
        by_category = hourly_counts(search, query.filter, "category", to_ms(since), to_ms(until))
        week = LogQuery.parse({}, view.default_since).filter
        principals = search.count_by(week, ["actor"])[:10]
        refusals = search.count_by(
            LogQuery.parse({"result": "denied"}, view.default_since).filter, ["actor", "resource"]
        )[:10]
        size, age = view.checkpoint_age()
        exporters = []
        try:
            for r in exporter_status(state(request).config):
                metrics = r.get("metrics") or {}
                exporters.append(
                    {
                        "destination": r["destination"],
                        "lag": r["lag_events"],
                        "last_error": metrics.get("last_error"),
                    }
                )
        except KauditError as exc:
            exporters.append({"destination": "?", "lag": None, "last_error": str(exc)})
        data = {
            "period": period,
            "by_result": by_result,
            "by_category": by_category,
            "top_since": view.default_since,
            "top_principals": [{"actor": k[0], "count": n} for k, n in principals],
            "top_refusals": [{"actor": k[0], "resource": k[1], "count": n} for k, n in refusals],
            "checkpoint": {"size": size, "age_seconds": age},
            "last_verify": None
            if view.last_verify is None
            else {
                "when": view.last_verify.when.isoformat(),
                "ok": view.last_verify.ok,
                "summary": view.last_verify.summary,
            },
            "exporters": exporters,
        }
        if _is_api(request):
            return JSONResponse(data)
        return render(
            request,
            "overview.html",
            data=data,
            result_chart=bar_chart(by_result, "Events per hour by result"),
            category_chart=bar_chart(by_category, "Events per hour by category"),
        )

    router.get("/overview")(guarded(overview))
    api.get("/overview")(guarded(overview))

    def verify_now(request: Request) -> Response:
        refused = _admins_only(request)
        if refused is not None:
            return refused
        view.run_verify()
        return RedirectResponse("/overview", status_code=303)

    router.post("/overview/verify")(guarded(verify_now))

    def flows(request: Request) -> Response:
        refused = _admins_only(request)
        if refused is not None:
            return refused
        params = request.query_params
        period = params.get("period", "7d").strip() or "7d"
        since, until = since_for(period)
        focus = params.get("focus", "").strip()
        found: list[Flow] = view.flows(since, until)
        if focus:
            found = [
                f
                for f in found
                if focus.lower()
                in " ".join(filter(None, (f.principal, f.client, f.topic, f.group))).lower()
            ]
        if _is_api(request):
            return JSONResponse({"period": period, "flows": [f.__dict__ for f in found]})
        return render(
            request,
            "map.html",
            period=period,
            focus=focus,
            flows=found,
            since=since.strftime("%Y-%m-%d %H:%M UTC"),
            svg=flow_map(found, since.isoformat()),
            max_flows=MAX_MAP_FLOWS,
        )

    router.get("/map")(guarded(flows))
    api.get("/flows")(guarded(flows))

    router.include_router(api)
    return router
