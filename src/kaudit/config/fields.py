"""What the configuration's sections share: the base model, errors, and common field types.

This module owns `ConfigModel` (frozen, refusing unknown keys, so a typo is an error
instead of a setting that silently does nothing), `config_error` (a validation error
whose message the loader shows as written), the `TypeSwitch` marker and `type_tag`
discriminator of unions chosen by a `type:` key, and the field types used by more than
one section: `HostPort`, `BootstrapServers` and `EventSelector`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

__all__ = [
    "BootstrapServers",
    "ConfigModel",
    "EventSelector",
    "HostPort",
    "TypeSwitch",
    "config_error",
    "type_tag",
]


class ConfigModel(BaseModel):
    """The base of every configuration model: frozen, and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def config_error(kind: str, message: str) -> PydanticCustomError:
    """A validation error of type `kaudit_<kind>` that the loader reports as `message`."""
    # The message travels as context so braces in it are never read as placeholders.
    return PydanticCustomError(f"kaudit_{kind}", "{message}", {"message": message})


# ---------------------------------------------------------------------------- type: unions


@dataclass(frozen=True, slots=True)
class TypeSwitch:
    """Marks a union chosen by its `type:` key; `kind` names it in error messages.

    Pydantic ignores this metadata; the loader reads it to say
    "unknown destination type 's3'; accepted: file".
    """

    kind: str


def type_tag(default: str | None) -> Callable[[Any], str | None]:
    """A discriminator reading `type`, falling back to `default` when the key is absent."""

    def tag(value: Any) -> str | None:
        if isinstance(value, Mapping):
            chosen = value.get("type")
            if chosen is None:
                return default
            return chosen if isinstance(chosen, str) else repr(chosen)
        found = getattr(value, "type", None)
        return found if isinstance(found, str) else None

    return tag


# ---------------------------------------------------------------------------- field types


def _servers(value: Any) -> Any:
    # The seed writes a YAML list; "host1:9092,host2:9092" is accepted as well.
    if isinstance(value, str):
        return [s.strip() for s in value.split(",") if s.strip()]
    return value


def _host_port(address: str) -> str:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise config_error("server", f"must be host:port (like kafka:9092), got {address!r}")
    return address


HostPort = Annotated[str, AfterValidator(_host_port)]
"""A `host:port` address with a port from 1 to 65535."""

BootstrapServers = Annotated[
    list[HostPort],
    BeforeValidator(_servers),
    Field(min_length=1),
]
"""Kafka bootstrap servers: a list of `host:port`, or one comma-separated string."""

EventSelector = list[str]
"""Event type names or globs (`topic.*`), checked against the catalog by `AuditConfig`."""
