"""The principal of a connection: named by a verified client certificate, or learned by
watching the connection's SASL exchange pass through.

The gateway never terminates SASL: the broker authenticates the client. The observer
reads the client's first token for the name it claims — PLAIN's authzid or authcid,
SCRAM's `a=` or `n=`, OAUTHBEARER's (unverified) JWT `sub` — and trusts it only once the
broker answers that exchange with error code 0. Re-authentication (KIP-368) runs the
same steps again on the open connection. A PLAIN password is never kept: the token is
read up to the authcid and dropped.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import orjson

ANONYMOUS = "User:ANONYMOUS"


@dataclass(frozen=True, slots=True)
class ClaimedIdentity:
    """What a client's SASL token says about who it is."""

    name: str | None
    delegation_token: bool = False


def certificate_principal(ssl_object: Any) -> str | None:
    """`User:CN=...,O=...` from a verified client certificate, as Kafka's default
    principal builder names TLS clients."""
    cert = ssl_object.getpeercert()
    if not cert:
        return None
    parts: list[str] = []
    for rdn in reversed(cert.get("subject", ())):
        for name, value in rdn:
            short = {"commonName": "CN", "organizationName": "O",
                     "organizationalUnitName": "OU", "countryName": "C",
                     "localityName": "L", "stateOrProvinceName": "ST"}.get(name, name)  # fmt: skip
            parts.append(f"{short}={value}")
    return f"User:{','.join(parts)}" if parts else None


def _scram_unescape(value: str) -> str:
    return value.replace("=2C", ",").replace("=3D", "=")


def plain_identity(token: bytes) -> ClaimedIdentity:
    """`[authzid] NUL authcid NUL password` → authzid or authcid; the password is not read."""
    first = token.find(b"\0")
    if first < 0:
        return ClaimedIdentity(None)
    second = token.find(b"\0", first + 1)
    if second < 0:
        return ClaimedIdentity(None)
    authzid = token[:first]
    authcid = token[first + 1 : second]
    chosen = authzid or authcid
    try:
        return ClaimedIdentity(chosen.decode("utf-8") or None)
    except UnicodeDecodeError:
        return ClaimedIdentity(None)


def scram_identity(token: bytes) -> ClaimedIdentity | None:
    """The client-first message `gs2-header n=user,r=nonce[,ext]`; None for later ones."""
    try:
        text = token.decode("utf-8")
    except UnicodeDecodeError:
        return ClaimedIdentity(None)
    if not (text[:2] in ("n,", "y,") or text.startswith("p=")):
        return None  # client-final message (c=...,r=...,p=...): nothing new
    parts = text.split(",")
    authzid = next((p[2:] for p in parts[1:2] if p.startswith("a=")), "")
    user = next((p[2:] for p in parts[2:] if p.startswith("n=")), "")
    token_auth = any(p == "tokenauth=true" for p in parts[3:])
    name = _scram_unescape(authzid or user) or None
    return ClaimedIdentity(name, delegation_token=token_auth)


def oauthbearer_identity(token: bytes) -> ClaimedIdentity:
    """`n,a=authzid,^Aauth=Bearer JWT^A^A` → the JWT's `sub` claim (not verified here: the
    broker verifies it, and the name is used only after the broker accepts)."""
    try:
        text = token.decode("utf-8")
    except UnicodeDecodeError:
        return ClaimedIdentity(None)
    for field in text.split("\x01"):
        if field.lower().startswith("auth=bearer "):
            jwt = field[len("auth=bearer ") :].strip()
            parts = jwt.split(".")
            if len(parts) < 2:
                return ClaimedIdentity(None)
            payload = parts[1] + "=" * (-len(parts[1]) % 4)
            try:
                claims = orjson.loads(base64.urlsafe_b64decode(payload))
            except (binascii.Error, ValueError):
                return ClaimedIdentity(None)
            sub = claims.get("sub") if isinstance(claims, dict) else None
            return ClaimedIdentity(sub if isinstance(sub, str) and sub else None)
    return ClaimedIdentity(None)


class SaslObserver:
    """Per connection: the mechanism chosen, the identity claimed, the principal trusted."""

    __slots__ = ("claimed", "exchanges", "logins", "mechanism", "principal", "token_auth")

    def __init__(self) -> None:
        self.mechanism: str | None = None
        self.claimed: str | None = None
        self.principal: str = ANONYMOUS
        self.token_auth = False
        self.exchanges = 0
        self.logins = 0  # exchanges the broker accepted on this connection

    @property
    def reauthenticated(self) -> bool:
        """Whether the last accepted exchange renewed an earlier login (KIP-368)."""
        return self.logins > 1

    def handshake(self, mechanism: str) -> None:
        """A SaslHandshake request: (re-)authentication starts with this mechanism."""
        self.mechanism = mechanism.upper()
        self.claimed = None
        self.exchanges = 0

    @property
    def exchanges_needed(self) -> int:
        """Client tokens until the broker has authenticated the client: SCRAM sends the
        client-first then the client-final message; PLAIN and OAUTHBEARER send one."""
        return 2 if (self.mechanism or "").startswith("SCRAM-") else 1

    def complete(self) -> bool:
        """Whether the exchange answered last was the final one of the mechanism."""
        return self.exchanges >= self.exchanges_needed

    def client_token(self, token: bytes) -> None:
        """A SaslAuthenticate request's auth_bytes (or a raw v0 token)."""
        self.exchanges += 1
        mechanism = self.mechanism or ""
        identity: ClaimedIdentity | None
        if mechanism == "PLAIN":
            identity = plain_identity(token)
        elif mechanism.startswith("SCRAM-"):
            identity = scram_identity(token)
        elif mechanism == "OAUTHBEARER":
            identity = oauthbearer_identity(token)
        else:
            identity = None  # GSSAPI and others carry no readable principal
        if identity is not None:
            self.claimed = identity.name
            self.token_auth = identity.delegation_token

    def claimed_principal(self) -> str:
        """The principal the client claims (for auth.failed records before acceptance).
        A delegation token's user name is the token id, not a principal."""
        if self.token_auth:
            return f"User:unknown(delegation token {self.claimed})"
        if self.claimed:
            return f"User:{self.claimed}"
        return f"User:unknown({self.mechanism})" if self.mechanism else ANONYMOUS

    def accepted(self, token_owner: str | None = None) -> str:
        """The broker accepted the exchange: the claimed principal is now trusted. A
        delegation token login acts as the token's owner: `token_owner`, when the gateway
        has seen the token created or described."""
        if self.token_auth and token_owner:
            self.principal = token_owner
        else:
            self.principal = self.claimed_principal()
        self.logins += 1
        return self.principal
