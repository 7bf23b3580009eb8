"""The console's own login: local users with argon2id password hashes, and the session
layer every login provider ends in (`SessionHooks`, the `LoginHooks` of this console).

`SessionHooks.logged_in` checks the user may use the console (`authorized_roles`), starts
a new session (new id, new CSRF token) and records `auth.login`; `login_failed` counts the
failure for the rate limits and records `auth.failed`. Failed logins are limited per user
and per address; a limited attempt is refused without checking the password, and an
attempt counts against the limits while its password is checked (in a worker thread).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import APIRouter, Form
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from kaudit.config.console import LocalUser
from kaudit.console.auth.hooks import LoginHooks
from kaudit.console.identity import ConsoleUser
from kaudit.console.sessions import new_token, safe_next
from kaudit.console.web import current_user, render, request_info, state

__all__ = ["SessionHooks", "hash_password", "local_router"]

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
_DUMMY_HASH = _hasher.hash(new_token())
_LOGIN_FAILED = "Login failed: check the user name and password, or ask an administrator."


def hash_password(password: str) -> str:
    """An argon2id hash for `console.users[].password_hash`."""
    return _hasher.hash(password)


def _verify(user: LocalUser | None, password: str) -> bool:
    # An unknown user costs the same as a wrong password, so timing tells nothing.
    stored = user.password_hash.get_secret_value() if user is not None else _DUMMY_HASH
    try:
        return _hasher.verify(stored, password) and user is not None
    except (VerificationError, InvalidHashError):
        return False


class SessionHooks:
    """What every login provider calls when a login ends (`LoginHooks`)."""

    async def logged_in(
        self, request: Request, user: ConsoleUser, next_url: str | None
    ) -> Response:
        console = state(request)
        info = request_info(request)
        if not console.service.rbac.authorized(user):
            return await self.login_failed(
                request, user.provider, user.login, "no role in authorized_roles"
            )
        console.sessions.end(request.session.get("sid"))
        request.session.clear()  # nothing of the anonymous session carries over
        request.session["sid"] = console.sessions.start(user)
        request.session["csrf"] = new_token()
        console.recorder.auth(
            "auth.login", provider=user.provider, login=user.login, user=user, info=info,
            result="success",
        )  # fmt: skip
        return RedirectResponse(safe_next(next_url), status_code=303)

    async def login_failed(
        self, request: Request, provider: str, login: str | None, reason: str
    ) -> Response:
        console = state(request)
        info = request_info(request)
        console.limiter.failed(login, info.source_address)
        console.recorder.auth(
            "auth.failed", provider=provider, login=login, user=None, info=info,
            result="failure", error=reason,
        )  # fmt: skip
        return _login_page(request, None, _LOGIN_FAILED, 401)


def _provider_name(provider: Any) -> str:
    if isinstance(provider, Mapping):
        return str(provider.get("name"))
    return str(getattr(provider, "name", provider))


def _login_page(request: Request, next_url: str | None, error: str | None, status: int) -> Response:
    console = state(request).config.console
    assert console is not None
    return render(
        request,
        "login.html",
        status_code=status,
        next=safe_next(next_url),
        error=error,
        local=bool(console.users),
        oidc=[_provider_name(p) for p in console.oidc],
        github=console.github is not None,
    )


def local_router(hooks: LoginHooks) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/login")
    async def login_form(request: Request, next: str | None = None) -> Response:
        if current_user(request) is not None:
            return RedirectResponse(safe_next(next), status_code=303)
        return _login_page(request, next, None, 200)

    @router.post("/login")
    async def login(
        request: Request,
        username: str = Form(max_length=200),
        password: str = Form(max_length=1000),
        next_url: str | None = Form(default=None, max_length=2000, alias="next"),
    ) -> Response:
        console = state(request)
        info = request_info(request)
        stamp = console.limiter.attempt(username, info.source_address)
        if stamp is None:
            console.recorder.auth(
                "auth.failed", provider="local", login=username, user=None, info=info,
                result="denied", error="too many failed logins: rate limited",
            )  # fmt: skip
            return _login_page(request, next_url, "Too many failed logins; try again later.", 429)
        config = console.config.console
        assert config is not None
        found = next((u for u in config.users if u.username == username), None)
        try:
            # argon2 takes tens of milliseconds of CPU: off the event loop.
            verified = await run_in_threadpool(_verify, found, password)
        finally:
            # Counted again by `login_failed` if it failed, with no await in between.
            console.limiter.withdraw(username, info.source_address, stamp)
        if not verified or found is None:
            return await hooks.login_failed(request, "local", username, "wrong user or password")
        user = ConsoleUser(
            provider="local",
            login=found.username,
            id=found.username,
            name=found.name,
            email=found.email,
            roles=tuple(found.roles),
        )
        return await hooks.logged_in(request, user, next_url)

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        console = state(request)
        user = console.sessions.end(request.session.get("sid"))
        request.session.clear()
        if user is not None:
            console.recorder.auth(
                "auth.logout", provider=user.provider, login=user.login, user=user,
                info=request_info(request), result="success",
            )  # fmt: skip
        return RedirectResponse("/login", status_code=303)

    return router
