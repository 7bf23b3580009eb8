"""Can this configuration run here? What `kaudit check-config` checks beyond the
schema: environment variables it names are set, the files it names exist and can be
read (private keys by their owner only), keys and TLS certificates load, URLs are well
formed and directories it writes to can be made. Each problem names the config key and
the file or variable; nothing is written and no network is used."""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, SecretStr

from kaudit.config import Config
from kaudit.errors import KauditError
from kaudit.files import check_private_key
from kaudit.integrity.chain import signing_key
from kaudit.integrity.keys import load_signer


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing that would stop the configuration from running: at `path` (a dotted
    config key), what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def readiness_problems(config: Config) -> list[Problem]:
    """Every problem found; empty when the configuration can run here. Relative paths
    are taken from the working directory, as kaudit takes them when running."""
    problems: list[Problem] = []
    for path, model in _models(config, ""):
        if getattr(model, "enabled", True) is False:
            continue
        problems.extend(_check_fields(path, model))
    integrity = config.audit.integrity
    if integrity.signing.enabled and not any(
        p.path.startswith("audit.integrity.signing.") for p in problems
    ):
        problems.extend(_loads("audit.integrity.signing", lambda: signing_key(integrity.signing)))
    if integrity.checkpoints.enabled and integrity.checkpoints.key_file:
        key_file = Path(integrity.checkpoints.key_file).expanduser()
        if key_file.is_file():
            problems.extend(
                _loads("audit.integrity.checkpoints.key_file", lambda: load_signer(key_file))
            )
    problems.extend(_writable_dir("data_dir", config.data_path))
    return problems


def _models(model: BaseModel, path: str) -> Iterator[tuple[str, BaseModel]]:
    yield path, model
    for name in type(model).model_fields:
        value = getattr(model, name)
        for sub_path, sub in _nested(f"{path}.{name}" if path else name, value):
            yield from _models(sub, sub_path)


def _nested(path: str, value: Any) -> Iterator[tuple[str, BaseModel]]:
    if isinstance(value, BaseModel):
        yield path, value
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _nested(f"{path}[{i}]", item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _nested(f"{path}.{key}", item)


def _check_fields(path: str, model: BaseModel) -> Iterator[Problem]:
    fields = {name: getattr(model, name) for name in type(model).model_fields}
    for name, value in fields.items():
        if value is None or value == "":
            continue
        where = f"{path}.{name}" if path else name
        if name.endswith("_env_var") and isinstance(value, str):
            if not os.environ.get(value):
                yield Problem(where, f"the environment variable {value} is not set")
        elif (
            name.endswith(("_file", "_location"))
            and name not in _OWN_CHECKS
            and isinstance(value, str)
        ):
            yield from _readable_file(where, value, private=_private(name))
        elif name.endswith("_url") or name in ("url", "webhook"):
            secret = isinstance(value, SecretStr)
            text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
            yield from _well_formed_url(where, text, secret=secret)
    cert, key = fields.get("cert_file"), fields.get("key_file")
    if isinstance(cert, str) and isinstance(key, str) and Path(cert).is_file():
        yield from _loads(path, lambda: _load_cert_chain(cert, key))
    ca = fields.get("ca_file")
    if isinstance(ca, str) and Path(ca).is_file():
        yield from _loads(f"{path}.ca_file", lambda: _load_ca(ca))


_OWN_CHECKS = frozenset({"rbac_file"})
"""Files read (and reported, with their own errors) by check-config itself, relative
to the configuration file's directory."""


def _private(name: str) -> bool:
    return name in ("key_file", "ssl_key_location") or name.endswith(
        ("secret_file", "token_file", "password_file")
    )


def _readable_file(where: str, name: str, *, private: bool) -> Iterator[Problem]:
    file = Path(name).expanduser()
    if not file.exists():
        yield Problem(where, f"{name}: file not found")
        return
    if not file.is_file():
        yield Problem(where, f"{name}: not a regular file")
        return
    if not os.access(file, os.R_OK):
        yield Problem(where, f"{name}: not readable by this user")
        return
    if private:
        try:
            check_private_key(file, "private key or secret")
        except KauditError as exc:
            yield Problem(where, str(exc))


def _well_formed_url(where: str, text: str, *, secret: bool) -> Iterator[Problem]:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = "(a secret URL, not shown)" if secret else repr(text)
        yield Problem(
            where, f"not a well-formed http(s) URL (like https://host:port/path): got {shown}"
        )


def _writable_dir(where: str, directory: Path) -> Iterator[Problem]:
    """The directory, or the nearest existing parent it would be made in, is writable."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        yield Problem(where, f"{existing}: not a directory")
    elif not os.access(existing, os.W_OK | os.X_OK):
        yield Problem(where, f"{existing}: not writable by this user")


def _loads(where: str, load: Any) -> Iterator[Problem]:
    try:
        load()
    except (KauditError, OSError, ssl.SSLError, ValueError) as exc:
        yield Problem(where, str(exc))


def _load_cert_chain(cert: str, key: str) -> None:
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise ValueError(f"{cert} with {key}: the certificate and key do not load ({exc})") from exc


def _load_ca(ca: str) -> None:
    try:
        ssl.create_default_context().load_verify_locations(ca)
    except ssl.SSLError as exc:
        raise ValueError(f"{ca}: not a PEM CA certificate ({exc})") from exc
