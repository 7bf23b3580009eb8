"""The principal of a connection: learned by watching the connection's SASL exchange
pass through (a verified client certificate's is tls_identity's).

The gateway never terminates SASL: the broker authenticates the client. The observer
reads the client's first token for the name it claims — PLAIN's authzid or authcid,
SCRAM's `a=` or `n=`, OAUTHBEARER's (unverified) JWT `sub` — and trusts it only once the
broker's answers say it accepted the client, mechanism by mechanism (`server_token`):
PLAIN's answer without an error; SCRAM's answer to the client-final message (the
server-first one is not a login); OAUTHBEARER's empty answer (an RFC 7628 error
challenge comes with error code 0 and is a refusal). GSSAPI's tokens cannot be read:
its rounds are counted, and it is a login once the broker answers a request outside the
exchange. After a SaslHandshake v0, tokens come without a Kafka header (`raw`), and the
broker sends nothing for GSSAPI's last one: a frame that `looks_like_request` ends that
exchange. Re-authentication (KIP-368) runs the same steps again on the open connection.
A PLAIN password is never kept: the token is read up to the authcid and dropped.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from kio.schema.index import api_key_map

_HEADER = struct.Struct(">hh")

ANONYMOUS = "User:ANONYMOUS"


@dataclass(frozen=True, slots=True)
class ClaimedIdentity:
    """What a client's SASL token says about who it is."""

    name: str | None
    delegation_token: bool = False


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


Verdict = Literal["continue", "accepted", "failed", "settled", "unconfirmed"]
"""What the broker's answer to a client token means: more tokens follow (`continue`);
the broker accepted the client (`accepted`) or refused it (`failed`); it refused it
and that failure was already recorded (`settled`: OAUTHBEARER's answer to the client's
reply to an error challenge); or it answered an opaque mechanism's token without an
error, which is a login once the broker answers a request that is not part of the
exchange (`unconfirmed`)."""

READABLE = ("PLAIN", "OAUTHBEARER", "SCRAM-SHA-256", "SCRAM-SHA-512")
"""Mechanisms whose tokens say who the client is and when the broker has accepted it;
the tokens of any other (GSSAPI) are opaque to the gateway."""


def oauthbearer_error(challenge: bytes) -> str:
    """The status of an RFC 7628 error challenge (`{"status":"invalid_token",...}`)."""
    try:
        status = orjson.loads(challenge).get("status")
    except (ValueError, AttributeError):
        status = None
    return f"OAUTHBEARER error challenge: {status if isinstance(status, str) else 'unreadable'}"


def looks_like_request(frame: bytes) -> bool:
    """Whether a whole frame (size first) starts with a Kafka request header: a known API
    key and a plausible version. No GSSAPI token does: they start with 0x60 (RFC 2743's
    framing) or a two-byte token id 0x01-0x05 and 0x00 or 0x04 (RFC 4121)."""
    if len(frame) < 14:  # size, key, version, correlation id, client id length
        return False
    key, version = _HEADER.unpack_from(frame, 4)
    return key in api_key_map and 0 <= version < 128


class SaslObserver:
    """Per connection: the mechanism chosen, the identity claimed, the principal trusted."""

    __slots__ = (
        "claimed", "failure", "logins", "mechanism", "principal", "rounds",
        "token_auth", "unconfirmed", "upstream", "verdict",
    )  # fmt: skip

    def __init__(self) -> None:
        self.mechanism: str | None = None
        self.claimed: str | None = None
        self.principal: str = ANONYMOUS
        self.token_auth = False
        self.rounds = 0  # client tokens in this exchange
        self.logins = 0  # exchanges the broker accepted on this connection
        self.failure: str | None = None  # why the broker refused, told before its error
        self.unconfirmed: Any = None  # the last token's request, for an opaque login
        self.verdict: Verdict | None = None  # of the broker's last answer
        # Whom the broker authorizes this connection as until a SASL login: the gateway's
        # own upstream identity (its TLS certificate's, or User:ANONYMOUS).
        self.upstream = ANONYMOUS

    @property
    def reauthenticated(self) -> bool:
        """Whether the last accepted exchange renewed an earlier login (KIP-368)."""
        return self.logins > 1

    @property
    def authorized_principal(self) -> str:
        """The principal the broker authorizes this connection's requests as: the one it
        accepted in a SASL login, else the gateway's own upstream identity."""
        return self.principal if self.logins else self.upstream

    @property
    def opaque(self) -> bool:
        """Whether the mechanism's tokens cannot be read (GSSAPI and any but READABLE)."""
        return self.mechanism not in READABLE

    def handshake(self, mechanism: str) -> None:
        """A SaslHandshake request: (re-)authentication starts with this mechanism."""
        self.mechanism = mechanism.upper()
        self.claimed = None
        self.token_auth = False
        self.rounds = 0
        self.failure = None
        self.unconfirmed = None
        self.verdict = None

    def client_token(self, token: bytes) -> None:
        """A SaslAuthenticate request's auth_bytes (or a raw v0 token). Only the first
        token says who the client is: later ones (SCRAM's client-final message,
        OAUTHBEARER's reply to an error challenge) never change the name claimed."""
        self.rounds += 1
        if self.rounds > 1:
            return
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

    def server_token(self, error_code: int, token: bytes, request: Any = None) -> Verdict:
        """The broker's answer to the last client token: its error code and auth bytes
        (a raw v0 answer has no error code: the broker closes the connection instead).
        `request` is kept for an opaque mechanism's login to be recorded with."""
        self.verdict = self._judge(error_code, token, request)
        return self.verdict

    def _judge(self, error_code: int, token: bytes, request: Any) -> Verdict:
        if error_code != 0:
            return "settled" if self.failure is not None else "failed"
        mechanism = self.mechanism or ""
        if mechanism == "PLAIN":
            return "accepted"
        if mechanism.startswith("SCRAM-"):
            if self.rounds < 2:
                return "continue"  # the server-first message
            if token.startswith(b"e="):  # RFC 5802 server-error
                self.failure = f"SCRAM server error: {token[2:64].decode('utf-8', 'replace')}"
                return "failed"
            return "accepted"  # the server-final message (v=...)
        if mechanism == "OAUTHBEARER":
            if not token:
                return "accepted"
            # RFC 7628: an error challenge, which the client answers with a lone ^A and
            # the broker then refuses. The broker has refused already.
            if self.failure is not None:
                return "settled"
            self.failure = oauthbearer_error(token)
            return "failed"
        self.unconfirmed = request
        return "unconfirmed"

    def claimed_principal(self) -> str:
        """The principal the client claims (for auth.failed records before acceptance).
        A delegation token's user name is the token id, not a principal."""
        if self.token_auth:
            return f"User:unknown(delegation token {self.claimed})"
        if self.claimed:
            return f"User:{self.claimed}"
        if self.logins:
            # A re-authentication refused before it named anyone (at the handshake, or an
            # opaque mechanism): Kafka refuses a change of principal on re-authentication,
            # so the one attempted is the connection's.
            return self.principal
        return f"User:unknown({self.mechanism})" if self.mechanism else ANONYMOUS

    def accepted(self, token_owner: str | None = None) -> str:
        """The broker accepted the exchange: the claimed principal is now trusted. A
        delegation token login acts as the token's owner: `token_owner`, when the gateway
        has seen the token created or described. An opaque mechanism (GSSAPI) names no
        principal the gateway can read: the connection's principal says so."""
        if self.token_auth and token_owner:
            self.principal = token_owner
        else:
            self.principal = self.claimed_principal()
        self.logins += 1
        self.unconfirmed = None
        return self.principal
