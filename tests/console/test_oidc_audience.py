"""The ID token check refuses a token issued for another client (its `aud`), signed by
the provider's own key. The provider here is a local key set placed in the client's
cache: no OIDC server runs in these unit tests (tests/integration/test_console_oidc.py
logs in through a real Keycloak)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from kaudit.config.console_auth import OidcProvider
from kaudit.console.auth.callback import LoginError
from kaudit.console.auth.oidc import OidcClient, _Discovered

ISSUER = "https://sso.example.com/realms/ops"


def _client_and_key() -> tuple[OidcClient, RSAKey]:
    key = RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS256", "use": "sig"})
    client = OidcClient(OidcProvider(name="sso", issuer=ISSUER, client_id="console"))
    metadata = {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/auth",
        "token_endpoint": f"{ISSUER}/token",
        "jwks_uri": f"{ISSUER}/certs",
        "id_token_signing_alg_values_supported": ["RS256"],
    }
    client.cache = _Discovered(metadata, time.monotonic(), {"keys": [key.as_dict(private=False)]})
    return client, key


def _token(key: RSAKey, aud: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "u1", "aud": aud, "iat": now, "exp": now + 300, "nonce": "n"}
    return jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)


def test_a_token_for_this_client_is_accepted() -> None:
    client, key = _client_and_key()
    claims = asyncio.run(client.verify_id_token(_token(key, "console"), "n", None))
    assert claims["sub"] == "u1"


def test_a_token_for_another_client_is_refused() -> None:
    client, key = _client_and_key()
    for aud in ("other-client", ["other-client"]):
        with pytest.raises(LoginError, match="aud"):
            asyncio.run(client.verify_id_token(_token(key, aud), "n", None))
