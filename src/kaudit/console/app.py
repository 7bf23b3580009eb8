"""The console's web application: `build_app(config, recorder)` gives the FastAPI app with
the pages, the `/api/v1` API (and its OpenAPI document), the login routes of each
configured provider and the vendored static files.

Secure by default: every route is behind login except those in `PUBLIC_ROUTES`; every
state-changing request carries the session's CSRF token (form field `csrf_token` or
header `X-CSRF-Token`) except the bearer-token ingest; every response has a strict
Content-Security-Policy (no inline script) and a request id.
"""

from __future__ import annotations

import logging
import math
import secrets
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from kaudit.config import Config
from kaudit.console.audit import ConsoleRecorder
from kaudit.console.auth.github import github_router
from kaudit.console.auth.local import SessionHooks, local_router
from kaudit.console.auth.oidc import oidc_router
from kaudit.console.clusters import Clusters, KafkaCallError, UnknownClusterError
from kaudit.console.ingest import FailureLimit, ingest_router
from kaudit.console.rbac import load_rbac, policy_record
from kaudit.console.service import ActionDenied, ConsoleService
from kaudit.console.sessions import LoginLimiter, SessionStore, new_token
from kaudit.console.web import PAGES, BadRequest, ConsoleState, render, state
from kaudit.errors import SearchError, UsageError
from kaudit.events.model import AuditEvent
from kaudit.recorder.core import Recorder

__all__ = ["CSRF_EXEMPT", "PUBLIC_ROUTES", "build_app"]

log = logging.getLogger("kaudit.console")

PUBLIC_ROUTES = frozenset(
    {
        "/login",
        "/healthz",
        "/static",
        "/auth/oidc/{name}/login",
        "/auth/oidc/{name}/callback",
        "/auth/github/login",
        "/auth/github/callback",
        "/api/v1/events",
    }
)
"""Routes reachable without a session: logging in, health, static files, and the ingest
(which authenticates each request by bearer token)."""

CSRF_EXEMPT = frozenset({"/api/v1/events"})
"""State-changing routes without the CSRF check: bearer tokens, no cookie to ride on."""

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


class NotLoggedIn(Exception):
    """The request needs a live session and has none."""


class CsrfRefused(Exception):
    """A state-changing request without the session's CSRF token."""


async def guard(request: Request) -> None:
    """Runs before every route: the session's user, the login wall and the CSRF check."""
    console = state(request)
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    user = console.sessions.touch(request.session.get("sid"))
    if user is not None and not console.service.rbac.authorized(user):
        console.sessions.end(request.session.get("sid"))
        user = None
    request.state.user = user
    if user is None and path not in PUBLIC_ROUTES:
        raise NotLoggedIn()
    if request.method not in _SAFE_METHODS and path not in CSRF_EXEMPT:
        expected = request.session.get("csrf")
        sent = request.headers.get("x-csrf-token")
        if sent is None and "form" in request.headers.get("content-type", ""):
            form = await request.form()
            value = form.get("csrf_token")
            sent = value if isinstance(value, str) else None
        if not expected or not sent or not secrets.compare_digest(str(expected), sent):
            raise CsrfRefused()


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _denied(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ActionDenied)
    decision = exc.decision
    body = {
        "error": "denied",
        "action": decision.action,
        "reason": decision.reason,
        "policies": [policy_record(p) for p in decision.policies],
    }
    if _wants_json(request):
        return JSONResponse(body, status_code=403)
    return render(request, "error.html", status_code=403, title="Refused by RBAC", problem=body)


def _kafka_failed(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, KafkaCallError)
    body = {"error": "kafka", "code": exc.code, "message": str(exc)}
    if _wants_json(request):
        return JSONResponse(body, status_code=502)
    return render(request, "error.html", status_code=502, title="Kafka refused", problem=body)


def _bad_request(request: Request, exc: Exception) -> Response:
    body = {"error": "bad_request", "message": str(exc)}
    if _wants_json(request):
        return JSONResponse(body, status_code=400)
    return render(request, "error.html", status_code=400, title="Bad request", problem=body)


def _unknown_cluster(request: Request, exc: Exception) -> Response:
    body = {"error": "not_found", "message": str(exc)}
    if _wants_json(request):
        return JSONResponse(body, status_code=404)
    return render(request, "error.html", status_code=404, title="Not found", problem=body)


def _not_logged_in(request: Request, exc: Exception) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": "unauthenticated"}, status_code=401)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    login = request.url_for("login_form").include_query_params(next=target)
    return RedirectResponse(str(login.path) + "?" + login.query, status_code=303)


def _csrf_refused(request: Request, exc: Exception) -> Response:
    body = {"error": "csrf", "message": "missing or wrong CSRF token; reload the page"}
    if _wants_json(request):
        return JSONResponse(body, status_code=403)
    return render(request, "error.html", status_code=403, title="Refused", problem=body)


def _provider_routers(
    app: FastAPI, config: Config, hooks: SessionHooks, recorder: Recorder
) -> None:
    """The routes of the other login providers and of the ingest, when configured."""
    console = config.console
    assert console is not None
    if console.oidc:
        app.include_router(oidc_router(console.oidc, hooks))
    if console.github is not None:
        app.include_router(github_router(console.github, hooks))
    if console.ingest:
        limits = console.login_limits

        # The reply says an event was accepted only once it is durable in the log, so a
        # tool that got a 200 never has to send it again.
        def record(events: list[AuditEvent]) -> None:
            recorder.record_many(events, durable=True)

        app.include_router(
            ingest_router(
                console.ingest,
                record,
                console.ingest_max_body_bytes,
                catalog=recorder.catalog,
                # Failed ingest authentications share the login limits per address.
                failures=FailureLimit(
                    LoginLimiter(1, limits.max_failures_per_address, limits.window_seconds)
                ),
            )
        )


def build_app(config: Config, recorder: Recorder, *, base_dir: Path | None = None) -> FastAPI:
    """The console of `config.console`, recording to `recorder`; `base_dir` resolves a
    relative `rbac_file` (default: the working directory)."""
    from kaudit.console.api import api_router
    from kaudit.console.logview import LogView
    from kaudit.console.pages.logs import log_router
    from kaudit.console.pages.routes import pages_router

    console = config.console
    if console is None:
        raise UsageError("no console section in the configuration")
    rbac = load_rbac(console, base_dir)
    audit = ConsoleRecorder(recorder, console.verbosity)
    service = ConsoleService(console, rbac, audit, Clusters(console.clusters))
    app = FastAPI(
        title="kaudit console",
        description="Kafka administration, each action audited with its user and RBAC decision.",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(guard)],
    )
    app.state.console = ConsoleState(
        config=config,
        service=service,
        recorder=audit,
        sessions=SessionStore(console.session_idle_minutes * 60, console.session_max_hours * 3600),
        limiter=LoginLimiter(
            console.login_limits.max_failures_per_user,
            console.login_limits.max_failures_per_address,
            console.login_limits.window_seconds,
        ),
    )
    secret = console.session_secret.get_secret_value() if console.session_secret else new_token()
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret,
        session_cookie="kaudit_session",
        max_age=math.ceil(console.session_max_hours * 3600),
        same_site="lax",
        https_only=console.cookies_secure,
    )

    @app.middleware("http")
    async def headers(request: Request, call_next: Any) -> Response:
        request.state.request_id = new_token()[:22]
        response: Response = await call_next(request)
        response.headers["Content-Security-Policy"] = _CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["X-Request-ID"] = request.state.request_id
        if not request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    for exc_type, handler in (
        (ActionDenied, _denied),
        (KafkaCallError, _kafka_failed),
        (UnknownClusterError, _unknown_cluster),
        (BadRequest, _bad_request),
        (SearchError, _bad_request),
        (NotLoggedIn, _not_logged_in),
        (CsrfRefused, _csrf_refused),
    ):
        app.add_exception_handler(exc_type, handler)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/v1/openapi.json", include_in_schema=False)
    async def openapi() -> dict[str, Any]:
        return get_openapi(
            title=app.title, version="1", description=app.description, routes=app.routes
        )

    hooks = SessionHooks()
    app.include_router(local_router(hooks))
    _provider_routers(app, config, hooks, recorder)
    app.include_router(api_router())
    app.include_router(pages_router())
    app.state.log_view = LogView(config)
    app.state.log_view.start_warming()
    app.include_router(log_router(app.state.log_view))
    app.mount("/static", StaticFiles(directory=PAGES / "static"), name="static")
    return app
