"""Login through OpenID Connect providers (Keycloak, Okta, Entra ID, Google, Dex…).

This module owns the authorization code flow with PKCE (S256) for each configured
`OidcProvider`: `/auth/oidc/{name}/login` sends the browser to the provider with a fresh
state, nonce and code challenge, kept in the session under `oauth_oidc_<name>`;
`/auth/oidc/{name}/callback` checks the state, exchanges the code, verifies the ID token
(signature against the provider's JWKS, `iss`, `aud`, `exp`, `nonce`) and hands the user,
with roles read from the configured claim, to `LoginHooks.logged_in`. Every failure goes
to `LoginHooks.login_failed` with a reason.

Authlib does the OAuth parts (authorization URL, PKCE, token request) and joserfc the
JWS/JWT; the discovery document and the key set are cached per provider.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from authlib.common.errors import AuthlibBaseError
from authlib.common.security import generate_token
from authlib.oidc.core import CodeIDToken
from fastapi import APIRouter, HTTPException, Request
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry
from starlette.responses import RedirectResponse, Response

from kaudit.config.console_auth import OidcProvider
from kaudit.console.auth.callback import LoginError, checked_code
from kaudit.console.auth.hooks import LoginHooks
from kaudit.console.auth.next_url import local_path
from kaudit.console.auth.oauth_client import AsyncOAuth2Client
from kaudit.console.identity import ConsoleUser

__all__ = ["OidcClient", "claim_at", "oidc_router"]

_METADATA_TTL_S = 3600.0
_CLOCK_LEEWAY_S = 60
# Signing algorithms we accept when the provider lists none (the spec's default).
_DEFAULT_ALGORITHMS = ("RS256",)


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted claim path (`realm_access.roles`), or None.

    A claim whose own name holds dots (Auth0's `https://example.com/roles`) is found by
    its full name first.
    """
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _roles(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(dict.fromkeys(str(v) for v in value if isinstance(v, str | int)))
    return ()


@dataclass
class _Discovered:
    """One provider's discovery document and keys, fetched when first needed."""

    metadata: dict[str, Any] = field(default_factory=dict)
    fetched_at: float = 0.0
    jwks: dict[str, Any] | None = None


class OidcClient:
    """A configured provider with its cached discovery document and key set."""

    def __init__(self, config: OidcProvider) -> None:
        self.config = config
        self.cache = _Discovered()

    @property
    def id(self) -> str:
        return f"oidc:{self.config.name}"

    def _http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self.config.timeout_s, follow_redirects=False)

    async def metadata(self) -> dict[str, Any]:
        if self.cache.metadata and time.monotonic() - self.cache.fetched_at < _METADATA_TTL_S:
            return self.cache.metadata
        url = self.config.metadata_url
        try:
            async with self._http() as http:
                response = await http.get(url, headers={"Accept": "application/json"})
                response.raise_for_status()
                metadata = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise LoginError(
                f"the provider's discovery document {url} is unavailable: {exc}"
            ) from exc
        if not isinstance(metadata, dict):
            raise LoginError(f"the provider's discovery document {url} is not a JSON object")
        # OpenID Connect Discovery 1.0 §4.3: the document must name the issuer we asked.
        if metadata.get("issuer", "").rstrip("/") != self.config.issuer:
            raise LoginError(
                f"the discovery document names issuer {metadata.get('issuer')!r}, "
                f"but the configured issuer is {self.config.issuer!r}"
            )
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(metadata.get(key), str):
                raise LoginError(f"the provider's discovery document has no {key}")
        self.cache = _Discovered(metadata, time.monotonic())
        return metadata

    async def key_set(self, *, refresh: bool = False) -> KeySet:
        if self.cache.jwks is None or refresh:
            uri = (await self.metadata())["jwks_uri"]
            try:
                async with self._http() as http:
                    response = await http.get(uri, headers={"Accept": "application/json"})
                    response.raise_for_status()
                    self.cache.jwks = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                raise LoginError(f"the provider's keys at {uri} are unavailable: {exc}") from exc
        try:
            return KeySet.import_key_set(self.cache.jwks)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise LoginError(f"the provider's key set cannot be read: {exc}") from exc

    def client(self, redirect_uri: str) -> AsyncOAuth2Client:
        config = self.config
        secret = config.client_secret.get_secret_value() if config.client_secret else None
        return AsyncOAuth2Client(
            client_id=config.client_id,
            client_secret=secret,
            token_endpoint_auth_method=config.auth_method,
            scope=" ".join(config.scopes),
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            timeout=config.timeout_s,
        )

    async def verify_id_token(self, id_token: str, nonce: str, access_token: str | None) -> Any:
        """The ID token's claims after checking signature, iss, aud, exp, iat and nonce."""
        metadata = await self.metadata()
        algorithms = metadata.get("id_token_signing_alg_values_supported") or list(
            _DEFAULT_ALGORITHMS
        )
        # "none" would accept an unsigned token: never, whatever the provider lists.
        registry = JWSRegistry(algorithms=[a for a in algorithms if a != "none"])
        try:
            try:
                token = jwt.decode(id_token, await self.key_set(), registry=registry)
            except InvalidKeyIdError:
                # The provider rotated its keys since we fetched them.
                token = jwt.decode(id_token, await self.key_set(refresh=True), registry=registry)
            params: dict[str, Any] = {"nonce": nonce, "client_id": self.config.client_id}
            if access_token:
                params["access_token"] = access_token
            claims = CodeIDToken(
                token.claims,
                token.header,
                {
                    "iss": {"essential": True, "values": [metadata["issuer"]]},
                    # Without this option Authlib skips the audience check.
                    "aud": {"essential": True, "values": [self.config.client_id]},
                },
                params,
            )
            claims.validate(leeway=_CLOCK_LEEWAY_S)
        except (JoseError, ValueError) as exc:
            raise LoginError(f"the ID token is not valid: {exc}") from exc
        return claims

    async def userinfo(self, access_token: str, subject: str) -> dict[str, Any]:
        """The userinfo claims, when the provider has the endpoint and they are the same
        user's; else empty (roles and names then come from the ID token alone)."""
        endpoint = (await self.metadata()).get("userinfo_endpoint")
        if not isinstance(endpoint, str):
            return {}
        try:
            async with self._http() as http:
                response = await http.get(
                    endpoint, headers={"Authorization": f"Bearer {access_token}"}
                )
                response.raise_for_status()
                info = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise LoginError(f"the provider's userinfo endpoint failed: {exc}") from exc
        # OIDC Core §5.3.2: a userinfo response for another subject must not be used.
        if not isinstance(info, dict) or info.get("sub") != subject:
            raise LoginError("the userinfo response is for another subject than the ID token")
        return info

    def user(self, claims: Mapping[str, Any]) -> ConsoleUser:
        config = self.config
        subject = str(claims["sub"])
        login = claim_at(claims, config.login_claim) or claims.get("email") or subject
        name = claims.get("name") or " ".join(
            str(claims[k]) for k in ("given_name", "family_name") if claims.get(k)
        )
        return ConsoleUser(
            provider=self.id,
            login=str(login),
            id=subject,
            name=name or None,
            email=claims.get("email") if isinstance(claims.get("email"), str) else None,
            roles=_roles(claim_at(claims, config.roles_claim)),
        )


def _session_key(name: str) -> str:
    return f"oauth_oidc_{name}"


def oidc_router(providers: list[OidcProvider], hooks: LoginHooks) -> APIRouter:
    """The login and callback routes of every OIDC provider in `providers`."""
    known = {p.name: OidcClient(p) for p in providers}
    if len(known) != len(providers):
        names = [p.name for p in providers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"OIDC provider names must be unique; repeated: {', '.join(duplicates)}")
    router = APIRouter(tags=["login"])

    def provider(name: str) -> OidcClient:
        found = known.get(name)
        if found is None:
            raise HTTPException(404, f"no OIDC provider called {name!r}")
        return found

    @router.get("/auth/oidc/{name}/login", name="oidc_login", include_in_schema=False)
    async def login(request: Request, name: str, next: str | None = None) -> Response:
        p = provider(name)
        redirect_uri = p.config.redirect_uri or str(request.url_for("oidc_callback", name=name))
        try:
            metadata = await p.metadata()
        except LoginError as exc:
            return await hooks.login_failed(request, p.id, None, exc.reason)
        state, nonce, verifier = generate_token(32), generate_token(32), generate_token(64)
        async with p.client(redirect_uri) as client:
            url, _ = client.create_authorization_url(
                metadata["authorization_endpoint"],
                state=state,
                code_verifier=verifier,
                nonce=nonce,
            )
        request.session[_session_key(name)] = {
            "state": state,
            "nonce": nonce,
            "verifier": verifier,
            "next": local_path(next),
            "redirect_uri": redirect_uri,
            "started": time.time(),
        }
        return RedirectResponse(url, status_code=302)

    @router.get("/auth/oidc/{name}/callback", name="oidc_callback", include_in_schema=False)
    async def callback(request: Request, name: str) -> Response:
        p = provider(name)
        # Popped whatever happens: a state is good for one callback only.
        pending = request.session.pop(_session_key(name), None)
        try:
            user, next_url = await _finish(p, request, pending)
        except LoginError as exc:
            return await hooks.login_failed(request, p.id, exc.login, exc.reason)
        return await hooks.logged_in(request, user, next_url)

    return router


async def _finish(p: OidcClient, request: Request, pending: Any) -> tuple[ConsoleUser, str | None]:
    params = request.query_params
    code = checked_code(params, pending, "the provider")
    metadata = await p.metadata()
    # RFC 9207: a provider that names itself in the answer must be the one we sent the
    # user to (a mix-up attack swaps in another provider's code).
    answered_by = params.get("iss")
    if answered_by is not None and answered_by != metadata["issuer"]:
        raise LoginError(
            f"the answer comes from issuer {answered_by!r}, not {metadata['issuer']!r}"
        )
    async with p.client(pending["redirect_uri"]) as client:
        try:
            token = await client.fetch_token(
                metadata["token_endpoint"],
                code=code,
                code_verifier=pending["verifier"],
                redirect_uri=pending["redirect_uri"],
            )
        except (AuthlibBaseError, httpx.HTTPError, ValueError) as exc:
            raise LoginError(f"the code could not be exchanged for tokens: {exc}") from exc
    id_token = token.get("id_token")
    if not isinstance(id_token, str):
        raise LoginError("the token response has no ID token (is 'openid' in the scopes?)")
    access_token = token.get("access_token")
    claims: dict[str, Any] = dict(await p.verify_id_token(id_token, pending["nonce"], access_token))
    if claim_at(claims, p.config.roles_claim) is None and isinstance(access_token, str):
        # Okta, Entra ID and others put groups in userinfo rather than the ID token.
        info = await p.userinfo(access_token, str(claims["sub"]))
        claims = {**info, **claims}
    return p.user(claims), pending.get("next")
