"""A local stand-in for GitHub's OAuth web flow and the REST endpoints a login reads.

github.com cannot be reached from where the tests run, and a real GitHub login needs a
real account, a registered OAuth app and a person at the consent page, so the GitHub
login is tested against this stand-in instead. It follows GitHub's documented behaviour
("Authorizing OAuth apps", REST "Users", "Emails" and "Teams"):

- `GET  /login/oauth/authorize`: the consent step; the signed-in user (set by the test)
  approves at once, and the browser is redirected to `redirect_uri` with `code` and
  `state`. PKCE (`code_challenge`, S256) is recorded with the code.
- `POST /login/oauth/access_token`: checks client id and secret, the code (single use,
  bound to its redirect_uri) and the PKCE verifier; errors are HTTP 200 with `error`,
  as GitHub answers them; JSON when asked with `Accept: application/json`, else a form.
- `GET  /api/v3/user`, `/api/v3/user/emails`, `/api/v3/user/teams` (paged with
  `per_page` / `page`): the GitHub Enterprise Server path layout, so the tests also show
  that `api_base_url` is honoured.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from support.asgi_server import serve

CLIENT_ID = "Iv1.kaudit-test"
CLIENT_SECRET = "kaudit-test-github-secret"
API_PREFIX = "/api/v3"


@dataclass
class GithubUser:
    login: str
    id: int
    name: str | None
    public_email: str | None
    emails: list[dict[str, Any]]
    teams: list[tuple[str, str]]
    """(org, team slug) pairs."""


USERS = {
    "octocat": GithubUser(
        login="octocat",
        id=583231,
        name="The Octocat",
        public_email=None,  # private: only /user/emails has it
        emails=[
            {"email": "octo@old.example", "primary": False, "verified": True},
            {"email": "octocat@acme.example", "primary": True, "verified": True},
        ],
        teams=[("acme", "kafka-admins"), ("acme", "payments"), ("other-org", "devs")],
    ),
    "hubot": GithubUser(
        login="hubot",
        id=9919,
        name=None,
        public_email="hubot@acme.example",
        emails=[],
        teams=[("big-org", f"team-{i}") for i in range(130)],
    ),
}


@dataclass
class GithubStandin:
    """The stand-in's state: who is signed in at "github.com", codes and tokens issued,
    and what each token request carried (for the tests to check)."""

    signed_in: str = "octocat"
    fail_teams: bool = False
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    base_url: str = ""

    @property
    def api_base_url(self) -> str:
        return self.base_url + API_PREFIX

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        if q.get("client_id") != CLIENT_ID:
            return PlainTextResponse("unknown client_id", status_code=404)
        code = secrets.token_hex(10)
        self.codes[code] = {
            "user": self.signed_in,
            "redirect_uri": q.get("redirect_uri", ""),
            "challenge": q.get("code_challenge", ""),
            "method": q.get("code_challenge_method", ""),
        }
        target = f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q.get('state', '')})}"
        return RedirectResponse(target, status_code=302)

    async def access_token(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        self.token_requests.append(form)
        answer = self._exchange(form)
        if "json" in request.headers.get("accept", ""):
            return JSONResponse(answer)
        return PlainTextResponse(urlencode(answer), media_type="application/x-www-form-urlencoded")

    def _exchange(self, form: dict[str, str]) -> dict[str, str]:
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return {"error": "incorrect_client_credentials"}
        grant = self.codes.pop(form.get("code", ""), None)  # single use
        if grant is None or grant["redirect_uri"] != form.get("redirect_uri"):
            return {
                "error": "bad_verification_code",
                "error_description": "The code passed is incorrect or expired.",
            }
        if grant["challenge"]:
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant["challenge"]:
                return {"error": "invalid_grant", "error_description": "PKCE verification failed"}
        token = "gho_" + secrets.token_hex(16)
        self.tokens[token] = grant["user"]
        return {"access_token": token, "token_type": "bearer", "scope": "read:user,user:email"}

    def _user(self, request: Request) -> GithubUser | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        login = self.tokens.get(token) if scheme.lower() in ("bearer", "token") else None
        return USERS.get(login) if login else None

    async def user(self, request: Request) -> Response:
        found = self._user(request)
        if found is None:
            return _bad_credentials()
        return JSONResponse(
            {
                "login": found.login,
                "id": found.id,
                "name": found.name,
                "email": found.public_email,
                "type": "User",
            }
        )

    async def emails(self, request: Request) -> Response:
        found = self._user(request)
        if found is None:
            return _bad_credentials()
        return JSONResponse(found.emails)

    async def teams(self, request: Request) -> Response:
        found = self._user(request)
        if found is None:
            return _bad_credentials()
        if self.fail_teams:
            return JSONResponse({"message": "Server Error"}, status_code=502)
        per_page = min(int(request.query_params.get("per_page", 30)), 100)
        page = int(request.query_params.get("page", 1))
        chosen = found.teams[(page - 1) * per_page : page * per_page]
        return JSONResponse(
            [
                {"slug": slug, "name": slug.title(), "organization": {"login": org}}
                for org, slug in chosen
            ]
        )

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/login/oauth/authorize", self.authorize),
                Route("/login/oauth/access_token", self.access_token, methods=["POST"]),
                Route(f"{API_PREFIX}/user", self.user),
                Route(f"{API_PREFIX}/user/emails", self.emails),
                Route(f"{API_PREFIX}/user/teams", self.teams),
            ]
        )


def _bad_credentials() -> Response:
    return JSONResponse({"message": "Bad credentials"}, status_code=401)


@contextmanager
def running_github_standin() -> Iterator[GithubStandin]:
    """The stand-in served on a free loopback port (uvicorn, in a thread)."""
    standin = GithubStandin()
    with serve(standin.app()) as url:
        standin.base_url = url
        yield standin
