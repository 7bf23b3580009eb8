"""Hypothesis strategies for valid audit events and their parts, for any test to reuse.

"Valid" means what the recorder produces: a `category.verb` event type (catalog or
custom), a non-empty id, an RFC 3339 timestamp, and JSON-safe free-form values (strings
without lone surrogates, integers within 64 bits, finite floats, lists and objects of
those). Within that, every part is as arbitrary as the model allows: unicode
everywhere, optional parts absent or present, nested details.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from kaudit.events.catalog import CATALOG
from kaudit.events.model import (
    RESULTS,
    Action,
    Actor,
    ApiRef,
    AuditEvent,
    AuthCheck,
    Authorization,
    Context,
    Integrity,
    Resource,
)

__all__ = [
    "INT64",
    "actions",
    "actors",
    "api_refs",
    "audit_events",
    "authorizations",
    "contexts",
    "event_types",
    "integrities",
    "json_objects",
    "json_values",
    "resources",
    "text",
    "timestamps",
]

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
"""Integers orjson can write (it refuses wider ones)."""

# The utf-8 codec excludes lone surrogates, which no JSON encoder can write as UTF-8.
_CHARS = st.characters(codec="utf-8")


def text(min_size: int = 0, max_size: int = 16) -> st.SearchStrategy[str]:
    """Any unicode text JSON can carry."""
    return st.text(_CHARS, min_size=min_size, max_size=max_size)


def _optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


_scalars = (
    st.none() | st.booleans() | INT64 | st.floats(allow_nan=False, allow_infinity=False) | text()
)


def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Free-form JSON: scalars, lists and objects nested to any depth."""
    return st.recursive(
        _scalars,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(text(), children, max_size=4)
        ),
        max_leaves=max_leaves,
    )


def json_objects(max_size: int = 5) -> st.SearchStrategy[dict[str, Any]]:
    """A free-form JSON object, as `details` and RBAC policies are."""
    return st.dictionaries(text(), json_values(), max_size=max_size)


_OFFSETS = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
)


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    """RFC 3339 date-times: `Z` or a numeric offset, no to nine fractional digits."""
    when = draw(
        st.datetimes(
            min_value=datetime(1970, 1, 2),
            max_value=datetime(2199, 12, 30),
            timezones=_OFFSETS,
        )
    )
    digits = draw(st.sampled_from([0, 3, 6, 9]))
    base = when.strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{when.microsecond:06d}000"[:digits]
    offset = when.strftime("%z")
    zone = "Z" if offset == "+0000" and draw(st.booleans()) else f"{offset[:3]}:{offset[3:]}"
    return f"{base}{'.' + fraction if digits else ''}{zone}"


def event_types() -> st.SearchStrategy[str]:
    """Catalog names, mostly, and custom `category.verb` names."""
    custom = st.from_regex(r"[a-z][a-z0-9_]{0,10}\.[a-z][a-z0-9_]{0,14}", fullmatch=True)
    return st.sampled_from(CATALOG.names) | custom


_principals = st.builds(
    "{}:{}".format, st.sampled_from(["User", "Group", "ServiceAccount"]), text(1)
) | text(1)
_addresses = (
    st.ip_addresses().map(str)
    | st.builds("{}:{}".format, st.ip_addresses(v=4).map(str), st.integers(1, 65535))
    | text(1)
)


def actors() -> st.SearchStrategy[Actor]:
    return st.builds(
        Actor,
        type=st.sampled_from(["user", "service", "admin", "system"]) | text(),
        id=_principals,
        roles=st.lists(text(), max_size=3).map(tuple),
        ip_address=_optional(_addresses),
        user_agent=_optional(text()),
        client_id=_optional(text()),
        auth=_optional(
            st.sampled_from(["SCRAM-SHA-256", "PLAIN", "GSSAPI", "OAUTHBEARER"]) | text()
        ),
        authorized_as=_optional(_principals),
    )


def resources() -> st.SearchStrategy[Resource]:
    return st.builds(
        Resource,
        type=st.sampled_from(["topic", "group", "cluster", "acl", "backup"]) | text(1),
        id=text(1),
        path=_optional(text()),
    )


def actions() -> st.SearchStrategy[Action]:
    return st.builds(
        Action,
        operation=st.sampled_from(["create", "delete", "describe", "alter", "produce"]) | text(1),
        result=st.sampled_from(RESULTS),
        duration_ms=_optional(
            st.integers(0, 2**53) | st.floats(allow_nan=False, allow_infinity=False)
        ),
        error=_optional(text()),
    )


def authorizations() -> st.SearchStrategy[Authorization]:
    checks = st.builds(
        AuthCheck,
        operation=text(1),
        resource=text(1),
        allowed=st.booleans(),
        error_code=INT64,
    )
    return st.builds(
        Authorization,
        allowed=st.booleans(),
        action=_optional(text()),
        checks=st.lists(checks, max_size=3).map(tuple),
        policies=st.lists(json_objects(max_size=3), max_size=3).map(tuple),
    )


def api_refs() -> st.SearchStrategy[ApiRef]:
    return st.builds(ApiRef, key=INT64, name=text(1), version=INT64)


def contexts() -> st.SearchStrategy[Context]:
    return st.builds(
        Context,
        cluster_id=_optional(text()),
        environment=_optional(text()),
        correlation_id=_optional(text()),
        source=_optional(st.sampled_from(["gateway", "console", "sdk"]) | text()),
        host=_optional(text()),
        api=_optional(api_refs()),
    )


def integrities() -> st.SearchStrategy[Integrity]:
    return st.builds(
        Integrity,
        sequence_number=st.integers(0, 2**63 - 1),
        signature=_optional(text()),
        previous_signature=_optional(text()),
    )


def audit_events() -> st.SearchStrategy[AuditEvent]:
    """Any valid audit event, every optional part sometimes absent, sometimes present."""
    return st.builds(
        AuditEvent,
        timestamp=timestamps(),
        event_type=event_types(),
        event_id=text(1),
        version=st.just("1.0") | text(1),
        actor=actors(),
        resource=resources(),
        action=actions(),
        authorization=_optional(authorizations()),
        context=contexts(),
        details=json_objects(),
        integrity=_optional(integrities()),
    )
