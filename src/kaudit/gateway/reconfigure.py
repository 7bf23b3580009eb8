"""Changing a running gateway: its API settings from a reloaded configuration
(`with_reloaded`), and its TLS certificates when their files change
(`CertificateWatcher`), without dropping a connection.

What a reload changes applies to the next request or connection: which APIs are recorded
as `kafka.request` and which are counted per window, connection limits, frame limits, the
stop timeout. Where the gateway listens, what it fronts and its windows apply at start
(kaudit.ops.reload names them as needing a restart).

A certificate is loaded into the SSL context the listening ports already use, so the
next TLS handshake presents it and connections open meanwhile keep theirs. A CA file's
certificates are added to those trusted (OpenSSL cannot forget one without a restart).
A file that cannot be read as a certificate (half written) is reported and tried again
at the next check; the old certificate stays in use meanwhile.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable

from kaudit.config.model import ClientTls, GatewayConfig, UpstreamTls
from kaudit.files import UnprotectedKeyError, check_private_key

log = logging.getLogger("kaudit.gateway")

RELOADABLE = (
    "request_events",
    "max_connections",
    "max_connections_per_address",
    "max_frame_bytes",
    "max_frame_bytes_before_auth",
    "stop_timeout_seconds",
)
"""The `gateway:` settings a reload applies to a running gateway."""

CERTIFICATE_CHECK_SECONDS = 2.0
"""How often the certificate files are looked at (one stat() each)."""


def with_reloaded(current: GatewayConfig, new: GatewayConfig) -> GatewayConfig | None:
    """`current` with the reloadable settings of `new`; None when none of them differ."""
    update = {f: getattr(new, f) for f in RELOADABLE if getattr(new, f) != getattr(current, f)}
    return current.model_copy(update=update) if update else None


_Signature = tuple[tuple[int, int, int], ...]


class _Watched:
    """The files of one SSL context and how to load them into it again."""

    def __init__(self, label: str, files: tuple[str, ...], load: Callable[[], None]) -> None:
        self.label = label
        self.files = files
        self.load = load
        self.loaded = self.signature()
        self.failed: _Signature | None = None

    def signature(self) -> _Signature:
        out = []
        for name in self.files:
            try:
                st = os.stat(name)
            except OSError:
                out.append((-1, -1, -1))
            else:
                out.append((st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(out)


class CertificateWatcher:
    """Loads the gateway's TLS certificates again when their files change."""

    def __init__(self) -> None:
        self._watched: list[_Watched] = []
        self.reloads = 0

    def watch_client(self, context: ssl.SSLContext, tls: ClientTls) -> None:
        """The certificate (and client CA) presented to and trusted from clients."""

        def load() -> None:
            check_private_key(tls.key_file, "gateway.tls.key_file")
            context.load_cert_chain(tls.cert_file, tls.key_file)
            if tls.ca_file:
                context.load_verify_locations(tls.ca_file)

        files = (tls.cert_file, tls.key_file) + ((tls.ca_file,) if tls.ca_file else ())
        self._watched.append(_Watched("gateway.tls", files, load))

    def watch_upstream(self, context: ssl.SSLContext, tls: UpstreamTls) -> None:
        """The certificate presented to and the CA trusted from the brokers."""

        def load() -> None:
            if tls.cert_file:
                if tls.key_file:
                    check_private_key(tls.key_file, "gateway.upstream_tls.key_file")
                context.load_cert_chain(tls.cert_file, tls.key_file)
            if tls.ca_file:
                context.load_verify_locations(tls.ca_file)

        files = tuple(f for f in (tls.cert_file, tls.key_file, tls.ca_file) if f)
        if files:
            self._watched.append(_Watched("gateway.upstream_tls", files, load))

    @property
    def watching(self) -> bool:
        return bool(self._watched)

    def check(self) -> None:
        """Load the certificates whose files changed since they were last loaded."""
        for watched in self._watched:
            now = watched.signature()
            if now == watched.loaded or now == watched.failed:
                continue
            try:
                watched.load()
            except (OSError, ssl.SSLError, UnprotectedKeyError) as exc:
                watched.failed = now
                log.error(
                    "%s: the changed certificate files cannot be loaded, the old "
                    "certificate stays in use: %s",
                    watched.label,
                    exc,
                )
                continue
            watched.loaded, watched.failed = now, None
            self.reloads += 1
            log.warning("%s: certificate files changed, loaded again", watched.label)
