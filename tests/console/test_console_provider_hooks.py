"""What another login provider gets from the console (the `LoginHooks` contract): its
`oauth_*` state survives the round trip through the session cookie, `logged_in` starts a
session (and records `auth.login` with the provider) and redirects only to local paths,
`login_failed` records `auth.failed` and counts toward the limits. The provider here is a
test router standing in for the OIDC and GitHub routers, mounted on their public paths."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from kaudit.console.auth.hooks import LoginHooks
from kaudit.console.auth.local import SessionHooks
from kaudit.console.identity import ConsoleUser
from support.console import ConsoleHarness, console_config


def _provider(hooks: LoginHooks) -> APIRouter:
    router = APIRouter()

    @router.get("/auth/oidc/{name}/login")
    async def start(request: Request, name: str, next: str = "/") -> Response:
        request.session["oauth_state"] = f"state-for-{name}"
        request.session["oauth_next"] = next
        return RedirectResponse(f"/auth/oidc/{name}/callback?state=state-for-{name}", 303)

    @router.get("/auth/oidc/{name}/callback")
    async def callback(request: Request, name: str, state: str) -> Response:
        if request.session.get("oauth_state") != state:
            return await hooks.login_failed(request, f"oidc:{name}", None, "state mismatch")
        user = ConsoleUser(
            f"oidc:{name}", "jsmith", "sub-123", "John Smith", "[email protected]", ("dev",)
        )
        return await hooks.logged_in(request, user, request.session.get("oauth_next"))

    return router


@pytest.fixture
def console(tmp_path: Path) -> Iterator[ConsoleHarness]:
    """The console with the test provider's routes, users of role dev authorized."""
    console = ConsoleHarness(console_config(tmp_path, rbac={"authorized_roles": ["dev"]}))
    console.app.include_router(_provider(SessionHooks()))
    try:
        yield console
    finally:
        console.close()


def test_a_provider_login_starts_a_session_and_records_it(console: ConsoleHarness) -> None:
    client = console.client(follow_redirects=True)
    done = client.get("/auth/oidc/keycloak/login", params={"next": "/my-log"})
    assert done.status_code == 200 and done.url.path == "/my-log"
    me = client.get("/api/v1/me").json()
    assert (me["provider"], me["login"], me["id"]) == ("oidc:keycloak", "jsmith", "sub-123")
    (event,) = console.events("auth.login")
    assert event["details"]["provider"] == "oidc:keycloak"
    assert event["actor"]["ip_address"] == "testclient"
    # A new session: the flow's state went with the old one, so it cannot be replayed.
    replay = client.get("/auth/oidc/keycloak/callback", params={"state": "state-for-keycloak"})
    assert replay.status_code == 401


def test_a_provider_login_never_redirects_off_site(console: ConsoleHarness) -> None:
    client = console.client()
    start = client.get("/auth/oidc/x/login", params={"next": "https://evil.example/"})
    done = client.get(start.headers["location"])
    assert done.status_code == 303 and done.headers["location"] == "/"


def test_a_failed_provider_login_is_recorded_and_refused(console: ConsoleHarness) -> None:
    client = console.client()
    refused = client.get("/auth/oidc/x/callback", params={"state": "forged"})
    assert refused.status_code == 401
    (event,) = console.events("auth.failed")
    assert event["details"]["provider"] == "oidc:x"
    assert event["action"]["error"] == "state mismatch"
    assert client.get("/api/v1/me").status_code == 401
