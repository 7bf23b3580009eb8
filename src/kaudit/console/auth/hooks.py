"""What a login provider's routes call when a login ends, so that sessions, events and
rate limits stay with the console's core and every provider behaves the same."""

from __future__ import annotations

from typing import Protocol

from starlette.requests import Request
from starlette.responses import Response

from kaudit.console.identity import ConsoleUser


class LoginHooks(Protocol):
    """Implemented by the console's session layer; passed to each provider's router."""

    async def logged_in(
        self, request: Request, user: ConsoleUser, next_url: str | None
    ) -> Response:
        """Start a new session for `user` (new session id), record `auth.login`, and
        answer with a redirect to `next_url` when it is a local path, else to `/`."""
        ...

    async def login_failed(
        self, request: Request, provider: str, login: str | None, reason: str
    ) -> Response:
        """Record `auth.failed` (rate limits count it) and answer with the login page
        showing a message that does not leak why beyond what the user may know."""
        ...
