"""Login through GitHub (github.com or GitHub Enterprise Server) OAuth.

This module owns the OAuth web flow against GitHub (with PKCE, which GitHub accepts,
and a state kept in the session under `oauth_github`) and the user it yields: provider
`github`, login, numeric id, name and primary verified email as in the Kpow seed, and
roles given by `GithubLogin.team_roles` for the organisation teams the user is on.
Authlib does the OAuth parts; the REST calls are plain httpx against `api_base_url`.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from authlib.common.errors import AuthlibBaseError
from authlib.common.security import generate_token
from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from kaudit.config.console_auth import GithubLogin
from kaudit.console.auth.callback import LoginError, checked_code
from kaudit.console.auth.hooks import LoginHooks
from kaudit.console.auth.next_url import local_path
from kaudit.console.auth.oauth_client import AsyncOAuth2Client
from kaudit.console.identity import ConsoleUser

__all__ = ["PROVIDER", "github_router"]

PROVIDER = "github"
_SESSION_KEY = "oauth_github"
_API_HEADERS = {
    "Accept": "application/vnd.github+json",
    "X-GitHub-Api-Version": "2022-11-28",
}
# GitHub lists at most 100 teams a page; a user on more is paged through, up to a bound
# so a misbehaving server cannot keep the login waiting forever.
_TEAMS_PER_PAGE = 100
_MAX_TEAM_PAGES = 20


def github_router(config: GithubLogin, hooks: LoginHooks) -> APIRouter:
    """The `/auth/github/login` and `/auth/github/callback` routes."""
    router = APIRouter(tags=["login"])

    def client(redirect_uri: str) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=config.client_id,
            client_secret=config.client_secret.get_secret_value(),
            # GitHub takes the client credentials in the form body.
            token_endpoint_auth_method="client_secret_post",
            scope=" ".join(config.scopes),
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            timeout=config.timeout_s,
        )

    @router.get("/auth/github/login", name="github_login", include_in_schema=False)
    async def login(request: Request, next: str | None = None) -> Response:
        redirect_uri = config.redirect_uri or str(request.url_for("github_callback"))
        state, verifier = generate_token(32), generate_token(64)
        async with client(redirect_uri) as oauth:
            url, _ = oauth.create_authorization_url(
                f"{config.oauth_base_url}/login/oauth/authorize",
                state=state,
                code_verifier=verifier,
            )
        request.session[_SESSION_KEY] = {
            "state": state,
            "verifier": verifier,
            "next": local_path(next),
            "redirect_uri": redirect_uri,
            "started": time.time(),
        }
        return RedirectResponse(url, status_code=302)

    @router.get("/auth/github/callback", name="github_callback", include_in_schema=False)
    async def callback(request: Request) -> Response:
        pending = request.session.pop(_SESSION_KEY, None)
        try:
            access_token = await _exchange(request, pending)
            user = await _user(config, access_token)
        except LoginError as exc:
            return await hooks.login_failed(request, PROVIDER, exc.login, exc.reason)
        return await hooks.logged_in(request, user, pending.get("next"))

    async def _exchange(request: Request, pending: Any) -> str:
        code = checked_code(request.query_params, pending, "GitHub")
        async with client(pending["redirect_uri"]) as oauth:
            try:
                token = await oauth.fetch_token(
                    f"{config.oauth_base_url}/login/oauth/access_token",
                    code=code,
                    code_verifier=pending["verifier"],
                    redirect_uri=pending["redirect_uri"],
                    headers={"Accept": "application/json"},
                )
            except (AuthlibBaseError, httpx.HTTPError, ValueError) as exc:
                raise LoginError(f"the code could not be exchanged for a token: {exc}") from exc
        access_token = token.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise LoginError("GitHub's token response has no access_token")
        return access_token

    return router


async def _user(config: GithubLogin, access_token: str) -> ConsoleUser:
    """The GitHub user behind `access_token`, with the roles their teams give."""
    headers = {**_API_HEADERS, "Authorization": f"Bearer {access_token}"}
    async with httpx.AsyncClient(
        base_url=config.api_base_url, headers=headers, timeout=config.timeout_s
    ) as api:
        profile = await _get(api, "/user")
        if not isinstance(profile, dict) or "login" not in profile or "id" not in profile:
            raise LoginError("GitHub's /user answer has no login or id")
        login = str(profile["login"])
        email = profile.get("email") if isinstance(profile.get("email"), str) else None
        if email is None:
            # The profile shows only a public email; the primary one needs /user/emails.
            email = _primary_email(await _get(api, "/user/emails", login=login))
        teams = await _teams(api, login)
    return ConsoleUser(
        provider=PROVIDER,
        login=login,
        id=str(profile["id"]),
        name=profile.get("name") if isinstance(profile.get("name"), str) else None,
        email=email,
        roles=config.roles_for(teams),
    )


async def _get(
    api: httpx.AsyncClient, path: str, *, login: str | None = None, **params: Any
) -> Any:
    try:
        response = await api.get(path, params=params or None)
        response.raise_for_status()
        return response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise LoginError(f"GitHub's API call {path} failed: {exc}", login) from exc


def _primary_email(emails: Any) -> str | None:
    if not isinstance(emails, list):
        return None
    for entry in emails:
        if isinstance(entry, dict) and entry.get("primary") and entry.get("verified"):
            email = entry.get("email")
            return email if isinstance(email, str) else None
    return None


async def _teams(api: httpx.AsyncClient, login: str) -> list[str]:
    """`org/team-slug` of every team the user is on (GET /user/teams, all pages)."""
    teams: list[str] = []
    for page in range(1, _MAX_TEAM_PAGES + 1):
        batch = await _get(api, "/user/teams", login=login, per_page=_TEAMS_PER_PAGE, page=page)
        if not isinstance(batch, list):
            raise LoginError("GitHub's /user/teams answer is not a list", login)
        for team in batch:
            org = team.get("organization") if isinstance(team, dict) else None
            if isinstance(org, dict) and isinstance(org.get("login"), str):
                teams.append(f"{org['login']}/{team.get('slug')}")
        if len(batch) < _TEAMS_PER_PAGE:
            return teams
    raise LoginError(
        f"the user is on more than {_TEAMS_PER_PAGE * _MAX_TEAM_PAGES} teams; "
        "refusing rather than guessing roles from part of them",
        login,
    )
