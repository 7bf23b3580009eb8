"""A `LoginHooks` for testing login providers' routers on their own: it records every
call and answers with JSON, so a test can assert on exactly what the provider handed
over (the console's real hooks, with sessions and events, are console-core's)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import FastAPI
from fastapi.routing import APIRouter
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kaudit.console.identity import ConsoleUser


@dataclass(frozen=True)
class Failure:
    provider: str
    login: str | None
    reason: str


@dataclass
class RecordingHooks:
    """Records `logged_in` / `login_failed` calls; answers 200 / 401 with JSON."""

    logins: list[tuple[ConsoleUser, str | None]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)

    async def logged_in(
        self, request: Request, user: ConsoleUser, next_url: str | None
    ) -> Response:
        self.logins.append((user, next_url))
        return JSONResponse({"logged_in": user.login, "next": next_url})

    async def login_failed(
        self, request: Request, provider: str, login: str | None, reason: str
    ) -> Response:
        self.failures.append(Failure(provider, login, reason))
        return JSONResponse({"failed": reason}, status_code=401)


def login_app(*routers: APIRouter) -> FastAPI:
    """A small app with a signed session cookie (SameSite=Lax, as the console's) and
    the given routers."""
    app = FastAPI()
    for router in routers:
        app.include_router(router)
    app.add_middleware(SessionMiddleware, secret_key="test-session-secret", same_site="lax")
    return app
